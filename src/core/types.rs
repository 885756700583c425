//! What goes in and out of the core: commands, events, transmits, roles,
//! and the errors a request can end with.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use crate::wire::{Change, Entry, LogId, NodeId, Snapshot};

/// Milliseconds on the caller's clock (any fixed origin). The core never
/// reads a clock: every handler takes `now`.
pub type Millis = u64;

/// Chosen by the caller to match a [`Event::Done`] to its command.
pub type RequestId = u64;

/// A node's role, as the original design names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one). Also a node that has not joined.
    Follower,
    /// Has granted its vote in an election of the current term that has no
    /// known winner yet. Returns to follower when it hears the winner or its
    /// election timeout passes, so it never stays a voter.
    Voter,
    /// Stands for election in the current term.
    Candidate,
    /// Leads the current term.
    Leader,
}

impl Role {
    /// The original design's lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Voter => "voter",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client's request to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set one key.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Remove one key.
    Remove {
        /// The key.
        key: String,
    },
    /// Make the map exactly `map` (replicated as the difference).
    Update {
        /// The new map. A map derived from [`super::Core::map`] shares its
        /// structure, and is compared in time proportional to the change.
        map: super::Map,
    },
    /// Open client session `id` (leader only), for the tags of later
    /// writes (see
    /// [`Core::handle_session_write`](super::Core::handle_session_write));
    /// done with the version it committed at.
    OpenSession {
        /// Chosen at random by the client.
        id: u64,
    },
    /// Confirm with a quorum that this node's state is current; done when
    /// the node has applied at least the confirmed version.
    ReadLinearizable,
    /// Leave the cluster (a leader hands over leadership first).
    Leave,
    /// Hand leadership to the most up-to-date voter (leader only).
    TransferLeadership,
}

/// Why a request failed. Each variant says whether the state may have
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This node is not the leader; nothing changed. `leader` is where to
    /// retry, when known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's address, if this node knows it.
        leader: Option<SocketAddr>,
    },
    /// Leadership was lost after the change entered the log: it may still
    /// commit, or may be discarded. Retrying a set or update is safe.
    #[error("leadership lost before the change committed: outcome unknown")]
    Uncertain,
    /// A limit was reached (pending requests or uncommitted changes);
    /// nothing changed.
    #[error("busy: {limit} reached")]
    Busy {
        /// Which limit.
        limit: &'static str,
    },
    /// No answer in time; for a write the outcome is unknown.
    #[error("timed out")]
    Timeout,
    /// This node is not a member of a cluster; nothing changed.
    #[error("not a member of a cluster")]
    NotMember,
    /// The change does not fit in the largest frame; nothing changed.
    #[error("change too large: {bytes} bytes, limit {limit}")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The write would take the map above `state_bytes_max`; it was
    /// refused before it entered the log, so nothing changed.
    #[error("state full: the map would take {bytes} bytes, above state_bytes_max ({limit})")]
    StateFull {
        /// The map's size (as the log will leave it) with the write.
        bytes: usize,
        /// The limit, `state_bytes_max`.
        limit: usize,
    },
    /// No other voter to hand leadership to; nothing changed.
    #[error("no other voter to hand leadership to")]
    NoTransferTarget,
    /// Another membership change or transfer is in progress; nothing changed.
    #[error("another membership change is in progress")]
    ChangeInProgress,
    /// The write's session is closed (the table was full) or its request
    /// forgotten (below the session's floor): nothing of it applies now,
    /// but an earlier attempt may have. A new session is needed.
    #[error("session expired: the outcome of this write is no longer known")]
    SessionExpired,
}

/// Something the caller may want to act on or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The role or term changed.
    RoleChanged {
        /// New role.
        role: Role,
        /// Current term.
        term: u64,
    },
    /// The known leader changed.
    LeaderChanged {
        /// Its address, or `None` while unknown.
        leader: Option<SocketAddr>,
    },
    /// This node became a member with this id.
    Joined {
        /// Its member id.
        id: NodeId,
    },
    /// A committed change was applied to the state.
    Applied {
        /// Its version.
        version: u64,
        /// Its term.
        term: u64,
        /// What it changed.
        change: SharedChange,
    },
    /// A snapshot replaced the state.
    SnapshotInstalled {
        /// The last change it includes.
        last: LogId,
    },
    /// The caller should fetch a snapshot from `from` (over TCP) and give it
    /// to [`crate::core::Core::handle_snapshot`].
    FetchSnapshot {
        /// Who to fetch from.
        from: SocketAddr,
    },
    /// A command finished. For writes and leave the value is the committed
    /// version; for reads the confirmed version (the state is at least
    /// there); for a transfer the term it happened in.
    Done {
        /// The request.
        request: RequestId,
        /// How it ended.
        result: Result<u64, RequestError>,
    },
    /// This node is no longer a member (it left or was removed).
    Left,
}

/// A committed change as [`Event::Applied`] hands it out: shared with the
/// log, so that reporting a large change copies nothing. Derefs to the
/// [`Change`].
#[derive(Clone)]
pub struct SharedChange(Arc<Entry>);

impl PartialEq for SharedChange {
    fn eq(&self, other: &SharedChange) -> bool {
        self.0.change == other.0.change
    }
}

impl Eq for SharedChange {}

impl std::hash::Hash for SharedChange {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.change.hash(state);
    }
}

impl SharedChange {
    pub(crate) fn new(entry: Arc<Entry>) -> SharedChange {
        SharedChange(entry)
    }
}

impl std::ops::Deref for SharedChange {
    type Target = Change;

    fn deref(&self) -> &Change {
        &self.0.change
    }
}

impl std::fmt::Debug for SharedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.change.fmt(f)
    }
}

/// A frame to send. `bytes` is a whole encoded frame; over TCP (`stream`)
/// the caller adds the length prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer.
    pub to: SocketAddr,
    /// The encoded frame.
    pub bytes: Bytes,
    /// Send over the stream transport (too large for a datagram).
    pub stream: bool,
}

/// Term and vote: what must be on disk before any message that depends on
/// them leaves the node, when a data directory is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// The member voted for in `term`.
    pub voted_for: Option<NodeId>,
}

/// How stale a local read may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// The node's term.
    pub term: u64,
    /// The committed version the state is at.
    pub version: u64,
    /// Milliseconds since the last heartbeat from a leader (0 on a leader;
    /// `None` if never heard).
    pub since_heartbeat_ms: Option<Millis>,
}

/// Who this node is in its cluster. Kept in a data directory so that a
/// restart resumes as the same member, with the votes it cast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Its member id.
    pub id: NodeId,
    /// The incarnation it joined with.
    pub incarnation: u64,
    /// The address it is known by (a data directory belongs to one).
    pub addr: String,
    /// The generation of the cluster it is a member of: a restart resumes
    /// in that history and no other.
    pub generation: u64,
}

/// One change to what a durable node keeps, in the order the core made
/// them: a record of the data directory's log (`docs/STORAGE.md`).
/// Variants are only ever added at the end (postcard numbers them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Term or vote changed.
    HardState(HardState),
    /// This node became a member, or stopped being one (`None`).
    Identity(Option<Identity>),
    /// `entry` is now at `version`; any entry held at `version` or after
    /// is replaced (a follower's conflicting suffix, Raft §5.3).
    Entry {
        /// Its version.
        version: u64,
        /// The change and its term.
        entry: Entry,
    },
    /// Entries at `from` and after are gone.
    Truncate {
        /// The first version dropped.
        from: u64,
    },
}

/// What a durable node must write before it sends anything that depends
/// on it: handed out by [`crate::core::Core::poll_persist`] in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Append one record to the log.
    Record(Record),
    /// The state was replaced by a snapshot: replace everything durable by
    /// this image.
    Image(Box<DurableImage>),
}

/// Everything a durable node keeps, as one value: what a data directory
/// holds after compaction, and what [`crate::core::Core::restore`] starts
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DurableImage {
    /// The member this node is (`None`: not a member; nothing else counts).
    pub identity: Option<Identity>,
    /// Term and vote.
    pub hard_state: HardState,
    /// The committed state at some version.
    pub snapshot: Snapshot,
    /// The entries after the snapshot, committed or not, in order.
    pub entries: Vec<Entry>,
}
