//! The core's settings, with the limits of everything it keeps.

use std::net::SocketAddr;

use crate::wire::{Keyring, DATAGRAM_BYTES_MAX_DEFAULT, STREAM_FRAME_BYTES_MAX_DEFAULT};

/// Heartbeats a node with no one to contact listens for, beyond the
/// others' leader timeout, before it founds (see
/// [`CoreConfig::found_listen_ms`]).
pub const FOUND_LISTEN_HEARTBEATS: u64 = 10;

/// Default of [`CoreConfig::log_tail_bytes_max`]: 64 MiB, the size of
/// one largest stream frame by default.
pub const LOG_TAIL_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Default of [`CoreConfig::state_bytes_max`]: 1 GiB. A node holds the
/// map, and while it serves a snapshot one encoded copy of it, in memory.
pub const STATE_BYTES_MAX_DEFAULT: usize = 1024 * 1024 * 1024;

/// Default of [`CoreConfig::apply_slice_pairs_max`]: a few milliseconds
/// of map inserts in an optimised build.
pub const APPLY_SLICE_PAIRS_MAX_DEFAULT: usize = 2048;

/// Settings of one node's protocol core. Times are milliseconds on the
/// caller's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Where this node listens (UDP and TCP).
    pub addr: SocketAddr,
    /// Nodes to contact to join. Empty: start a new cluster.
    pub seeds: Vec<SocketAddr>,
    /// Which start of the process this is; a restart without a data
    /// directory must use a higher one (the time of day in ms will do).
    pub incarnation: u64,
    /// Keeps two clusters on one network apart.
    pub cluster_id: u32,
    /// The leader's heartbeat (the original's update interval).
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in
    /// `[leader_timeout_ms, 1.5 * leader_timeout_ms)` stands for election.
    pub leader_timeout_ms: u64,
    /// An election round lasts a random time in
    /// `[election_timeout_ms, 1.5 * election_timeout_ms)`.
    pub election_timeout_ms: u64,
    /// Largest UDP frame sent or accepted.
    pub datagram_bytes_max: usize,
    /// Largest TCP frame sent or accepted.
    pub stream_frame_bytes_max: usize,
    /// Committed changes kept for followers that fall behind; one further
    /// behind fetches a snapshot.
    pub log_tail_entries_max: usize,
    /// Bytes (encoded) of the committed changes kept for followers that
    /// fall behind, whatever their count: a few large changes must not
    /// keep gigabytes in memory. A follower behind the oldest one kept
    /// fetches a snapshot, as beyond `log_tail_entries_max`.
    pub log_tail_bytes_max: usize,
    /// Largest size of the map (each key and value with its length, as a
    /// snapshot encodes them): a write that would take the map above it is
    /// refused before it enters the log, and a snapshot fetch accepts no
    /// more than this plus one stream frame (for the members and counters).
    /// Give every node the same value: a node with a lower one cannot take
    /// the snapshot of a larger map.
    pub state_bytes_max: usize,
    /// Changes a leader holds that are not committed yet; more writes get
    /// `Busy`.
    pub uncommitted_entries_max: usize,
    /// Requests (writes, reads) waiting for an outcome.
    pub pending_requests_max: usize,
    /// Client sessions the cluster keeps open (see `sessions.rs`): opening
    /// one more closes the least recently used. A leader puts its own
    /// setting into each session it opens, so nodes set differently still
    /// agree on which session closes.
    pub sessions_max: u32,
    /// Longest key accepted in a write.
    pub key_bytes_max: usize,
    /// Longest value accepted in a write.
    pub value_bytes_max: usize,
    /// Pairs (keys set or removed) of a committed change applied in one
    /// call: a larger change is applied a slice at a time, one slice per
    /// [`Core::handle_timeout`](super::Core::handle_timeout) (due at once
    /// while one is in progress), so heartbeats and votes are handled
    /// between slices instead of waiting behind the whole change.
    pub apply_slice_pairs_max: usize,
    /// The leader removes members silent this long; `None` never does.
    pub member_silence_ms: Option<u64>,
    /// Never remove silent members below this many voters.
    pub members_min: usize,
    /// Addresses remembered while joining.
    pub seeds_max: usize,
    /// How often a joining node introduces itself again.
    pub introduce_interval_ms: u64,
    /// Hand out every change to term, vote, identity and log through
    /// `poll_persist`, and hold transmits and events until they are taken
    /// (set when a data directory is used).
    pub durable: bool,
    /// Cluster keys: frames are signed with the primary, and only frames
    /// with a valid tag under one of the keys are accepted. `None`: frames
    /// are sent without a tag, and tagged frames are refused.
    pub keyring: Option<Keyring>,
}

impl CoreConfig {
    /// Defaults for a LAN: 50 ms heartbeats, 500 ms leader and election
    /// timeouts.
    pub fn new(addr: SocketAddr, seeds: Vec<SocketAddr>, incarnation: u64) -> CoreConfig {
        CoreConfig {
            addr,
            seeds,
            incarnation,
            cluster_id: 0,
            heartbeat_ms: 50,
            leader_timeout_ms: 500,
            election_timeout_ms: 500,
            datagram_bytes_max: DATAGRAM_BYTES_MAX_DEFAULT,
            stream_frame_bytes_max: STREAM_FRAME_BYTES_MAX_DEFAULT,
            log_tail_entries_max: 16_384,
            log_tail_bytes_max: LOG_TAIL_BYTES_MAX_DEFAULT,
            state_bytes_max: STATE_BYTES_MAX_DEFAULT,
            uncommitted_entries_max: 256,
            pending_requests_max: 1024,
            sessions_max: 4096,
            key_bytes_max: 4 * 1024,
            value_bytes_max: 1024 * 1024,
            apply_slice_pairs_max: APPLY_SLICE_PAIRS_MAX_DEFAULT,
            member_silence_ms: Some(30_000),
            members_min: 3,
            seeds_max: 64,
            introduce_interval_ms: 200,
            durable: false,
            keyring: None,
        }
    }

    /// How long a node with no one to contact listens before it founds a
    /// cluster: long enough that the members of a cluster that still lists
    /// this address are heard from. A live leader heartbeats every member
    /// each `heartbeat_ms`. If this address was the leader, the others
    /// notice within `1.5 * leader_timeout_ms` of its last heartbeat, and
    /// from then on each of them tells every member it is there once a
    /// heartbeat until a leader is elected (the leaderless probe): ten of
    /// those heartbeats are ten chances per member, so that a lossy
    /// network does not make the founder deaf.
    pub fn found_listen_ms(&self) -> u64 {
        let leader = self.leader_timeout_ms.saturating_mul(3) / 2;
        leader.saturating_add(self.heartbeat_ms.saturating_mul(FOUND_LISTEN_HEARTBEATS))
    }

    /// The most bytes of an encoded snapshot a fetch accepts: the map's
    /// limit, and one stream frame for the rest (members, counters).
    pub fn snapshot_bytes_max(&self) -> usize {
        self.state_bytes_max
            .saturating_add(self.stream_frame_bytes_max)
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &'static str| Err(ConfigError { what });
        if self.heartbeat_ms == 0 {
            return fail("heartbeat_ms must be at least 1");
        }
        if self.leader_timeout_ms < 2 * self.heartbeat_ms {
            return fail("leader_timeout_ms must be at least twice heartbeat_ms");
        }
        if self.election_timeout_ms < self.heartbeat_ms {
            return fail("election_timeout_ms must be at least heartbeat_ms");
        }
        if self.datagram_bytes_max < 256 || self.datagram_bytes_max > 65_507 {
            return fail("datagram_bytes_max must be within 256..=65507");
        }
        if self.stream_frame_bytes_max < self.datagram_bytes_max {
            return fail("stream_frame_bytes_max must be at least datagram_bytes_max");
        }
        if self.log_tail_entries_max == 0
            || self.uncommitted_entries_max == 0
            || self.pending_requests_max == 0
            || self.seeds_max == 0
        {
            return fail("log, request and seed limits must be at least 1");
        }
        if self.sessions_max == 0 || self.sessions_max > crate::wire::SESSIONS_MAX_LIMIT {
            return fail("sessions_max must be within 1..=65536");
        }
        if self.apply_slice_pairs_max == 0 {
            return fail("apply_slice_pairs_max must be at least 1");
        }
        if self.key_bytes_max == 0 || self.value_bytes_max == 0 {
            return fail("key_bytes_max and value_bytes_max must be at least 1");
        }
        if self.log_tail_bytes_max == 0 {
            return fail("log_tail_bytes_max must be at least 1");
        }
        // One pair of the longest key and value (with their lengths).
        let pair_max = self
            .key_bytes_max
            .saturating_add(self.value_bytes_max)
            .saturating_add(20);
        if self.state_bytes_max < pair_max {
            return fail("state_bytes_max must hold at least one longest key and value");
        }
        if self.introduce_interval_ms == 0 {
            return fail("introduce_interval_ms must be at least 1");
        }
        if let Some(silence) = self.member_silence_ms {
            if silence < 2 * self.leader_timeout_ms {
                return fail("member_silence_ms must be at least twice leader_timeout_ms");
            }
        }
        if self.members_min == 0 {
            return fail("members_min must be at least 1");
        }
        Ok(())
    }
}

/// Settings that cannot work; says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {what}")]
pub struct ConfigError {
    /// What is wrong.
    pub what: &'static str,
}
