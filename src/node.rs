//! The public handle of a running node.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::client::Client;
use crate::config::Config;
use crate::core::{Command, Core, CoreMetrics, RequestError, Role};
use crate::driver::{self, DriverCounters, Inbound, LocalRead, Shared, SharedMap};
use crate::error::Error;
use crate::wire::{ClientOp, ClientReply, Keyring, Member, NodeId, NodeStatus, WriteTag};

/// A node's role: `follower`, `voter`, `candidate` or `leader`.
pub type State = Role;

/// What a node knows of itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its member id, once joined.
    pub id: Option<NodeId>,
    /// Its role.
    pub state: State,
    /// Its term (election number).
    pub term: u64,
    /// The leader's address, if known.
    pub leader: Option<SocketAddr>,
    /// The committed members.
    pub members: Vec<Member>,
    /// The last committed version.
    pub version: u64,
    /// The generation of the cluster it is a member of: two nodes with
    /// different generations are in different clusters, whatever else
    /// they share.
    pub generation: Option<u64>,
    /// When it last heard from a leader (now, for a leader).
    pub last_heartbeat: Option<Instant>,
}

impl Status {
    pub(crate) fn of(core: &Core, last_heartbeat: Option<Instant>) -> Status {
        Status {
            addr: core.addr(),
            id: core.id(),
            state: core.role(),
            term: core.term(),
            leader: core.leader(),
            members: core.members(),
            version: core.commit(),
            generation: core.generation(),
            last_heartbeat,
        }
    }

    pub(crate) fn same_but_heartbeat(&self, other: &Status) -> bool {
        Status {
            last_heartbeat: other.last_heartbeat,
            ..self.clone()
        } == *other
    }

    /// Time since the last heartbeat from a leader: how stale local reads
    /// may be.
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.last_heartbeat.map(|t| t.elapsed())
    }

    /// The status as sent to clients.
    pub fn to_wire(&self) -> NodeStatus {
        NodeStatus {
            addr: self.addr.to_string(),
            id: self.id,
            state: self.state.as_str().to_string(),
            term: self.term,
            leader: self.leader.map(|a| a.to_string()),
            members: self.members.clone(),
            version: self.version,
            since_heartbeat_ms: self.heartbeat_age().map(|d| d.as_millis() as u64),
            generation: self.generation,
        }
    }
}

/// Counters of a node: the protocol core's and the network driver's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Datagrams and frames in and out, decode errors by reason (of the
    /// frames the core decodes: datagrams and protocol frames over TCP),
    /// elections, commits, snapshots installed.
    pub core: CoreMetrics,
    /// Sends that failed (unreachable peer, full socket buffer).
    pub send_errors: u64,
    /// Large frames dropped because a peer's TCP queue was full.
    pub stream_frames_dropped: u64,
    /// TCP connections refused over `tcp_connections_max`.
    pub tcp_rejected: u64,
    /// TCP connections closed for a bad frame.
    pub tcp_bad_frames: u64,
    /// Frames refused by the decoder on TCP connections (client requests,
    /// snapshot requests and answers), by [`crate::wire::DecodeReason::index`]:
    /// a client with a wrong cluster key shows as `bad_tag` or `missing_tag`.
    pub tcp_decode_errors: [u64; crate::wire::DecodeReason::ALL.len()],
    /// TCP connections closed idle, or stalled inside a frame, for
    /// `tcp_idle_ms`.
    pub tcp_idle_closed: u64,
    /// TCP connections closed before their first complete frame, for a
    /// length prefix or 64 KiB of body not sent within `tcp_first_frame_ms`.
    pub tcp_first_frame_closed: u64,
    /// TCP connections without a complete frame that gave their slot to a
    /// newer connection (every slot was taken).
    pub tcp_evicted: u64,
    /// TCP connections closed because the bytes all connections may be
    /// reading at once (`tcp_read_bytes_max`) were spent.
    pub tcp_budget_closed: u64,
    /// Snapshots sent to peers.
    pub snapshots_served: u64,
    /// Snapshots fetched from peers.
    pub snapshots_fetched: u64,
    /// Snapshot fetches that failed.
    pub snapshot_fetch_errors: u64,
    /// The longest time, in microseconds, that one turn of the node's loop
    /// took (handling one input, those already waiting with it, and
    /// sending what they produced): how long heartbeats and votes can wait
    /// behind other work.
    pub loop_busy_us_max: u64,
    /// The data directory's counters (records, bytes, syncs, images, and
    /// what recovery cut off at start), when there is one.
    pub storage: Option<crate::storage::StorageCounters>,
}

impl Metrics {
    pub(crate) fn from_parts(
        core: CoreMetrics,
        counters: &DriverCounters,
        storage: Option<crate::storage::StorageCounters>,
    ) -> Metrics {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            core,
            send_errors: get(&counters.send_errors),
            stream_frames_dropped: get(&counters.stream_frames_dropped),
            tcp_rejected: get(&counters.tcp_rejected),
            tcp_bad_frames: get(&counters.tcp_bad_frames),
            tcp_decode_errors: counters.decode_errors.each_ref().map(get),
            tcp_idle_closed: get(&counters.tcp_idle_closed),
            tcp_first_frame_closed: get(&counters.tcp_first_frame_closed),
            tcp_evicted: get(&counters.tcp_evicted),
            tcp_budget_closed: get(&counters.tcp_budget_closed),
            snapshots_served: get(&counters.snapshots_served),
            snapshots_fetched: get(&counters.snapshots_fetched),
            snapshot_fetch_errors: get(&counters.snapshot_fetch_errors),
            loop_busy_us_max: get(&counters.loop_busy_us_max),
            storage,
        }
    }

    /// Decode errors by reason name, UDP and TCP together, only those seen.
    pub fn decode_errors(&self) -> Vec<(&'static str, u64)> {
        crate::wire::DecodeReason::ALL
            .iter()
            .map(|r| {
                let n = self.core.decode_errors[r.index()] + self.tcp_decode_errors[r.index()];
                (r.name(), n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Sends requests to the node's task, forwarding writes to the leader and
/// retrying until the request timeout. Shared by [`Node`] and the TCP
/// connections of CLI clients.
#[derive(Clone)]
pub(crate) struct Requester {
    shared: Shared,
}

impl Requester {
    pub(crate) fn new(shared: Shared) -> Requester {
        Requester { shared }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.shared.cfg.request_timeout_ms)
    }

    async fn command(
        &self,
        command: Command,
        tag: Option<WriteTag>,
    ) -> Result<Result<u64, RequestError>, Error> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .inbox
            .send(Inbound::Command {
                command,
                tag,
                reply,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    pub(crate) async fn local_read(&self, key: Option<String>) -> Result<LocalRead, Error> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .inbox
            .send(Inbound::Read { key, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// A status receiver with the current status marked seen: taken before
    /// an attempt, so that a change during the attempt (a new leader while a
    /// write was being forwarded) ends the wait after it at once.
    fn status_seen(&self) -> watch::Receiver<Status> {
        let mut status = self.shared.status.clone();
        status.borrow_and_update();
        status
    }

    /// Waits (at most until `deadline`, and at most two heartbeats) for the
    /// status to change since `status` was last seen, e.g. for a leader to
    /// be known.
    async fn wait_for_change(&self, status: &mut watch::Receiver<Status>, deadline: Instant) {
        let cap = Duration::from_millis(2 * self.shared.cfg.heartbeat_ms);
        let wait = deadline.saturating_duration_since(Instant::now()).min(cap);
        let _ = tokio::time::timeout(wait, status.changed()).await;
    }

    /// A write in this node's session: local if this node leads, else
    /// forwarded to the leader; sent again after an unknown outcome until
    /// it commits or the request timeout passes. The session makes every
    /// attempt after the first apply as nothing if an earlier one applied.
    pub(crate) async fn write(&self, command: Command) -> Result<u64, Error> {
        let deadline = Instant::now() + self.timeout();
        let generation = self.shared.status.borrow().generation;
        let write = self
            .shared
            .session
            .begin(generation, |id| {
                self.attempts(Command::OpenSession { id }, None, deadline)
            })
            .await?;
        let result = self.attempts(command, Some(write.tag), deadline).await;
        if matches!(result, Err(Error::SessionExpired)) {
            self.shared.session.expired(&write);
        }
        result
    }

    /// A write in its client's session (`tag` came with it): forwarded and
    /// sent again like [`Requester::write`], always with that tag.
    pub(crate) async fn write_tagged(&self, command: Command, tag: WriteTag) -> Result<u64, Error> {
        let deadline = Instant::now() + self.timeout();
        self.attempts(command, Some(tag), deadline).await
    }

    /// Sends `command` (with `tag`, for a session write) to the core, or to
    /// the leader when this node does not lead, until it commits or
    /// `deadline` passes. Without a tag only a command that may apply
    /// twice (opening a session) is sent again after an unknown outcome.
    async fn attempts(
        &self,
        command: Command,
        tag: Option<WriteTag>,
        deadline: Instant,
    ) -> Result<u64, Error> {
        let mut outcome_unknown = false;
        loop {
            if Instant::now() >= deadline {
                return Err(if outcome_unknown {
                    Error::Timeout
                } else {
                    Error::NoLeader
                });
            }
            let mut status = self.status_seen();
            match self.command(command.clone(), tag).await? {
                Ok(version) => return Ok(version),
                Err(RequestError::NotLeader {
                    leader: Some(leader),
                }) if leader != self.shared.addr => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let keys = self.shared.keys.get().map(|keys| (*keys).clone());
                    let client = Client::new(leader, self.shared.cfg.cluster_id)
                        .with_pool(self.shared.pool.clone())
                        .with_keys(keys)
                        .with_timeout(remaining)
                        .with_frame_bytes_max(self.shared.cfg.stream_frame_bytes_max);
                    match client.write_tagged(to_op(&command), tag).await {
                        Ok(version) => return Ok(version),
                        Err(Error::Timeout) => outcome_unknown = true,
                        // It reached the leader, which may have committed it.
                        Err(Error::NoAnswer { .. }) => {
                            outcome_unknown = true;
                            self.wait_for_change(&mut status, deadline).await;
                        }
                        Err(
                            Error::NoLeader
                            | Error::Unreachable { .. }
                            | Error::Stopped
                            | Error::NotMember,
                        ) => self.wait_for_change(&mut status, deadline).await,
                        Err(error) => return Err(error),
                    }
                }
                Err(RequestError::NotLeader { .. }) => {
                    self.wait_for_change(&mut status, deadline).await
                }
                Err(RequestError::Uncertain | RequestError::Timeout) => {
                    outcome_unknown = true;
                    self.wait_for_change(&mut status, deadline).await;
                }
                Err(RequestError::Busy { .. }) => self.wait_for_change(&mut status, deadline).await,
                Err(error) => return Err(Error::from_request(error)),
            }
        }
    }

    /// Confirms with a quorum, retrying while there is no leader; returns
    /// the version the node's state has reached.
    pub(crate) async fn read_linearizable(&self) -> Result<u64, Error> {
        let deadline = Instant::now() + self.timeout();
        loop {
            if Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            let mut status = self.status_seen();
            match self.command(Command::ReadLinearizable, None).await? {
                Ok(version) => return Ok(version),
                Err(RequestError::NotLeader { .. } | RequestError::Timeout) => {
                    self.wait_for_change(&mut status, deadline).await
                }
                Err(error) => return Err(Error::from_request(error)),
            }
        }
    }

    /// Serves a client's request; `tag` is the session request a write is.
    pub(crate) async fn client(&self, op: ClientOp, tag: Option<WriteTag>) -> ClientReply {
        let command = match op {
            ClientOp::Status => {
                return ClientReply::Status(self.shared.status.borrow().to_wire());
            }
            ClientOp::Get { key, linearizable } => {
                return self
                    .client_get(key, linearizable)
                    .await
                    .unwrap_or_else(failed);
            }
            ClientOp::OpenSession { id } => {
                let deadline = Instant::now() + self.timeout();
                return self
                    .attempts(Command::OpenSession { id }, None, deadline)
                    .await
                    .map_or_else(failed, |version| ClientReply::Written { version });
            }
            ClientOp::Set { key, value } => Command::Set { key, value },
            ClientOp::Remove { key } => Command::Remove { key },
            ClientOp::Update { map } => Command::Update {
                map: map.into_iter().collect(),
            },
        };
        let written = match tag {
            Some(tag) => self.write_tagged(command, tag).await,
            // In a keyed cluster a recorded request stays valid forever:
            // only a session write is safe to take from the network, as a
            // copy sent again applies as nothing.
            None if self.shared.keys.get().is_some() => Err(Error::Invalid(
                "a cluster with keys takes writes only in a session (this client is too old)"
                    .into(),
            )),
            None => self.write(command).await,
        };
        written.map_or_else(failed, |version| ClientReply::Written { version })
    }

    async fn client_get(
        &self,
        key: Option<String>,
        linearizable: bool,
    ) -> Result<ClientReply, Error> {
        if linearizable {
            self.read_linearizable().await?;
        }
        let single = key.is_some();
        let read = self.local_read(key).await?;
        Ok(if single {
            ClientReply::Value {
                version: read.version,
                value: read.value,
            }
        } else {
            let map = read.map.unwrap_or_default();
            ClientReply::Map {
                version: read.version,
                map: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }
        })
    }
}

/// A failed request as a client is told of it.
fn failed(error: Error) -> ClientReply {
    ClientReply::Failed {
        failure: error.failure(),
        message: error.to_string(),
    }
}

fn to_op(command: &Command) -> ClientOp {
    match command {
        Command::Set { key, value } => ClientOp::Set {
            key: key.clone(),
            value: value.clone(),
        },
        Command::Remove { key } => ClientOp::Remove { key: key.clone() },
        Command::Update { map } => ClientOp::Update {
            map: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        },
        Command::OpenSession { id } => ClientOp::OpenSession { id: *id },
        // Only writes are forwarded.
        Command::ReadLinearizable | Command::Leave | Command::TransferLeadership => {
            ClientOp::Status
        }
    }
}

/// A running node. Dropping it stops the node at once (as a crash would);
/// [`Node::leave`] and [`Node::shutdown`] stop it gracefully.
pub struct Node {
    requester: Requester,
    data_tx: Arc<watch::Sender<SharedMap>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr()).finish()
    }
}

impl Node {
    /// Starts a node: binds its sockets and joins (or founds) the cluster
    /// in the background. Must be called within a tokio runtime.
    pub async fn start(config: Config) -> Result<Node, Error> {
        let (shared, data_tx, task) = driver::spawn(config).await?;
        Ok(Node {
            requester: Requester::new(shared),
            data_tx,
            task: Some(task),
        })
    }

    /// The original design's `Init(address, nodelist, updateInterval,
    /// leaderTimeout, electionTimeout)`. An empty `nodelist` founds a
    /// cluster.
    pub async fn init(
        address: &str,
        nodelist: &[&str],
        update_interval: Duration,
        leader_timeout: Duration,
        election_timeout: Duration,
    ) -> Result<Node, Error> {
        let parse = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|e| Error::Invalid(format!("address {a:?}: {e}")))
        };
        let join = nodelist
            .iter()
            .map(|a| parse(a))
            .collect::<Result<_, _>>()?;
        let config = Config::new(parse(address)?, join).with_timeouts(
            update_interval,
            leader_timeout,
            election_timeout,
        );
        Node::start(config).await
    }

    /// The node's address in the member list: [`Config::advertise`] when
    /// set, else where it listens (the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.requester.shared.addr
    }

    /// The original's `Update`: the map becomes `map`. Returns the committed
    /// version once a majority has it.
    ///
    /// Takes a [`SharedMap`] or a `BTreeMap<String, String>`. A map derived
    /// from [`Node::data`] (with `insert` and `remove`) costs in proportion
    /// to what changed; any other map costs one comparison pass on the
    /// node, and only the changed pairs are replicated.
    pub async fn update(&self, map: impl Into<SharedMap>) -> Result<u64, Error> {
        self.requester
            .write(Command::Update { map: map.into() })
            .await
    }

    /// Sets one key; returns the committed version.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<u64, Error> {
        let command = Command::Set {
            key: key.into(),
            value: value.into(),
        };
        self.requester.write(command).await
    }

    /// Removes one key; returns the committed version.
    pub async fn remove(&self, key: impl Into<String>) -> Result<u64, Error> {
        self.requester
            .write(Command::Remove { key: key.into() })
            .await
    }

    /// The local value of `key`: fast, and as stale as
    /// [`Status::heartbeat_age`] says.
    pub async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .requester
            .local_read(Some(key.to_string()))
            .await?
            .value)
    }

    /// The local committed map, shared (not copied) while it does not change.
    pub async fn data(&self) -> Result<SharedMap, Error> {
        let read = self.requester.local_read(None).await?;
        Ok(read.map.unwrap_or_default())
    }

    /// The map after confirming with a quorum that it is current: it
    /// includes every write that committed before the call.
    pub async fn read_linearizable(&self) -> Result<SharedMap, Error> {
        self.requester.read_linearizable().await?;
        self.data().await
    }

    /// The node's role.
    pub fn state(&self) -> State {
        self.requester.shared.status.borrow().state
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        self.requester.shared.status.borrow().clone()
    }

    /// A watch that changes with role, term, leader, members or version.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.requester.shared.status.clone()
    }

    /// A watch of the committed map.
    pub fn watch_data(&self) -> watch::Receiver<SharedMap> {
        let receiver = self.data_tx.subscribe();
        // Seed it with the current map: the driver publishes on changes.
        let requester = self.requester.clone();
        let sender = self.data_tx.clone();
        tokio::spawn(async move {
            if let Ok(read) = requester.local_read(None).await {
                sender.send_replace(read.map.unwrap_or_default());
            }
        });
        receiver
    }

    /// Waits until `ready` holds for the status, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&Status) -> bool,
    ) -> Result<Status, Error> {
        let mut status = self.subscribe();
        let wait = async move { status.wait_for(|s| ready(s)).await.map(|s| s.clone()) };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Replaces the cluster keys of the running node (see
    /// [`Config::cluster_keys`]): frames sent from now on are signed with the
    /// new primary, frames received are checked against the new keys. Done
    /// step by step on every node and client, it rotates a key without
    /// downtime (see `docs/WIRE.md`). Returns once the node uses them.
    pub async fn set_cluster_keys(&self, keys: Option<Keyring>) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.requester
            .shared
            .inbox
            .send(Inbound::SetKeys { keys, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Counters of this node.
    pub async fn metrics(&self) -> Result<Metrics, Error> {
        let (reply, answer) = oneshot::channel();
        self.requester
            .shared
            .inbox
            .send(Inbound::Metrics { reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Leaves the cluster (a leader hands over leadership first), then
    /// stops.
    pub async fn leave(mut self) -> Result<(), Error> {
        let result = match self.requester.command(Command::Leave, None).await? {
            Ok(_) => Ok(()),
            Err(error) => Err(Error::from_request(error)),
        };
        self.stop().await;
        result
    }

    /// Stops the node, handing over leadership first if it leads. It stays
    /// a member; the leader removes it once it has been silent for
    /// `member_silence_ms`.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if self.state() == Role::Leader {
            // Best effort: if no voter can take over, stop anyway.
            let _ = self
                .requester
                .command(Command::TransferLeadership, None)
                .await;
        }
        self.stop().await;
        Ok(())
    }

    /// Stops the node at once, without handing anything over: what a crash
    /// looks like to the rest of the cluster.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn stop(&mut self) {
        let _ = self.requester.shared.inbox.send(Inbound::Stop).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
