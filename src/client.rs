//! A TCP client for one node: what the CLI uses, and what a node uses to
//! forward a write to the leader.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::driver::stream_io::{read_frame, write_frame};
use crate::error::Error;
use crate::wire::{
    ClientOp, ClientReply, ClientRequest, DecodeLimits, Frame, Keyring, Message, NodeId,
    STREAM_FRAME_BYTES_MAX_DEFAULT,
};

/// Low bits of a request id that are random; the high bits are the time
/// the request was made, in ms since the Unix epoch.
pub(crate) const REQUEST_ID_RANDOM_BITS: u32 = 20;

/// A request id made at `unix_ms`: the time in the high bits (a node with
/// cluster keys refuses writes made too long ago, see `docs/WIRE.md`), 20
/// random bits below.
pub(crate) fn request_id(unix_ms: u64) -> u64 {
    (unix_ms << REQUEST_ID_RANDOM_BITS)
        | (rand::random::<u64>() & ((1 << REQUEST_ID_RANDOM_BITS) - 1))
}

/// When the request with this id was made, in ms since the Unix epoch.
pub(crate) fn request_time_ms(request_id: u64) -> u64 {
    request_id >> REQUEST_ID_RANDOM_BITS
}

/// How one exchange failed: before the request could be served, or after
/// (when it may have been).
enum Failed {
    NotSent(String),
    Unanswered(String),
}

/// Idle connections kept per address for the next request.
const IDLE_CONNECTIONS_MAX: usize = 8;

/// Open connections between requests, by address: a request takes one (or
/// connects) and gives it back once answered, so sequential requests share
/// a connection and concurrent ones use one each. A node serves the
/// requests of one connection in order.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<TcpStream>>>,
}

impl Pool {
    /// An idle connection to `addr` that the peer has not closed.
    fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.get_mut(&addr)?;
        while let Some(stream) = streams.pop() {
            let mut byte = [0u8; 1];
            // Nothing to read is what a live idle connection looks like;
            // end of stream or a stray byte means it cannot be used.
            if matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(stream);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.entry(addr).or_default();
        if streams.len() < IDLE_CONNECTIONS_MAX {
            streams.push(stream);
        }
    }
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
    /// fails, the request is sent once more on a new connection (requests
    /// are idempotent). [`Error::Unreachable`] means the request never went
    /// out; [`Error::NoAnswer`] and [`Error::Timeout`] that it may have.
    pub async fn request(&self, op: ClientOp) -> Result<ClientReply, Error> {
        let exchange = async {
            let mut sent = None;
            if let Some(stream) = self.pool.take(self.addr) {
                match self.exchange(stream, op.clone()).await {
                    Ok(reply) => return Ok(reply),
                    Err(Failed::Unanswered(message)) => sent = Some(message),
                    Err(Failed::NotSent(_)) => {}
                }
            }
            let failed = match TcpStream::connect(self.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    match self.exchange(stream, op).await {
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
    async fn exchange(&self, mut stream: TcpStream, op: ClientOp) -> Result<ClientReply, Failed> {
        let request_id = request_id(crate::driver::unix_ms());
        let frame = Frame::new(
            self.cluster_id,
            NodeId::UNASSIGNED,
            0,
            Message::ClientRequest(ClientRequest { request_id, op }),
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
    /// committed version.
    pub async fn write(&self, op: ClientOp) -> Result<u64, Error> {
        match self.request(op).await? {
            ClientReply::Written { version } => Ok(version),
            ClientReply::Failed { failure, message } => Err(Error::from_failure(failure, message)),
            other => Err(Error::Unreachable {
                addr: self.addr,
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }
}
