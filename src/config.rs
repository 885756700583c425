//! The settings of a node, as a service embedding the library gives them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::{ConfigError, CoreConfig};
use crate::wire::Keyring;

/// Settings of one node. [`Config::new`] gives LAN defaults; every size,
/// queue and time has a limit, with its unit in its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen, UDP and TCP on the same port. Port 0 picks a free
    /// one (see [`crate::Node::addr`]).
    pub listen: SocketAddr,
    /// The address other nodes and clients reach this node at, when it is
    /// not `listen` (behind a NAT, a container port mapping or a relay).
    /// It is the node's name in the member list.
    pub advertise: Option<SocketAddr>,
    /// Nodes to contact to join; empty starts a new cluster.
    pub join: Vec<SocketAddr>,
    /// The leader's heartbeat (the original's update interval).
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time between this and
    /// one and a half times this holds an election.
    pub leader_timeout_ms: u64,
    /// An election round lasts a random time between this and one and a half times this.
    pub election_timeout_ms: u64,
    /// Keeps clusters on one network apart; frames of other ids are dropped.
    pub cluster_id: u32,
    /// Largest UDP datagram sent or accepted.
    pub datagram_bytes_max: usize,
    /// Largest TCP frame sent or accepted (a snapshot larger than one
    /// travels in chunks of at most 1 MiB).
    pub stream_frame_bytes_max: usize,
    /// Committed changes kept for followers a little behind.
    pub log_tail_entries_max: usize,
    /// Bytes of the committed changes kept for followers a little behind;
    /// one behind the oldest kept fetches a snapshot.
    pub log_tail_bytes_max: usize,
    /// Largest size of the map (keys and values with their lengths): a
    /// write that would take it above is refused, changing nothing
    /// ([`crate::Error::TooLarge`]). The same on every node: a node with a
    /// lower one cannot take the snapshot of a larger map.
    pub state_bytes_max: usize,
    /// Uncommitted changes a leader holds before writes get `Busy`.
    pub uncommitted_entries_max: usize,
    /// Writes and reads waiting for an outcome, per node.
    pub pending_requests_max: usize,
    /// Client sessions the cluster keeps open (the leader's setting is the
    /// one that counts); opening one more closes the least recently used,
    /// whose next write gets [`crate::Error::SessionExpired`].
    pub sessions_max: u32,
    /// Longest key accepted in a write.
    pub key_bytes_max: usize,
    /// Longest value accepted in a write.
    pub value_bytes_max: usize,
    /// Remove members silent this long (`None`: never).
    pub member_silence_ms: Option<u64>,
    /// Never remove silent members below this many voters.
    pub members_min: usize,
    /// Concurrent TCP connections accepted.
    pub tcp_connections_max: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_ms: u64,
    /// Until a new TCP connection has completed its first frame, the frame's
    /// length prefix and every 64 KiB of its body must arrive within this
    /// (never longer than `tcp_idle_ms`), or it is closed: idle and stalled
    /// connections cannot hold the slots for long. Until then it is also the
    /// first to give its slot to a newer connection when all are taken.
    pub tcp_first_frame_ms: u64,
    /// Bytes of frame bodies that all TCP connections together may be
    /// reading at once; a connection that finds them spent is closed. At
    /// least `stream_frame_bytes_max`, so that one largest frame fits.
    pub tcp_read_bytes_max: usize,
    /// How long a write or read may take, forwarding and retries included.
    pub request_timeout_ms: u64,
    /// Commands queued from handles to the node's task.
    pub command_queue_max: usize,
    /// Cluster keys (`None`: no key). Every UDP and TCP frame is signed
    /// with the primary key, and frames without a valid tag under one of the
    /// keys are dropped and counted before any of their fields is trusted.
    /// Clients need the keys too ([`crate::Client::with_keyring`]). Changed
    /// on a running node with [`crate::Node::set_cluster_keys`]; see
    /// `docs/WIRE.md` for a rotation without downtime.
    pub cluster_keys: Option<Keyring>,
    /// Where to keep term, vote, log and state across restarts (created if
    /// missing): the node then comes back as the same member, and nothing
    /// it acknowledged is lost even if every node crashes at once. Every
    /// vote, ack and commit waits for an fsync. Without one, a restarted
    /// node rejoins as a new member and catches up from the others. Needs
    /// a fixed address (a port, or `advertise`).
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults for a LAN: 50 ms heartbeats, 500 ms timeouts.
    pub fn new(listen: SocketAddr, join: Vec<SocketAddr>) -> Config {
        let core = CoreConfig::new(listen, join.clone(), 0);
        Config {
            listen,
            advertise: None,
            join,
            heartbeat_ms: core.heartbeat_ms,
            leader_timeout_ms: core.leader_timeout_ms,
            election_timeout_ms: core.election_timeout_ms,
            cluster_id: core.cluster_id,
            datagram_bytes_max: core.datagram_bytes_max,
            stream_frame_bytes_max: core.stream_frame_bytes_max,
            log_tail_entries_max: core.log_tail_entries_max,
            log_tail_bytes_max: core.log_tail_bytes_max,
            state_bytes_max: core.state_bytes_max,
            uncommitted_entries_max: core.uncommitted_entries_max,
            pending_requests_max: core.pending_requests_max,
            sessions_max: core.sessions_max,
            key_bytes_max: core.key_bytes_max,
            value_bytes_max: core.value_bytes_max,
            member_silence_ms: core.member_silence_ms,
            members_min: core.members_min,
            tcp_connections_max: 64,
            tcp_idle_ms: 10_000,
            tcp_first_frame_ms: 2_000,
            tcp_read_bytes_max: 4 * core.stream_frame_bytes_max,
            request_timeout_ms: 5_000,
            command_queue_max: 1024,
            cluster_keys: None,
            data_dir: None,
        }
    }

    /// The original design's parameters: update (heartbeat) interval,
    /// leader timeout and election timeout.
    pub fn with_timeouts(
        mut self,
        update_interval: Duration,
        leader_timeout: Duration,
        election_timeout: Duration,
    ) -> Config {
        self.heartbeat_ms = update_interval.as_millis() as u64;
        self.leader_timeout_ms = leader_timeout.as_millis() as u64;
        self.election_timeout_ms = election_timeout.as_millis() as u64;
        self
    }

    /// Checks that the settings can work, naming the first that cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core(self.advertise.unwrap_or(self.listen), 0)
            .validate()?;
        let fail = |what: &'static str| Err(ConfigError { what });
        if self
            .advertise
            .is_some_and(|a| a.port() == 0 || a.ip().is_unspecified())
        {
            return fail("advertise: needs a port and a reachable address (not 0.0.0.0)");
        }
        if self.data_dir.is_some() && self.advertise.is_none() && self.listen.port() == 0 {
            return fail("data_dir: needs a fixed port (a data directory belongs to one address)");
        }
        if self.tcp_connections_max == 0 || self.command_queue_max == 0 {
            return fail("tcp_connections_max and command_queue_max must be at least 1");
        }
        if self.tcp_idle_ms == 0 || self.request_timeout_ms == 0 || self.tcp_first_frame_ms == 0 {
            return fail(
                "tcp_idle_ms, tcp_first_frame_ms and request_timeout_ms must be at least 1",
            );
        }
        // A log record holds one entry, at most a stream frame, plus a
        // little: it must stay within what the log format can read back.
        const RECORD_OVERHEAD_BYTES: usize = 1024;
        if self.data_dir.is_some()
            && self
                .stream_frame_bytes_max
                .saturating_add(RECORD_OVERHEAD_BYTES)
                > crate::storage::format::RECORD_BYTES_MAX
        {
            return fail("stream_frame_bytes_max: above what a data directory's log records hold");
        }
        if self.tcp_read_bytes_max < self.stream_frame_bytes_max {
            return fail("tcp_read_bytes_max must be at least stream_frame_bytes_max");
        }
        Ok(())
    }

    /// The most bytes of an encoded snapshot this node accepts from a peer:
    /// `state_bytes_max`, and one stream frame for the members and
    /// counters.
    pub fn snapshot_bytes_max(&self) -> usize {
        self.core(self.listen, 0).snapshot_bytes_max()
    }

    /// The core's settings for a node bound to `addr`.
    pub(crate) fn core(&self, addr: SocketAddr, incarnation: u64) -> CoreConfig {
        let mut core = CoreConfig::new(addr, self.join.clone(), incarnation);
        core.heartbeat_ms = self.heartbeat_ms;
        core.leader_timeout_ms = self.leader_timeout_ms;
        core.election_timeout_ms = self.election_timeout_ms;
        core.cluster_id = self.cluster_id;
        core.datagram_bytes_max = self.datagram_bytes_max;
        core.stream_frame_bytes_max = self.stream_frame_bytes_max;
        core.log_tail_entries_max = self.log_tail_entries_max;
        core.log_tail_bytes_max = self.log_tail_bytes_max;
        core.state_bytes_max = self.state_bytes_max;
        core.uncommitted_entries_max = self.uncommitted_entries_max;
        core.pending_requests_max = self.pending_requests_max;
        core.sessions_max = self.sessions_max;
        core.key_bytes_max = self.key_bytes_max;
        core.value_bytes_max = self.value_bytes_max;
        core.member_silence_ms = self.member_silence_ms;
        core.members_min = self.members_min;
        core.introduce_interval_ms = (self.leader_timeout_ms / 2).max(self.heartbeat_ms);
        core.keyring = self.cluster_keys.clone();
        core
    }
}
