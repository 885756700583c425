//! What a node reports of itself: its [`Status`] (role, term, leader,
//! members, version) and its [`Metrics`]. Kept below the driver, which
//! publishes them, so that the driver and the [`crate::Node`] handle above
//! it share the types without the driver importing from the handle.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::core::{Core, CoreMetrics, Role};
use crate::wire::{Member, NodeId, NodeStatus};

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
