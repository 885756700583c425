//! The tokio task that owns one node's core: a UDP socket and a TCP
//! listener on the same address, one timer, and a bounded inbox from the
//! handles and connection tasks. After every input it drains the core.

mod admission;
mod metrics;
mod requester;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn, Instrument};

use crate::config::Config;
use crate::core::{
    Command, Core, Event, Persist, PreparedSnapshot, PreparedUpdate, RequestError, RequestId,
};
use crate::error::Error;
use crate::status::{Metrics, Status};
use crate::storage::{DataDir, StorageError};
use crate::wire::{DecodeReason, Frame, Keyring};

pub(crate) use requester::Requester;

/// The committed map as handed to readers: a persistent (immutable,
/// structure-sharing) ordered map, so a snapshot is a pointer copy and
/// never a copy of the data. Derive a new map from it (`insert`, `remove`)
/// and pass it to [`crate::Node::update`]: the node then compares only
/// the parts that differ.
pub type SharedMap = crate::core::Map;

/// What handles and connection tasks send to the node's task.
pub(crate) enum Inbound {
    Command {
        command: Command,
        /// For a session write: which request of which session it is.
        tag: Option<crate::wire::WriteTag>,
        reply: oneshot::Sender<Result<u64, RequestError>>,
    },
    /// An update whose difference from the committed map was computed off
    /// the node's task (see [`Driver::prepare_update`]).
    PreparedUpdate {
        prepared: PreparedUpdate,
        tag: Option<crate::wire::WriteTag>,
        reply: oneshot::Sender<Result<u64, RequestError>>,
    },
    /// A local read: one key, or the whole map.
    Read {
        key: Option<String>,
        reply: oneshot::Sender<LocalRead>,
    },
    Metrics {
        reply: oneshot::Sender<Metrics>,
    },
    /// A protocol frame that arrived over TCP, decoded (and its tag
    /// checked) by the connection task; `bytes` long.
    StreamFrame {
        from: SocketAddr,
        frame: Frame,
        bytes: usize,
    },
    /// A snapshot fetched from a peer, made into a state by the task that
    /// fetched it.
    Snapshot(PreparedSnapshot),
    /// A peer asks for our snapshot: the connection task builds it.
    ServeSnapshot {
        reply: oneshot::Sender<Arc<tcp::ServedSnapshot>>,
    },
    /// New cluster keys, for the core and the TCP connections.
    SetKeys {
        keys: Option<Keyring>,
        reply: oneshot::Sender<()>,
    },
    Stop,
}

/// The answer to a local read.
pub(crate) struct LocalRead {
    pub version: u64,
    pub value: Option<String>,
    pub map: Option<SharedMap>,
}

/// What woke the node's task.
enum Wake {
    Inbound(Option<Inbound>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Accepted(std::io::Result<(tokio::net::TcpStream, SocketAddr)>),
    Timer,
}

/// Counters of the driver itself (the core counts the protocol).
#[derive(Debug, Default)]
pub(crate) struct DriverCounters {
    pub send_errors: AtomicU64,
    pub stream_frames_dropped: AtomicU64,
    pub tcp_rejected: AtomicU64,
    pub tcp_bad_frames: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    pub tcp_first_frame_closed: AtomicU64,
    pub tcp_evicted: AtomicU64,
    pub tcp_budget_closed: AtomicU64,
    pub snapshots_served: AtomicU64,
    pub snapshots_fetched: AtomicU64,
    pub snapshot_fetch_errors: AtomicU64,
    /// The longest time one turn of the node's loop took, from the input
    /// that woke it to the end of the drain, in microseconds.
    pub loop_busy_us_max: AtomicU64,
    /// TCP frames refused by the decoder (the core counts the rest), by
    /// [`DecodeReason::index`].
    pub decode_errors: [AtomicU64; DecodeReason::ALL.len()],
}

impl DriverCounters {
    pub(crate) fn count_decode_error(&self, reason: DecodeReason) {
        self.decode_errors[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The cluster keys as the connection tasks see them; the node's task
/// replaces them.
#[derive(Debug, Default)]
pub(crate) struct Keys(RwLock<Option<Arc<Keyring>>>);

impl Keys {
    fn new(keys: Option<Keyring>) -> Keys {
        Keys(RwLock::new(keys.map(Arc::new)))
    }

    /// The current keys.
    pub(crate) fn get(&self) -> Option<Arc<Keyring>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, keys: Option<Keyring>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = keys.map(Arc::new);
    }
}

/// What connection tasks need from the node.
#[derive(Clone)]
pub(crate) struct Shared {
    pub inbox: mpsc::Sender<Inbound>,
    pub status: watch::Receiver<Status>,
    pub counters: Arc<DriverCounters>,
    pub cfg: Arc<Config>,
    pub addr: SocketAddr,
    /// The cluster keys now (the ones in `cfg` are those it started with).
    pub keys: Arc<Keys>,
    /// The session of the writes made through this node.
    pub session: crate::session::ClientSession,
    /// Connections to the leader kept open between forwarded requests.
    pub pool: Arc<crate::net::Pool>,
}

/// Binds UDP and TCP on one port (retrying for a free one when the port is
/// 0) and starts the node's task.
pub(crate) async fn spawn(
    cfg: Config,
) -> Result<
    (
        Shared,
        Arc<watch::Sender<SharedMap>>,
        tokio::task::JoinHandle<()>,
    ),
    Error,
> {
    cfg.validate()?;
    let (udp, tcp) = bind(cfg.listen).await?;
    let bound = udp.local_addr().map_err(|source| Error::Bind {
        addr: cfg.listen,
        source,
    })?;
    // The node is known by its advertised address; it listens where bound.
    let addr = cfg.advertise.unwrap_or(bound);
    // Random, 63 bits: unlike the wall clock, which may step back so that a
    // restarted node would look older than the member it was, and be
    // ignored. A leader replaces a member whose address introduces itself
    // with another incarnation once that member has stopped answering (see
    // `admit`). A data directory keeps the incarnation across restarts.
    let incarnation = (rand::random::<u64>() >> 1).max(1);
    let (core, storage) = match &cfg.data_dir {
        None => (
            Core::new(cfg.core(addr, incarnation), rand::random(), 0)?,
            None,
        ),
        Some(path) => {
            let (dir, opened) = DataDir::open(path, cfg.cluster_id, &addr.to_string())?;
            if let Some(damage) = &opened.damage {
                warn!(
                    dir = %path.display(),
                    offset = damage.offset,
                    bytes_dropped = damage.bytes_dropped,
                    reason = %damage.reason,
                    "data directory: cut off a torn last log record"
                );
            }
            let image = opened.image;
            info!(
                dir = %path.display(),
                id = ?image.identity.as_ref().map(|i| i.id),
                term = image.hard_state.term,
                version = image.snapshot.last.version + image.entries.len() as u64,
                records = opened.records,
                "data directory opened"
            );
            let mut core_cfg = cfg.core(addr, incarnation);
            core_cfg.durable = true;
            let core = Core::restore(core_cfg, rand::random(), 0, image)?;
            (core, Some(dir))
        }
    };
    let mut core = core;
    // The join tokens' key gets its own 256 random bits, not the seed's 64.
    core.set_join_token_key(rand::random());
    let (inbox_tx, inbox_rx) = mpsc::channel(cfg.command_queue_max);
    let (status_tx, status_rx) = watch::channel(Status::of(&core, None));
    let (data_tx, _) = watch::channel(SharedMap::default());
    let data_tx = Arc::new(data_tx);
    let cfg = Arc::new(cfg);
    let counters = Arc::new(DriverCounters::default());
    let shared = Shared {
        inbox: inbox_tx,
        status: status_rx,
        counters: counters.clone(),
        keys: Arc::new(Keys::new(cfg.cluster_keys.clone())),
        session: crate::session::ClientSession::default(),
        pool: Arc::default(),
        cfg: cfg.clone(),
        addr,
    };
    let driver = Driver {
        core,
        storage,
        start: Instant::now(),
        udp: Arc::new(udp),
        shared: shared.clone(),
        pending: HashMap::new(),
        next_request: 1,
        status_tx,
        data_tx: data_tx.clone(),
        served_snapshot: None,
        peers: HashMap::new(),
        conn_slots: admission::Admission::new(cfg.tcp_connections_max, cfg.tcp_read_bytes_max),
        fetching: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let span = tracing::info_span!("node", %addr);
    let task = tokio::spawn(driver.run(tcp, inbox_rx).instrument(span));
    Ok((shared, data_tx, task))
}

async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let tries = if listen.port() == 0 { 32 } else { 1 };
    let mut last_error = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| Error::Bind {
                addr: listen,
                source,
            })?;
        let addr = udp.local_addr().map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(Error::Bind {
        addr: listen,
        source: last_error.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

struct Driver {
    core: Core,
    /// The data directory, when there is one.
    storage: Option<DataDir>,
    start: Instant,
    udp: Arc<UdpSocket>,
    shared: Shared,
    pending: HashMap<RequestId, oneshot::Sender<Result<u64, RequestError>>>,
    next_request: RequestId,
    status_tx: watch::Sender<Status>,
    data_tx: Arc<watch::Sender<SharedMap>>,
    /// The snapshot last served to a peer, served again until the commit
    /// moves (see `ServedSnapshot`).
    served_snapshot: Option<Arc<tcp::ServedSnapshot>>,
    /// Outbound TCP streams for frames too large for a datagram.
    peers: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    conn_slots: Arc<admission::Admission>,
    fetching: Arc<std::sync::atomic::AtomicBool>,
}

/// Write-sync-commit rounds of one drain; each needs a change the last
/// one made, so two are the most ever seen.
const PERSIST_ROUNDS_MAX: usize = 8;

/// Inputs already waiting that are handled before one drain.
const READY_INPUTS_MAX: usize = 64;

/// Frames queued to one peer's TCP stream before new ones are dropped.
const PEER_QUEUE_FRAMES_MAX: usize = 64;

impl Driver {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(mut self, tcp: TcpListener, mut inbox: mpsc::Receiver<Inbound>) {
        info!(id = ?self.core.id(), "node started");
        let mut buf = vec![0u8; 65_536];
        let udp = self.udp.clone();
        let mut drained = self.drain();
        while drained.is_ok() {
            let deadline = self
                .core
                .poll_timeout()
                .map(|ms| self.start + Duration::from_millis(ms));
            let sleep_until =
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let woke = tokio::select! {
                message = inbox.recv() => Wake::Inbound(message),
                received = udp.recv_from(&mut buf) => Wake::Datagram(received),
                accepted = tcp.accept() => Wake::Accepted(accepted),
                _ = tokio::time::sleep_until(sleep_until.into()) => Wake::Timer,
            };
            // From here to the end of the drain the node does not listen:
            // the longest such stretch is reported.
            let busy = Instant::now();
            match woke {
                Wake::Inbound(None | Some(Inbound::Stop)) => break,
                Wake::Inbound(Some(message)) => self.on_inbound(message),
                Wake::Datagram(Ok((len, from))) => {
                    let now = self.now();
                    self.core.handle_datagram(now, from, &buf[..len]);
                }
                // ICMP errors of earlier sends surface here on some
                // systems: count them, keep going.
                Wake::Datagram(Err(_)) => {
                    self.shared
                        .counters
                        .send_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                Wake::Accepted(accepted) => {
                    if let Ok((stream, peer)) = accepted {
                        match self.conn_slots.admit() {
                            admission::Admitted::Free(slot)
                            | admission::Admitted::Evicting(slot) => {
                                tokio::spawn(
                                    tcp::serve(stream, peer, self.shared.clone(), slot)
                                        .in_current_span(),
                                );
                            }
                            admission::Admitted::Full => {
                                self.shared
                                    .counters
                                    .tcp_rejected
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Wake::Timer => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
            if !self.take_ready(&mut inbox, &udp, &mut buf) {
                break;
            }
            drained = self.drain();
            let busy_us = u64::try_from(busy.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.shared
                .counters
                .loop_busy_us_max
                .fetch_max(busy_us, Ordering::Relaxed);
        }
        if let Err(error) = drained {
            // Going on would mean sending what is not on disk.
            tracing::error!(%error, "cannot write the data directory: stopping the node");
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(RequestError::NotMember));
        }
        info!("node stopped");
    }

    /// Handles input that is already waiting, up to
    /// [`READY_INPUTS_MAX`], so that one drain (and one fsync) serves them
    /// all: under load, many writes and acks share a sync. False when the
    /// node is asked to stop.
    fn take_ready(
        &mut self,
        inbox: &mut mpsc::Receiver<Inbound>,
        udp: &UdpSocket,
        buf: &mut [u8],
    ) -> bool {
        for _ in 0..READY_INPUTS_MAX {
            let mut took = false;
            match inbox.try_recv() {
                Ok(Inbound::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => return false,
                Ok(message) => {
                    self.on_inbound(message);
                    took = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match udp.try_recv_from(buf) {
                Ok((len, from)) => {
                    let now = self.now();
                    self.core.handle_datagram(now, from, &buf[..len]);
                    took = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.shared
                        .counters
                        .send_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            if !took {
                break;
            }
        }
        true
    }

    /// A new request id for the core, whose outcome goes to `reply`.
    fn register(&mut self, reply: oneshot::Sender<Result<u64, RequestError>>) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        self.pending.insert(request, reply);
        request
    }

    fn on_inbound(&mut self, message: Inbound) {
        let now = self.now();
        match message {
            Inbound::Command {
                command: Command::Update { map },
                tag,
                reply,
            } => self.prepare_update(map, tag, reply),
            Inbound::PreparedUpdate {
                prepared,
                tag,
                reply,
            } => {
                let request = self.register(reply);
                let target = self
                    .core
                    .handle_prepared_update(now, request, prepared, tag);
                // Its last copy, if it shares nothing with the state.
                tokio::task::spawn_blocking(move || drop(target));
            }
            Inbound::Command {
                command,
                tag,
                reply,
            } => {
                let request = self.register(reply);
                match tag {
                    Some(tag) => self.core.handle_session_write(now, request, command, tag),
                    None => self.core.handle_command(now, request, command),
                }
            }
            Inbound::Read { key, reply } => {
                let version = self.core.commit();
                let read = match key {
                    Some(key) => LocalRead {
                        version,
                        value: self.core.map().get(&key).cloned(),
                        map: None,
                    },
                    None => LocalRead {
                        version,
                        value: None,
                        map: Some(self.shared_map()),
                    },
                };
                let _ = reply.send(read);
            }
            Inbound::Metrics { reply } => {
                let _ = reply.send(Metrics::from_parts(
                    self.core.metrics().clone(),
                    &self.shared.counters,
                    self.storage.as_ref().map(DataDir::counters),
                ));
            }
            Inbound::StreamFrame { from, frame, bytes } => self
                .core
                .handle_decoded_stream_frame(now, from, frame, bytes),
            Inbound::Snapshot(snapshot) => {
                let last = snapshot.last();
                self.core.handle_prepared_snapshot(now, snapshot);
                info!(version = last.version, "snapshot installed");
            }
            Inbound::ServeSnapshot { reply } => {
                let cluster_id = self.shared.cfg.cluster_id;
                let served =
                    tcp::ServedSnapshot::current(&mut self.served_snapshot, &self.core, cluster_id);
                let _ = reply.send(served);
            }
            Inbound::SetKeys { keys, reply } => {
                match &keys {
                    Some(keys) => info!(keys = %keys.describe(), "cluster keys set"),
                    None => info!("cluster keys removed"),
                }
                self.shared.keys.set(keys.clone());
                self.core.set_keyring(keys);
                let _ = reply.send(());
            }
            Inbound::Stop => {}
        }
    }

    /// Compares an update's map with the committed one on a blocking
    /// thread (a map that shares no structure with it is walked whole),
    /// then hands the difference back to this task, whose core compares
    /// again only the keys changed since.
    fn prepare_update(
        &mut self,
        map: SharedMap,
        tag: Option<crate::wire::WriteTag>,
        reply: oneshot::Sender<Result<u64, RequestError>>,
    ) {
        let base = self.core.commit();
        let base_map = self.core.map().clone();
        let inbox = self.shared.inbox.clone();
        tokio::spawn(
            async move {
                let prepared =
                    tokio::task::spawn_blocking(move || PreparedUpdate::new(base, &base_map, map))
                        .await;
                match prepared {
                    Ok(prepared) => {
                        let message = Inbound::PreparedUpdate {
                            prepared,
                            tag,
                            reply,
                        };
                        // A stopped node drops the reply: the caller hears
                        // that it is gone.
                        let _ = inbox.send(message).await;
                    }
                    Err(_) => {
                        let _ = reply.send(Err(RequestError::Busy {
                            limit: "update comparison",
                        }));
                    }
                }
            }
            .in_current_span(),
        );
    }

    fn shared_map(&self) -> SharedMap {
        self.core.map().clone()
    }

    /// Takes everything the core has to say: what must be durable first
    /// (written and synced), then frames and events.
    fn drain(&mut self) -> Result<(), StorageError> {
        // A leader's appends need nothing of what is about to be synced:
        // out first, so that followers sync while this node does.
        self.send_ready();
        if let Some(dir) = &mut self.storage {
            // What becomes durable may commit (a lone voter), which may
            // change what must be durable (its own removal): a few rounds.
            for _ in 0..PERSIST_ROUNDS_MAX {
                let mut wrote = false;
                while let Some(change) = self.core.poll_persist() {
                    wrote = true;
                    match change {
                        Persist::Record(record) => dir.append(&record)?,
                        Persist::Image(image) => dir.write_image(&image)?,
                    }
                }
                if !wrote {
                    break;
                }
                dir.sync()?;
                let now = self.start.elapsed().as_millis() as u64;
                self.core.handle_persisted(now);
            }
            if dir.wants_compaction() {
                debug!(
                    log_bytes = dir.log_bytes(),
                    "compacting the log into an image"
                );
                dir.write_image(&self.core.durable_image())?;
            }
        }
        self.send_ready();
        let mut commit_moved = false;
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Done { request, result } => {
                    if let Some(reply) = self.pending.remove(&request) {
                        let _ = reply.send(result);
                    }
                }
                Event::FetchSnapshot { from } => self.fetch_snapshot(from),
                Event::RoleChanged { role, term } => info!(%role, term, "role changed"),
                Event::LeaderChanged { leader } => info!(?leader, "leader changed"),
                Event::Joined { id } => info!(%id, "joined the cluster"),
                Event::Left => info!("left the cluster"),
                Event::Applied { .. } | Event::SnapshotInstalled { .. } => commit_moved = true,
            }
        }
        let now = self.now();
        let heard_at = self
            .core
            .staleness(now)
            .since_heartbeat_ms
            .map(|since| self.start + Duration::from_millis(now.saturating_sub(since)));
        let status = Status::of(&self.core, heard_at);
        // The heartbeat time is refreshed silently: subscribers hear of
        // changes of role, term, leader, members and version only.
        self.status_tx.send_if_modified(|current| {
            let changed = !current.same_but_heartbeat(&status);
            *current = status;
            changed
        });
        if commit_moved && self.data_tx.receiver_count() > 0 {
            let map = self.shared_map();
            self.data_tx.send_replace(map);
        }
        Ok(())
    }

    /// Sends every frame the core may send now.
    fn send_ready(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            if transmit.stream {
                self.send_stream(transmit.to, transmit.bytes);
            } else if self.udp.try_send_to(&transmit.bytes, transmit.to).is_err() {
                self.shared
                    .counters
                    .send_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn send_stream(&mut self, to: SocketAddr, bytes: Bytes) {
        let counters = self.shared.counters.clone();
        if let Some(queue) = self.peers.get(&to) {
            match queue.try_send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    counters
                        .stream_frames_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    self.peers.remove(&to);
                    return self.send_stream(to, bytes);
                }
            }
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
        let _ = tx.try_send(bytes);
        self.peers.insert(to, tx);
        let idle = Duration::from_millis(self.shared.cfg.tcp_idle_ms);
        tokio::spawn(tcp::peer_writer(to, rx, idle, counters).in_current_span());
    }

    fn fetch_snapshot(&mut self, from: SocketAddr) {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        debug!(%from, "fetching a snapshot");
        let shared = self.shared.clone();
        let fetching = self.fetching.clone();
        tokio::spawn(
            async move {
                match tcp::fetch_snapshot(from, &shared).await {
                    Ok(snapshot) => {
                        shared
                            .counters
                            .snapshots_fetched
                            .fetch_add(1, Ordering::Relaxed);
                        let prepared = PreparedSnapshot::new(snapshot);
                        let _ = shared.inbox.send(Inbound::Snapshot(prepared)).await;
                    }
                    Err(error) => {
                        shared
                            .counters
                            .snapshot_fetch_errors
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(%from, %error, "snapshot fetch failed");
                    }
                }
                fetching.store(false, Ordering::Release);
            }
            .in_current_span(),
        );
    }
}
