//! One address of the simulated cluster and the process there, and the
//! settings its cores get.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use simple_raft::core::{Core, CoreConfig, Millis, RequestId};
use simple_raft::wire::Snapshot;

/// Node `i` listens on `127.0.0.1:(BASE_PORT + i)`.
pub const BASE_PORT: u16 = 7001;

/// The address of slot `i`.
pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, BASE_PORT + i as u16))
}

/// The settings every core of a run gets.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub heartbeat_ms: u64,
    pub leader_timeout_ms: u64,
    pub election_timeout_ms: u64,
    pub member_silence_ms: Option<u64>,
    pub members_min: usize,
    pub log_tail_entries_max: usize,
    pub apply_slice_pairs_max: usize,
}

impl Params {
    /// The simulator's LAN settings.
    pub fn lan(members_min: usize) -> Params {
        Params {
            heartbeat_ms: 50,
            leader_timeout_ms: 300,
            election_timeout_ms: 300,
            member_silence_ms: Some(5_000),
            members_min,
            log_tail_entries_max: 1024,
            apply_slice_pairs_max: simple_raft::core::APPLY_SLICE_PAIRS_MAX_DEFAULT,
        }
    }

    /// The core configuration of a node.
    pub fn config(&self, addr: SocketAddr, seeds: Vec<SocketAddr>, incarnation: u64) -> CoreConfig {
        let mut c = CoreConfig::new(addr, seeds, incarnation);
        c.heartbeat_ms = self.heartbeat_ms;
        c.leader_timeout_ms = self.leader_timeout_ms;
        c.election_timeout_ms = self.election_timeout_ms;
        c.member_silence_ms = self.member_silence_ms;
        c.members_min = self.members_min;
        c.log_tail_entries_max = self.log_tail_entries_max;
        c.apply_slice_pairs_max = self.apply_slice_pairs_max;
        c
    }
}

/// Where a slot's process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Never started.
    Idle,
    /// Running (possibly paused).
    Up,
    /// Crashed; its data is gone unless it is durable.
    Crashed,
    /// Stopped after leaving or being removed.
    Left,
}

/// Input held for a paused node (a full socket buffer drops the rest).
#[derive(Debug)]
pub(super) enum Held {
    Datagram {
        from: usize,
        bytes: Bytes,
        corrupt: bool,
    },
    Stream {
        from: usize,
        bytes: Bytes,
    },
    Snapshot {
        snapshot: Box<Snapshot>,
    },
    Command {
        id: RequestId,
    },
}

/// One address of the cluster and the process there.
pub struct Node {
    /// Its address.
    pub addr: SocketAddr,
    /// The running core, when up.
    pub core: Option<Core>,
    /// The incarnation of the current (or last) process.
    pub incarnation: u64,
    /// Where the process is.
    pub status: Status,
    /// Paused: gets no handler calls; input waits in `inbox`.
    pub paused: bool,
    /// When the current pause ends (a stale resume from an earlier pause
    /// does not end it).
    pub paused_until: Millis,
    /// Asked to leave (a voluntary departure).
    pub leaving: bool,
    /// The seeds the current process was started with.
    pub seeds: Vec<SocketAddr>,
    /// The seeds of its first start: its command line, which a restart
    /// uses again (the founder's is empty).
    pub original_seeds: Option<Vec<SocketAddr>>,
    /// This machine's clock reads the simulator's time plus this: the
    /// core must never compare the clocks of different nodes.
    pub clock_offset_ms: Millis,
    pub(super) inbox: VecDeque<Held>,
    /// Keeps a data directory: restarts resume from `disk`.
    pub durable: bool,
    /// The data directory's files (durable nodes).
    pub disk: super::disk::Disk,
    /// Crash in the middle of the next write to `disk`.
    pub crash_on_write: bool,
    /// Timer calls at one instant (a timer that never advances is a bug).
    pub(super) spins: (Millis, u32),
}

/// Input kept for a paused node.
pub(super) const INBOX_MAX: usize = 256;
