//! The protocol core: one node's Raft state machine, without I/O.
//!
//! The core never touches sockets, clocks or global randomness. The caller
//! feeds it input and drains its output, in this order:
//!
//! 1. Input through the `handle_*` methods, each with the current time:
//!    [`Core::handle_datagram`], [`Core::handle_stream_frame`],
//!    [`Core::handle_timeout`] (when [`Core::poll_timeout`] has passed),
//!    [`Core::handle_command`] and [`Core::handle_snapshot`].
//! 2. Output through the `poll_*` methods until each returns `None`:
//!    [`Core::poll_persist`] first (when `durable`, transmits and events are
//!    held until everything it hands out is taken; the caller writes and
//!    syncs it, then calls [`Core::handle_persisted`]), then
//!    [`Core::poll_transmit`] and [`Core::poll_event`], and finally
//!    [`Core::poll_timeout`] for the next deadline. A leader's appends are
//!    not held: a caller that drains [`Core::poll_transmit`] before it
//!    writes lets the followers sync while the leader does.
//!
//! Randomness (the election timeouts, the key of the join tokens) comes
//! from a seed given to [`Core::new`], so a simulator can replay any run
//! from one number; a node gives the join tokens a key of their own
//! ([`Core::set_join_token_key`]).

mod apply_slices;
mod config;
mod election;
mod join_token;
mod log;
mod membership;
mod metrics;
mod reads;
mod replication;
mod rng;
mod sessions;
mod state;
mod state_limit;
mod term_admission;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

pub use config::{
    ConfigError, CoreConfig, APPLY_SLICE_PAIRS_MAX_DEFAULT, FOUND_LISTEN_HEARTBEATS,
    LOG_TAIL_BYTES_MAX_DEFAULT, STATE_BYTES_MAX_DEFAULT,
};
pub use join_token::{JoinToken, JOIN_TOKEN_BUCKET_MS};
pub use metrics::{CoreMetrics, JoinRefusal, TermRefusal};
pub use term_admission::TERM_STEP_MAX;
pub use types::*;

use crate::wire::{
    self, decode_frame_keyed, with_payload, Change, DecodeLimits, Entry, Frame, FrameHead, Keyring,
    Kind, LogId, Member, Message, NodeId, Snapshot, Write, WriteTag,
};
use join_token::JoinTokens;
use log::Log;
use rng::Rng;
pub use state::Map;
use state::State;

/// Where the node is in an election, with what that role needs.
#[derive(Debug)]
enum RoleState {
    Follower,
    PreCandidate { grants: BTreeSet<NodeId> },
    Candidate { votes: BTreeSet<NodeId> },
    Leader(Box<LeaderState>),
}

/// A leader's view of one other member.
#[derive(Debug, Clone)]
struct Progress {
    /// Next version to send.
    next: u64,
    /// Highest version known to be in its log.
    matched: u64,
    /// Last time it answered in this term.
    last_heard: Millis,
    /// Highest heartbeat round it answered.
    acked_seq: u64,
    /// When it was last told to fetch a snapshot.
    snapshot_hint_at: Option<Millis>,
    /// The last append sent and not yet acknowledged: a "not matched"
    /// answer that only shows it has not arrived yet does not resend it
    /// before `resend_at`.
    in_flight: Option<InFlight>,
}

/// An append on its way to a follower.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Its first version.
    first: u64,
    /// Its last version.
    last: u64,
    /// When it may be sent again if not acknowledged.
    resend_at: Millis,
}

impl Progress {
    fn new(next: u64, now: Millis) -> Progress {
        Progress {
            next,
            matched: 0,
            last_heard: now,
            acked_seq: 0,
            snapshot_hint_at: None,
            in_flight: None,
        }
    }
}

/// How many voters of `config` are `me` or have a `progress` for which
/// `answered` holds: the count a leader compares with the quorum for
/// check-quorum, read confirmation and retiring.
fn voters_answering(
    config: &BTreeMap<NodeId, Member>,
    me: Option<NodeId>,
    progress: &BTreeMap<NodeId, Progress>,
    answered: impl Fn(&Progress) -> bool,
) -> usize {
    config
        .values()
        .filter(|m| m.voter)
        .filter(|m| Some(m.id) == me || progress.get(&m.id).is_some_and(&answered))
        .count()
}

/// A linearizable read waiting for its quorum round.
#[derive(Debug, Clone)]
struct PendingRead {
    /// Who asked: a local request, or a follower (address and its id).
    origin: ReadOrigin,
    /// The commit version when it arrived.
    index: u64,
    /// The heartbeat round that must be acknowledged by a quorum; `None`
    /// until the leader has committed in its term.
    seq: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum ReadOrigin {
    Local(RequestId),
    Remote(SocketAddr, u64),
}

#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    /// Heartbeat round.
    seq: u64,
    heartbeat_at: Millis,
    check_quorum_at: Millis,
    /// Version of the entry this leader appended first; reads wait until
    /// it is committed.
    term_start: u64,
    since: Millis,
    /// Writes waiting for commit, by the version of their entry.
    writes: BTreeMap<u64, RequestId>,
    reads: Vec<PendingRead>,
    transfer: Option<Transfer>,
    /// Set once this leader's own removal is committed: it stays on until
    /// the remaining members have heard of the commit, then steps down.
    retiring: Option<Retiring>,
    /// The commit at the previous membership upkeep: a learner that holds
    /// it is caught up. Comparing with the commit of now would never
    /// promote under a steady write load (a lone voter commits the moment
    /// it appends, and the learner is always a round behind).
    caught_up_floor: u64,
}

#[derive(Debug, Clone, Copy)]
struct Retiring {
    /// The heartbeat round that carries the commit of the removal.
    seq: u64,
    /// The removal's version.
    version: u64,
    /// Steps down then even without a quorum's acknowledgement.
    deadline: Millis,
}

#[derive(Debug, Clone, Copy)]
struct Transfer {
    target: NodeId,
    deadline: Millis,
    request: Option<RequestId>,
    /// When the leader asked the target to stand.
    sent: bool,
}

/// Joining state of a node that is not a member yet.
#[derive(Debug, Default)]
struct Joining {
    /// Every address heard of (bounded by `seeds_max`).
    known: BTreeSet<SocketAddr>,
    /// Addresses that said they belong to no cluster.
    unjoined: BTreeSet<SocketAddr>,
    /// A leader address learned from a redirect.
    leader_hint: Option<SocketAddr>,
    /// The token of the last challenge to this node's address: its
    /// introductions carry it (as a [`crate::wire::JoinProof`]) until it
    /// is a member, so that the leader that made it adds this node.
    token: Option<JoinToken>,
    /// When this node last answered a challenge at once (see
    /// `on_join_challenge`).
    proof_sent_at: Option<Millis>,
    introduce_at: Millis,
    /// Set once this node knows that a cluster it belongs to exists (it was
    /// removed from one, its data directory remembers one, or a member of
    /// one sent it a frame): it rejoins, never founds.
    rejoin: bool,
    /// A node with no one to contact founds only from here on: until then
    /// it listens for a cluster that still counts this address as a member
    /// (the founder restarted without its data), see
    /// [`CoreConfig::found_listen_ms`].
    found_after: Millis,
    /// Started with no one to contact: the founder by its command line.
    /// It founds once it has listened (not by the bootstrap rule of nodes
    /// started together), and tells the nodes that introduce themselves
    /// meanwhile that it belongs to a cluster, so that they wait for it
    /// instead of founding one of their own.
    designated: bool,
}

/// A read forwarded to the leader, waiting for its index and then for
/// this node to apply up to it.
#[derive(Debug, Clone, Copy)]
struct ForwardedRead {
    request: RequestId,
    index: Option<u64>,
    deadline: Millis,
    /// When to ask the leader again if no answer came (a datagram lost).
    resend_at: Millis,
    /// The leader it was last asked of: only its answer counts.
    asked: NodeId,
}

/// One node's protocol state machine. See the module docs for the order
/// of calls.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    rng: Rng,
    /// Makes and checks the tokens a joining node must return before it
    /// is added.
    join_tokens: JoinTokens,
    id: Option<NodeId>,
    /// Set once this node has left (or was removed): it never rejoins in
    /// this incarnation.
    left: bool,

    term: u64,
    voted_for: Option<NodeId>,
    /// Term or vote changed since the last [`Core::poll_persist`].
    hard_state_dirty: bool,
    /// Log and identity changes not yet handed out (durable cores only).
    persist: VecDeque<Persist>,
    /// The state was replaced wholesale: the next persist is an image.
    image_pending: bool,
    /// The last log version handed out by [`Core::poll_persist`].
    handed_out_to: u64,
    /// The last log version known to be on disk (durable cores): what a
    /// leader counts itself as holding.
    persisted_to: u64,

    role: RoleState,
    /// Set while a vote granted in this term has no known winner.
    voter_until: Option<Millis>,
    leader: Option<(NodeId, SocketAddr)>,
    leader_contact: Option<Millis>,
    /// When a frame last moved the term up by more than one (see
    /// `term_admission`).
    term_jumped_at: Option<Millis>,
    election_at: Millis,
    /// When a member that knows no leader next tells every member it is
    /// there (see [`Core::leaderless_probe`]).
    probe_at: Millis,
    reported_role: Role,

    log: Log,
    /// The applied version: `state` is the state after it.
    commit: u64,
    /// The highest version known committed: above `commit` only while a
    /// large change is applied a slice at a time (`staged_apply`).
    commit_known: u64,
    state: State,
    /// The large committed change being applied (see `apply_slices.rs`).
    staged_apply: Option<apply_slices::StagedApply>,
    /// Members with uncommitted membership changes applied: the
    /// configuration quorums are counted in (Raft §6).
    config: BTreeMap<NodeId, Member>,

    joining: Option<Joining>,
    forwarded_reads: BTreeMap<u64, ForwardedRead>,
    next_forward_id: u64,
    leave: Option<(RequestId, Millis)>,
    /// Set by a leave request and kept after it times out: when this node
    /// finds itself removed, it stays out.
    leaving: bool,
    leave_sent_at: Millis,
    /// The `now` of the input being handled, for code deep in a handler.
    clock: Millis,
    /// Bytes of the frame being handled: no answer to an introduction,
    /// which may come from a spoofed source, is larger.
    input_bytes: usize,
    fetch_hint_at: Option<Millis>,

    transmits: VecDeque<Transmit>,
    /// A leader's appends, which need nothing of what is being made
    /// durable: sent while its own write and sync run (Raft thesis
    /// §10.2.1), so a durable write costs one sync on the way, not two.
    early_transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    metrics: CoreMetrics,
    scratch: BytesMut,
    /// The last append frame too large for a datagram, with what it holds:
    /// a heartbeat round sends the same one to every peer that lacks the
    /// same entries, encoded once.
    append_cache: Option<(AppendKey, Bytes)>,
}

/// A snapshot turned into the state it holds, ready to install.
#[derive(Debug, Clone)]
pub struct PreparedSnapshot {
    last: LogId,
    state: State,
}

impl PreparedSnapshot {
    /// Builds the state `snapshot` holds: the costly part of installing a
    /// large snapshot, done without the core.
    pub fn new(snapshot: Snapshot) -> PreparedSnapshot {
        PreparedSnapshot {
            last: snapshot.last,
            state: State::from_snapshot(snapshot),
        }
    }

    /// The last change the snapshot includes.
    pub fn last(&self) -> LogId {
        self.last
    }
}

/// An update's difference from the committed map at one version,
/// computed without the core: for a map that shares no structure with the
/// node's (a plain collection), comparing walks the whole map, which is
/// long work for a large one. Given to [`Core::handle_prepared_update`],
/// which compares again only the keys the log changed since.
#[derive(Debug, Clone)]
pub struct PreparedUpdate {
    base: u64,
    target: Map,
    set: Vec<(String, String)>,
    remove: Vec<String>,
}

impl PreparedUpdate {
    /// The difference between `base_map`, the committed map at version
    /// `base` (from [`Core::map`] and [`Core::commit`]), and `target`.
    pub fn new(base: u64, base_map: &Map, target: Map) -> PreparedUpdate {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        for item in base_map.diff(&target) {
            match item {
                imbl::ordmap::DiffItem::Add(k, v) => set.push((k.clone(), v.clone())),
                imbl::ordmap::DiffItem::Update { new: (k, v), .. } => {
                    set.push((k.clone(), v.clone()))
                }
                imbl::ordmap::DiffItem::Remove(k, _) => remove.push(k.clone()),
            }
        }
        PreparedUpdate {
            base,
            target,
            set,
            remove,
        }
    }
}

/// The committed state at `last`, shared with the core: becomes a
/// [`Snapshot`] with [`SnapshotSource::into_snapshot`].
#[derive(Debug, Clone)]
pub struct SnapshotSource {
    /// The cluster generation of the state.
    pub generation: u64,
    /// The last change it includes.
    pub last: LogId,
    /// The members.
    pub members: Vec<Member>,
    /// The next member id to give.
    pub next_member_id: u32,
    /// The map.
    pub map: Map,
    /// The open client sessions.
    pub sessions: Vec<crate::wire::SessionRecord>,
}

impl SnapshotSource {
    /// The snapshot (copies the map).
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            generation: self.generation,
            last: self.last,
            members: self.members,
            next_member_id: self.next_member_id,
            map: self
                .map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sessions: self.sessions,
        }
    }
}

/// What an encoded append frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AppendKey {
    term: u64,
    prev: LogId,
    commit: u64,
    seq: u64,
    last: u64,
}

impl Core {
    /// A core for `config`, drawing randomness from `seed`.
    pub fn new(config: CoreConfig, seed: u64, now: Millis) -> Result<Core, ConfigError> {
        let mut core = Core::blank(config, seed, now)?;
        let seedless = core.cfg.seeds.iter().all(|s| *s == core.cfg.addr);
        // With no one to contact, this may be a brand-new cluster or the
        // founder of a running one restarted without its data: the members
        // of such a cluster still send to this address (heartbeats from
        // their leader, votes while they elect one), so listen that long
        // before founding (see `heard_of_cluster`).
        let found_after = if seedless {
            now.saturating_add(core.cfg.found_listen_ms())
        } else {
            now
        };
        let mut joining = Joining {
            introduce_at: now,
            found_after,
            designated: seedless,
            ..Joining::default()
        };
        joining.known.extend(core.cfg.seeds.iter().copied());
        joining.known.insert(core.cfg.addr);
        core.joining = Some(joining);
        Ok(core)
    }

    /// A core that resumes from what a data directory kept: the same
    /// member, with its term, vote, committed state and log. Without an
    /// identity in `image` (the node never joined, or left), the same as
    /// [`Core::new`]. The image must belong to `config.addr`.
    pub fn restore(
        mut config: CoreConfig,
        seed: u64,
        now: Millis,
        image: DurableImage,
    ) -> Result<Core, ConfigError> {
        let Some(identity) = image.identity else {
            // Not a member (never joined, left, or removed while away): a
            // new member, but one that remembers the cluster it knew, so a
            // removed founder finds it again instead of founding another.
            let mut core = Core::new(config, seed, now)?;
            let remembered = remembered_addrs(&image.snapshot, &image.entries);
            let knew_cluster = !remembered.is_empty() || image.hard_state.term > 0;
            core.learn_seeds(remembered.into_iter().map(|a| a.to_string()));
            if let Some(joining) = &mut core.joining {
                joining.rejoin |= knew_cluster;
            }
            return Ok(core);
        };
        if identity.addr != config.addr.to_string() {
            return Err(ConfigError {
                what: "the data directory belongs to a node at another address",
            });
        }
        config.incarnation = identity.incarnation;
        let mut core = Core::blank(config, seed, now)?;
        core.id = Some(identity.id);
        core.term = image.hard_state.term;
        core.voted_for = image.hard_state.voted_for;
        let last = image.snapshot.last;
        core.state = State::from_snapshot(image.snapshot);
        // The identity was written when the node joined; the image's
        // snapshot only once the log was compacted.
        core.state.generation = identity.generation;
        core.commit = last.version;
        core.commit_known = last.version;
        core.log.reset(last);
        for entry in image.entries {
            if entry.term < core.log.last().term || entry.term > core.term {
                return Err(ConfigError {
                    what: "the data directory's log is out of order (a term decreases, or \
                           exceeds the node's): damaged, not torn",
                });
            }
            core.log.push(entry);
        }
        core.recompute_config();
        core.reset_election_timer(now);
        if core.voters().eq([identity.id]) {
            // The only voter: nobody else can lead, so no reason to wait.
            core.election_at = now;
        }
        core.handed_out_to = core.log.last().version;
        core.persisted_to = core.handed_out_to;
        Ok(core)
    }

    /// A core with nothing: neither joining nor a member yet.
    fn blank(config: CoreConfig, seed: u64, now: Millis) -> Result<Core, ConfigError> {
        config.validate()?;
        Ok(Core {
            rng: Rng::new(seed),
            join_tokens: JoinTokens::from_seed(seed),
            id: None,
            left: false,
            term: 0,
            voted_for: None,
            hard_state_dirty: false,
            persist: VecDeque::new(),
            image_pending: false,
            handed_out_to: 0,
            persisted_to: 0,
            role: RoleState::Follower,
            voter_until: None,
            leader: None,
            leader_contact: None,
            term_jumped_at: None,
            election_at: now,
            probe_at: now,
            reported_role: Role::Follower,
            log: Log::default(),
            commit: 0,
            commit_known: 0,
            state: State::default(),
            staged_apply: None,
            config: BTreeMap::new(),
            joining: None,
            forwarded_reads: BTreeMap::new(),
            // Ids of forwarded reads start anywhere: an answer still on its
            // way to the previous process at this address (which counted
            // from the same place otherwise) matches no read of this one.
            next_forward_id: Rng::new(seed ^ 0x5245_4144).next_u64() >> 1,
            leave: None,
            leaving: false,
            leave_sent_at: 0,
            clock: now,
            input_bytes: 0,
            fetch_hint_at: None,
            transmits: VecDeque::new(),
            early_transmits: VecDeque::new(),
            events: VecDeque::new(),
            metrics: CoreMetrics::default(),
            scratch: BytesMut::new(),
            append_cache: None,
            cfg: config,
        })
    }

    // ----- input -----

    /// A UDP datagram from `from`. Undecodable frames are counted by reason
    /// and dropped; nothing else changes.
    pub fn handle_datagram(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        self.handle_bytes(now, from, bytes, false);
    }

    /// One frame received over TCP (without its length prefix). `from` is
    /// the connection's address; answers go to the sender's member address,
    /// since a connection's source port is not where the peer listens.
    pub fn handle_stream_frame(&mut self, now: Millis, from: SocketAddr, bytes: &[u8]) {
        self.handle_bytes(now, from, bytes, true);
    }

    /// One frame received over TCP and already decoded, with its tag
    /// checked, by the caller (`bytes` long): a large append is decoded
    /// where it was read, not where the node's inputs queue behind it.
    pub fn handle_decoded_stream_frame(
        &mut self,
        now: Millis,
        from: SocketAddr,
        frame: Frame,
        bytes: usize,
    ) {
        self.clock = now;
        self.input_bytes = bytes;
        self.metrics.frames_in += 1;
        self.metrics.bytes_in += bytes as u64;
        let from = self.addr_of(frame.sender).unwrap_or(from);
        self.handle_frame(now, from, frame);
        self.after_input(now);
    }

    fn handle_bytes(&mut self, now: Millis, from: SocketAddr, bytes: &[u8], stream: bool) {
        self.clock = now;
        self.input_bytes = bytes.len();
        self.metrics.frames_in += 1;
        self.metrics.bytes_in += bytes.len() as u64;
        let limits = DecodeLimits {
            cluster_id: Some(self.cfg.cluster_id),
            frame_bytes_max: if stream {
                self.cfg.stream_frame_bytes_max
            } else {
                self.cfg.datagram_bytes_max
            },
        };
        // The tag is checked before any field of the frame is trusted.
        match decode_frame_keyed(bytes, &limits, self.cfg.keyring.as_ref()) {
            Ok(frame) => {
                let from = if stream {
                    self.addr_of(frame.sender).unwrap_or(from)
                } else {
                    from
                };
                self.handle_frame(now, from, frame)
            }
            Err(error) => self.metrics.decode_errors[error.reason().index()] += 1,
        }
        self.after_input(now);
    }

    /// Replaces the cluster keys (see [`CoreConfig::keyring`]): frames sent
    /// from now on are signed with the new primary, frames received are
    /// checked against the new keys. For a key rotation without downtime.
    pub fn set_keyring(&mut self, keyring: Option<Keyring>) {
        self.cfg.keyring = keyring;
        self.append_cache = None;
    }

    /// Replaces the key of the tokens a joining node must return before it
    /// is added (see [`crate::wire::JoinChallenge`]), which is otherwise
    /// derived from the seed given to [`Core::new`] and so has only its 64
    /// bits. A node gives 32 random bytes here; a simulator keeps the
    /// seed's key, to replay runs. Tokens already sent stop being valid.
    pub fn set_join_token_key(&mut self, key: [u8; 32]) {
        self.join_tokens = JoinTokens::new(key);
    }

    /// Time has reached (or passed) [`Core::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Millis) {
        self.clock = now;
        self.advance_staged_apply(now);
        if let Some(until) = self.voter_until {
            if now >= until {
                self.voter_until = None;
            }
        }
        if self.joining.is_some() {
            self.joining_tick(now);
        }
        if let RoleState::Leader(_) = self.role {
            self.leader_tick(now);
        } else if self.id.is_some() && !self.left {
            if now >= self.election_at {
                self.election_timeout(now);
            }
            if self.leader.is_none() && now >= self.probe_at {
                self.leaderless_probe(now);
            }
        }
        self.expire_requests(now);
        self.after_input(now);
    }

    /// A client command; its outcome arrives as [`Event::Done`].
    pub fn handle_command(&mut self, now: Millis, request: RequestId, command: Command) {
        self.clock = now;
        match command {
            Command::Set { key, value } => {
                self.propose_write(now, request, Change::Set { key, value })
            }
            Command::Remove { key } => self.propose_write(now, request, Change::Remove { key }),
            Command::Update { map } => {
                let (set, remove) = self.diff_to_tail(&map);
                self.propose_write(now, request, Change::Replace { set, remove })
            }
            Command::OpenSession { id } => {
                let sessions_max = self.cfg.sessions_max;
                self.propose_write(now, request, Change::OpenSession { id, sessions_max })
            }
            Command::ReadLinearizable => self.read_linearizable(now, request),
            Command::Leave => self.start_leave(now, request),
            Command::TransferLeadership => self.start_transfer(now, Some(request)),
        }
        self.after_input(now);
    }

    /// A write in a client session: `tag` says which request of which
    /// session it is, so that sending it again (after an unknown outcome,
    /// to this node or another) applies it at most once, and answers with
    /// the version it was first applied at. A command that is not a write
    /// (`Set`, `Remove`, `Update`) is handled as by
    /// [`Core::handle_command`], the tag unused.
    pub fn handle_session_write(
        &mut self,
        now: Millis,
        request: RequestId,
        command: Command,
        tag: WriteTag,
    ) {
        self.clock = now;
        let write = match command {
            Command::Set { key, value } => Write::Set { key, value },
            Command::Remove { key } => Write::Remove { key },
            Command::Update { map } => {
                let (set, remove) = self.diff_to_tail(&map);
                Write::Replace { set, remove }
            }
            other => return self.handle_command(now, request, other),
        };
        match (&self.role, self.state.sessions.reply(&tag)) {
            // Applied before, and remembered: the same answer, nothing new
            // in the log.
            (RoleState::Leader(_), Some(version)) => self.done(request, Ok(version)),
            _ => self.propose_write(now, request, Change::SessionWrite { tag, write }),
        }
        self.after_input(now);
    }

    /// [`Command::Update`] of `prepared.target`, in a session when `tag`
    /// is given (as [`Core::handle_session_write`]), with its difference
    /// computed by [`PreparedUpdate::new`] wherever the caller likes: for
    /// a large map, not where the node's inputs wait. Gives the target map
    /// back: dropping a large one that shares nothing with the node's is
    /// long work too, for the caller to do elsewhere.
    pub fn handle_prepared_update(
        &mut self,
        now: Millis,
        request: RequestId,
        prepared: PreparedUpdate,
        tag: Option<WriteTag>,
    ) -> Map {
        self.clock = now;
        let (set, remove, target) = self.diff_prepared(prepared);
        match tag {
            None => self.propose_write(now, request, Change::Replace { set, remove }),
            Some(tag) => {
                let write = Write::Replace { set, remove };
                match (&self.role, self.state.sessions.reply(&tag)) {
                    (RoleState::Leader(_), Some(version)) => self.done(request, Ok(version)),
                    _ => self.propose_write(now, request, Change::SessionWrite { tag, write }),
                }
            }
        }
        self.after_input(now);
        target
    }

    /// A snapshot fetched after [`Event::FetchSnapshot`]. Older than the
    /// committed state: ignored.
    pub fn handle_snapshot(&mut self, now: Millis, snapshot: Snapshot) {
        self.handle_prepared_snapshot(now, PreparedSnapshot::new(snapshot));
    }

    /// [`Core::handle_snapshot`] with the state already built from the
    /// snapshot (by [`PreparedSnapshot::new`], wherever the caller likes:
    /// for a large map, not where the node's inputs wait).
    pub fn handle_prepared_snapshot(&mut self, now: Millis, snapshot: PreparedSnapshot) {
        self.clock = now;
        self.install_snapshot(now, snapshot);
        self.after_input(now);
    }

    // ----- output -----

    /// The next change to make durable (`durable` cores only; others
    /// always get `None`). Everything handed out must be on disk (written
    /// and synced) before the next [`Core::poll_transmit`] or
    /// [`Core::poll_event`] call: votes, acks and commits depend on it.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        if !self.cfg.durable {
            self.hard_state_dirty = false;
            return None;
        }
        if self.image_pending {
            // The image holds every change queued before or after it.
            self.image_pending = false;
            self.hard_state_dirty = false;
            self.persist.clear();
            self.handed_out_to = self.log.last().version;
            self.persisted_to = self.persisted_to.min(self.commit);
            return Some(Persist::Image(Box::new(self.durable_image())));
        }
        if self.hard_state_dirty {
            self.hard_state_dirty = false;
            return Some(Persist::Record(Record::HardState(self.hard_state())));
        }
        let change = self.persist.pop_front()?;
        match &change {
            Persist::Record(Record::Entry { version, .. }) => self.handed_out_to = *version,
            Persist::Record(Record::Truncate { from }) => {
                let kept = from.saturating_sub(1);
                self.handed_out_to = self.handed_out_to.min(kept);
                self.persisted_to = self.persisted_to.min(kept);
            }
            _ => {}
        }
        Some(change)
    }

    /// Everything [`Core::poll_persist`] handed out is now on disk (written
    /// and synced). A durable leader counts its own entries toward a
    /// quorum only from here on, so a lone voter commits here.
    pub fn handle_persisted(&mut self, now: Millis) {
        self.clock = now;
        if self.persisted_to == self.handed_out_to {
            return;
        }
        self.persisted_to = self.handed_out_to;
        self.maybe_commit(now);
        self.after_input(now);
    }

    /// Whether a durable core has changes not yet handed to
    /// [`Core::poll_persist`]: until then nothing is sent or reported.
    fn persist_outstanding(&self) -> bool {
        self.cfg.durable
            && (self.hard_state_dirty || self.image_pending || !self.persist.is_empty())
    }

    /// The next frame to send. With `durable` set, nothing is returned
    /// while [`Core::poll_persist`] has something to hand out.
    ///
    /// A leader's appends are the exception: they carry entries and a
    /// commit that do not depend on its own disk (it counts itself toward
    /// a quorum only once synced), so they are returned at once, and the
    /// caller sends them before it writes and syncs what `poll_persist`
    /// hands out: the leader's sync and its followers' run side by side.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let transmit = match self.early_transmits.pop_front() {
            Some(transmit) => transmit,
            None if self.persist_outstanding() => return None,
            None => self.transmits.pop_front()?,
        };
        self.metrics.frames_out += 1;
        self.metrics.bytes_out += transmit.bytes.len() as u64;
        Some(transmit)
    }

    /// The next event. With `durable` set, nothing is returned while
    /// [`Core::poll_persist`] has something to hand out (a write is not
    /// done before its entry is on this node's disk).
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.persist_outstanding() {
            return None;
        }
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut at = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(joining) = &self.joining {
            at(joining.introduce_at);
        }
        if let Some(until) = self.voter_until {
            at(until);
        }
        if self.staged_apply.is_some() {
            // The next slice of a large change: due at once.
            at(self.clock);
        }
        match &self.role {
            RoleState::Leader(leader) => {
                at(leader.heartbeat_at);
                at(leader.check_quorum_at);
                if let Some(transfer) = leader.transfer {
                    at(transfer.deadline);
                }
            }
            _ if self.id.is_some() && !self.left => {
                at(self.election_at);
                if self.leader.is_none() {
                    at(self.probe_at);
                }
            }
            _ => {}
        }
        for read in self.forwarded_reads.values() {
            at(read.deadline);
            if read.index.is_none() {
                at(read.resend_at);
            }
        }
        if let Some((_, deadline)) = self.leave {
            at(deadline);
            // A leader leaving is handing over first; it asks to be removed
            // once it follows.
            if !matches!(self.role, RoleState::Leader(_)) {
                at(self.leave_sent_at + self.cfg.heartbeat_ms * 2);
            }
        }
        next
    }

    // ----- queries -----

    /// The role, in the original design's terms.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Leader(_) => Role::Leader,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Follower | RoleState::PreCandidate { .. } => {
                if self.voter_until.is_some() {
                    Role::Voter
                } else {
                    Role::Follower
                }
            }
        }
    }

    /// The current term (election number).
    pub fn term(&self) -> u64 {
        self.term
    }

    /// This node's member id, once it has joined.
    pub fn id(&self) -> Option<NodeId> {
        self.id
    }

    /// The generation of the cluster this node is a member of (see
    /// `docs/WIRE.md`); `None` while it is not a member.
    pub fn generation(&self) -> Option<u64> {
        self.member_generation()
    }

    /// Where this node listens.
    pub fn addr(&self) -> SocketAddr {
        self.cfg.addr
    }

    /// The current leader's address, if known.
    pub fn leader(&self) -> Option<SocketAddr> {
        match self.role {
            RoleState::Leader(_) => Some(self.cfg.addr),
            _ => self.leader.map(|(_, addr)| addr),
        }
    }

    /// The committed (and applied) version.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// The last change in the log.
    pub fn last_log_id(&self) -> LogId {
        self.log.last()
    }

    /// The change at `version`, while the log still holds it.
    pub fn entry(&self, version: u64) -> Option<&Entry> {
        self.log.entry(version)
    }

    /// Changes at or before this are compacted into the state.
    pub fn log_base(&self) -> LogId {
        self.log.base()
    }

    /// The committed members.
    pub fn members(&self) -> Vec<Member> {
        self.state.members.values().cloned().collect()
    }

    /// The committed map (cloning it is a pointer copy).
    pub fn map(&self) -> &Map {
        &self.state.map
    }

    /// Order-independent hash of the committed map.
    pub fn digest(&self) -> u64 {
        self.state.digest
    }

    /// Whether this node has an id and is in its own committed members.
    pub fn is_member(&self) -> bool {
        self.id
            .is_some_and(|id| self.state.members.contains_key(&id))
    }

    /// How stale a local read is.
    pub fn staleness(&self, now: Millis) -> Staleness {
        let since_heartbeat_ms = match self.role {
            RoleState::Leader(_) => Some(0),
            _ => self.leader_contact.map(|t| now.saturating_sub(t)),
        };
        Staleness {
            term: self.term,
            version: self.commit,
            since_heartbeat_ms,
        }
    }

    /// The committed state as a snapshot, for a node that fetches one.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_source().into_snapshot()
    }

    /// What [`Core::snapshot`] is made of, taken without copying the map
    /// (a pointer copy): the snapshot itself can then be built elsewhere.
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource {
            generation: self.state.generation,
            last: LogId {
                term: self.log.term_at(self.commit).unwrap_or(0),
                version: self.commit,
            },
            members: self.members(),
            next_member_id: self.state.next_member_id,
            map: self.state.map.clone(),
            sessions: self.state.sessions.to_records(),
        }
    }

    /// How many client sessions are open.
    pub fn sessions_open(&self) -> usize {
        self.state.sessions.len()
    }

    /// Term and vote.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }

    /// Who this node is, while it is a member (not after it left).
    pub fn identity(&self) -> Option<Identity> {
        let id = self.id.filter(|_| !self.left)?;
        Some(Identity {
            id,
            incarnation: self.cfg.incarnation,
            addr: self.cfg.addr.to_string(),
            generation: self.state.generation,
        })
    }

    /// Everything a data directory needs to restore this node: the
    /// committed state as a snapshot and the log after it. Taken after a
    /// snapshot install, and whenever the caller compacts its log.
    pub fn durable_image(&self) -> DurableImage {
        DurableImage {
            identity: self.identity(),
            hard_state: self.hard_state(),
            snapshot: self.snapshot(),
            entries: self
                .log
                .after(self.commit)
                .map(|(_, e)| e.clone())
                .collect(),
        }
    }

    /// Counters.
    pub fn metrics(&self) -> &CoreMetrics {
        &self.metrics
    }

    // ----- shared helpers -----

    fn handle_frame(&mut self, now: Millis, from: SocketAddr, frame: Frame) {
        let Frame {
            sender,
            term,
            message,
            generation,
            ..
        } = frame;
        match message {
            Message::Introduce(m) => return self.on_introduce(now, from, m, None),
            Message::JoinProof(m) => {
                let (introduce, token) = m.into_parts();
                return self.on_introduce(now, from, introduce, Some(token));
            }
            Message::JoinChallenge(m) => return self.on_join_challenge(now, from, m),
            Message::Redirect(m) => return self.on_redirect(now, from, m),
            Message::Welcome(m) => return self.on_welcome(now, from, sender, term, generation, m),
            _ => {}
        }
        if self.id.is_none() || self.left {
            self.metrics.dropped_not_member += 1;
            if generation.is_some() && sender != NodeId::UNASSIGNED {
                self.heard_of_cluster(now, from, &message);
            }
            return;
        }
        if generation != Some(self.state.generation) {
            // Another history (a cluster founded apart, at the same
            // addresses perhaps, with the same ids and terms): its
            // entries, votes and acknowledgements mean nothing here.
            self.metrics.dropped_foreign_generation += 1;
            return;
        }
        if self.was_removed(sender) {
            // Whatever a removed member says, the answer is that it was
            // removed: it may have missed the news.
            return self.send_removal_notice(from);
        }
        if term > self.term {
            if let Err(reason) = self.admit_higher_term(now, sender, term, &message) {
                self.metrics.term_refused[reason.index()] += 1;
                return;
            }
            if !matches!(message, Message::PreVoteRequest(_)) {
                self.note_term_admitted(now, term);
            }
        }
        match message {
            Message::PreVoteRequest(m) => self.on_pre_vote_request(now, from, term, m),
            Message::PreVoteResponse(m) => self.on_pre_vote_response(now, sender, term, m),
            Message::VoteRequest(m) => self.on_vote_request(now, from, sender, term, m),
            message => {
                if term < self.term {
                    self.metrics.dropped_stale_term += 1;
                    // A deposed leader learns of the newer term from the ack.
                    match message {
                        Message::Heartbeat(hb) => self.send(
                            from,
                            Message::HeartbeatAck(crate::wire::HeartbeatAck {
                                seq: hb.seq,
                                matched: false,
                                version: self.log.last().version,
                            }),
                        ),
                        Message::Append(a) => self.send(
                            from,
                            Message::AppendAck(crate::wire::AppendAck {
                                seq: a.seq,
                                success: false,
                                version: self.log.last().version,
                            }),
                        ),
                        _ => {}
                    }
                    return;
                }
                if term > self.term {
                    self.become_follower(now, term, None);
                }
                match message {
                    Message::VoteResponse(m) => self.on_vote_response(now, sender, m),
                    Message::Heartbeat(m) => self.on_heartbeat(now, from, sender, m),
                    Message::HeartbeatAck(m) => {
                        self.on_ack(now, sender, m.seq, m.matched, m.version)
                    }
                    Message::Append(m) => self.on_append(now, from, sender, m),
                    Message::AppendAck(m) => self.on_ack(now, sender, m.seq, m.success, m.version),
                    Message::FetchSnapshot(m) => self.on_fetch_snapshot(now, from, sender, m),
                    Message::TimeoutNow(_) => self.on_timeout_now(now, sender),
                    Message::Leave(_) => self.on_leave(now, sender),
                    Message::ReadIndexRequest(m) => self.on_read_index_request(now, from, m),
                    Message::ReadIndexResponse(m) => self.on_read_index_response(now, sender, m),
                    Message::SnapshotRequest(_) | Message::Snapshot(_) => {
                        // Served and installed by the caller over TCP.
                        self.metrics.dropped_unexpected += 1;
                    }
                    _ => self.metrics.dropped_unexpected += 1,
                }
            }
        }
    }

    /// Work that follows any input: report a role change.
    fn after_input(&mut self, _now: Millis) {
        let role = self.role();
        if role != self.reported_role {
            self.reported_role = role;
            self.events.push_back(Event::RoleChanged {
                role,
                term: self.term,
            });
        }
    }

    /// Encodes and queues `message` for `to` in the current term.
    fn send(&mut self, to: SocketAddr, message: Message) {
        self.send_in_term(to, self.term, message);
    }

    fn send_in_term(&mut self, to: SocketAddr, term: u64, message: Message) {
        if to == self.cfg.addr {
            return;
        }
        let encoded = self.encode_message(term, &message);
        self.queue(to, encoded);
    }

    /// Encodes `message` as this node sends it in `term` (see [`encode`]).
    fn encode_message(&mut self, term: u64, message: &Message) -> Option<(Bytes, bool)> {
        let sender = (
            self.id.unwrap_or(NodeId::UNASSIGNED),
            self.member_generation(),
        );
        let kind = message.kind();
        with_payload!(message, p => encode(&self.cfg, &mut self.scratch, sender, term, kind, p))
    }

    fn queue(&mut self, to: SocketAddr, encoded: Option<(Bytes, bool)>) {
        match encoded {
            Some((bytes, stream)) => self.transmits.push_back(Transmit { to, bytes, stream }),
            None => self.metrics.encode_errors += 1,
        }
    }

    /// Queues a leader's append: ahead of what waits for the disk, unless
    /// the term or vote is not on disk yet (then nothing of this term may
    /// leave) or the state is being replaced by an image.
    fn queue_append(&mut self, transmit: Transmit) {
        let independent = matches!(self.role, RoleState::Leader(_))
            && !self.hard_state_dirty
            && !self.image_pending;
        if independent {
            self.early_transmits.push_back(transmit);
        } else {
            self.transmits.push_back(transmit);
        }
    }

    /// The generation this node's frames carry: its cluster's, while it is
    /// a member; none before it joined (or after it left).
    fn member_generation(&self) -> Option<u64> {
        (self.id.is_some() && !self.left && self.state.generation != 0)
            .then_some(self.state.generation)
    }

    /// The address of member `id` in the current configuration.
    fn addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        let member = self
            .config
            .get(&id)
            .or_else(|| self.state.members.get(&id))?;
        member.addr.parse().ok()
    }

    /// Queues a change for [`Core::poll_persist`] (durable cores only).
    fn persist(&mut self, record: Record) {
        if self.cfg.durable && !self.image_pending {
            self.persist.push_back(Persist::Record(record));
        }
    }

    /// Appends `entry` to the log, durably when the core is durable.
    fn log_push(&mut self, entry: Entry) {
        if self.cfg.durable {
            let version = self.log.last().version + 1;
            self.persist(Record::Entry {
                version,
                entry: entry.clone(),
            });
        }
        self.log.push(entry);
    }

    /// Drops the log from `version` on, durably when the core is durable.
    fn log_truncate_from(&mut self, version: u64) {
        self.persist(Record::Truncate { from: version });
        self.log.truncate_from(version);
        self.drop_staged_apply_from(version);
    }

    /// The member id changed, or this node left: a restart must know.
    fn identity_changed(&mut self) {
        let identity = self.identity();
        self.persist(Record::Identity(identity));
    }

    fn set_term(&mut self, term: u64) {
        debug_assert!(
            term >= self.term,
            "Raft §5.1: a node's term never decreases ({} to {term})",
            self.term
        );
        if term != self.term {
            self.term = term;
            self.voted_for = None;
            self.voter_until = None;
            self.hard_state_dirty = true;
        }
    }

    fn set_leader(&mut self, leader: Option<(NodeId, SocketAddr)>) {
        if self.leader != leader {
            let before = self.leader.map(|l| l.1);
            self.leader = leader;
            if before != leader.map(|l| l.1) {
                self.events.push_back(Event::LeaderChanged {
                    leader: leader.map(|l| l.1),
                });
            }
        }
    }

    fn done(&mut self, request: RequestId, result: Result<u64, RequestError>) {
        self.events.push_back(Event::Done { request, result });
    }

    fn not_leader(&self) -> RequestError {
        RequestError::NotLeader {
            leader: self.leader(),
        }
    }
}

/// The addresses a data directory's image names: the members of its
/// snapshot and those its log added since, for a node that is no longer a
/// member to find its cluster again.
fn remembered_addrs(snapshot: &Snapshot, entries: &[Entry]) -> BTreeSet<SocketAddr> {
    let added = entries.iter().filter_map(|e| match &e.change {
        crate::wire::Change::AddMember(m) => Some(m),
        _ => None,
    });
    snapshot
        .members
        .iter()
        .chain(added)
        .filter_map(|m| m.addr.parse().ok())
        .collect()
}

/// Encodes one frame from `sender` (its id and, as a member, its cluster
/// generation), sized first and then written once for the transport
/// it fits: a datagram if it can, else the stream (`true`). `None` when it
/// fits neither.
fn encode<P: serde::Serialize + ?Sized>(
    cfg: &CoreConfig,
    scratch: &mut BytesMut,
    (sender, generation): (NodeId, Option<u64>),
    term: u64,
    kind: Kind,
    payload: &P,
) -> Option<(Bytes, bool)> {
    let head = FrameHead {
        cluster_id: cfg.cluster_id,
        generation,
        sender,
        term,
    };
    let keys = cfg.keyring.as_ref();
    let payload_len = wire::payload_len(payload);
    let stream = head.signed_len(payload_len, keys) > cfg.datagram_bytes_max;
    let limit = if stream {
        cfg.stream_frame_bytes_max
    } else {
        cfg.datagram_bytes_max
    };
    scratch.clear();
    wire::encode_payload_signed(&head, kind, payload, payload_len, scratch, limit, keys).ok()?;
    Some((scratch.split().freeze(), stream))
}

#[cfg(test)]
mod tests;
