//! A TCP client for one node: what the CLI uses, and what a node uses to
//! forward a write to the leader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::Error;
use crate::net::{read_frame, write_frame, Pool};
use crate::session::ClientSession;
use crate::wire::{
    ClientFailure, ClientOp, ClientReply, ClientRequest, DecodeLimits, Frame, Keyring, Message,
    NodeId, WriteTag, STREAM_FRAME_BYTES_MAX_DEFAULT,
};

/// How one exchange failed: before the request could be served, or after
/// (when it may have been).
enum Failed {
    NotSent(String),
    Unanswered(String),
}

/// Sends requests to the node at one address. Clones share their idle
/// connections.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    cluster_id: u32,
    timeout: Duration,
    frame_bytes_max: usize,
    keys: Option<Keyring>,
    pool: Arc<Pool>,
    /// The session of the writes sent with [`Client::write`].
    session: ClientSession,
}

impl Client {
    /// A client for the node at `addr` in cluster `cluster_id`, with a
    /// 5-second timeout per request.
    pub fn new(addr: SocketAddr, cluster_id: u32) -> Client {
        Client {
            addr,
            cluster_id,
            timeout: Duration::from_secs(5),
            frame_bytes_max: STREAM_FRAME_BYTES_MAX_DEFAULT,
            keys: None,
            pool: Arc::default(),
            session: ClientSession::default(),
        }
    }

    /// Shares `pool`'s idle connections (a node forwarding to its leader).
    pub(crate) fn with_pool(mut self, pool: Arc<Pool>) -> Client {
        self.pool = pool;
        self
    }

    /// Signs requests with the primary key of `keys` and accepts answers
    /// signed with any of them: needed for a node with cluster keys (see
    /// [`crate::Config::cluster_keys`]).
    pub fn with_keyring(mut self, keys: Keyring) -> Client {
        self.keys = Some(keys);
        self
    }

    /// [`Client::with_keyring`], or no keys for `None`.
    pub fn with_keys(mut self, keys: Option<Keyring>) -> Client {
        self.keys = keys;
        self
    }

    /// Sets the time a request may take, connecting included.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sets the largest frame sent or accepted.
    pub fn with_frame_bytes_max(mut self, frame_bytes_max: usize) -> Client {
        self.frame_bytes_max = frame_bytes_max;
        self
    }

    /// The node this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `op` and waits for the node's reply. A `Failed` reply is
    /// returned as it is: the caller decides what it means. An idle
    /// connection from an earlier request is used when there is one; if it
    /// fails, the request is sent once more on a new connection (reads
    /// change nothing; a session write applies at most once). [`Error::Unreachable`] means the request never went
    /// out; [`Error::NoAnswer`] and [`Error::Timeout`] that it may have.
    ///
    /// A write sent this way carries no session: the node makes it a
    /// request of its own session (a cluster with keys refuses it), and a
    /// resend may apply it twice. [`Client::write`] sends writes in a
    /// session.
    pub async fn request(&self, op: ClientOp) -> Result<ClientReply, Error> {
        self.request_tagged(op, None).await
    }

    async fn request_tagged(
        &self,
        op: ClientOp,
        tag: Option<WriteTag>,
    ) -> Result<ClientReply, Error> {
        let exchange = async {
            let mut sent = None;
            if let Some(stream) = self.pool.take(self.addr) {
                match self.exchange(stream, op.clone(), tag).await {
                    Ok(reply) => return Ok(reply),
                    Err(Failed::Unanswered(message)) => sent = Some(message),
                    Err(Failed::NotSent(_)) => {}
                }
            }
            let failed = match TcpStream::connect(self.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    match self.exchange(stream, op, tag).await {
                        Ok(reply) => return Ok(reply),
                        Err(failed) => failed,
                    }
                }
                Err(e) => Failed::NotSent(e.to_string()),
            };
            Err(match (failed, sent) {
                (Failed::Unanswered(message), _) | (Failed::NotSent(_), Some(message)) => {
                    Error::NoAnswer {
                        addr: self.addr,
                        message,
                    }
                }
                (Failed::NotSent(message), None) => Error::Unreachable {
                    addr: self.addr,
                    message,
                },
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// One request and its answer on `stream`, which goes back to the pool
    /// once answered.
    async fn exchange(
        &self,
        mut stream: TcpStream,
        op: ClientOp,
        tag: Option<WriteTag>,
    ) -> Result<ClientReply, Failed> {
        // Random: an answer is matched to its request on one connection;
        // nothing else depends on the id.
        let request_id = rand::random::<u64>();
        let frame = Frame::new(
            self.cluster_id,
            NodeId::UNASSIGNED,
            0,
            Message::ClientRequest(ClientRequest {
                request_id,
                op,
                tag,
            }),
        );
        // A frame that could not be written whole is never served.
        write_frame(
            &mut stream,
            &frame,
            self.frame_bytes_max,
            self.keys.as_ref(),
        )
        .await
        .map_err(|e| Failed::NotSent(e.to_string()))?;
        let limits = DecodeLimits {
            cluster_id: Some(self.cluster_id),
            frame_bytes_max: self.frame_bytes_max,
        };
        let reply = read_frame(&mut stream, &limits, self.keys.as_ref())
            .await
            .map_err(|e| Failed::Unanswered(e.to_string()))?;
        match reply.message {
            Message::ClientResponse(response) if response.request_id == request_id => {
                self.pool.put(self.addr, stream);
                Ok(response.reply)
            }
            other => Err(Failed::Unanswered(format!(
                "unexpected {} in answer",
                other.kind().name()
            ))),
        }
    }

    /// Sends a write and maps a failure to an [`Error`]; returns the
    /// committed version. A write to the map (`Set`, `Remove`, `Update`)
    /// goes in this client's session (opened by the first one): when its
    /// answer is lost and it is sent again, by this client or by the node
    /// forwarding it, it applies at most once.
    pub async fn write(&self, op: ClientOp) -> Result<u64, Error> {
        written(self.addr, self.write_reply(op).await?)
    }

    /// [`Client::write`], returning the node's reply as it is (a `Failed`
    /// reply keeps its category and message).
    pub async fn write_reply(&self, op: ClientOp) -> Result<ClientReply, Error> {
        if !matches!(
            op,
            ClientOp::Set { .. } | ClientOp::Remove { .. } | ClientOp::Update { .. }
        ) {
            return self.request_tagged(op, None).await;
        }
        let write = self
            .session
            .begin(None, |id| {
                self.write_tagged(ClientOp::OpenSession { id }, None)
            })
            .await?;
        let reply = self.request_tagged(op, Some(write.tag)).await;
        if let Ok(ClientReply::Failed {
            failure: ClientFailure::SessionExpired,
            ..
        }) = reply
        {
            self.session.expired(&write);
        }
        reply
    }

    /// Sends a write with `tag` (the session request it is, for a write a
    /// node forwards for its client); returns the committed version.
    pub(crate) async fn write_tagged(
        &self,
        op: ClientOp,
        tag: Option<WriteTag>,
    ) -> Result<u64, Error> {
        written(self.addr, self.request_tagged(op, tag).await?)
    }
}

/// The version a write's reply gives, or its failure as an [`Error`].
fn written(addr: SocketAddr, reply: ClientReply) -> Result<u64, Error> {
    match reply {
        ClientReply::Written { version } => Ok(version),
        ClientReply::Failed { failure, message } => Err(Error::from_failure(failure, message)),
        other => Err(Error::Unreachable {
            addr,
            message: format!("unexpected reply {other:?}"),
        }),
    }
}
