//! Everything about a run that is drawn from its seed: the cluster size,
//! how it starts, the faults and how often the chaos strikes.

use super::clients::RetryWrites;
use super::network::{Faults, Millis};
use super::node::Params;
use super::rng::Rng;

/// How a run is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Force the cluster size (otherwise drawn from the seed).
    pub nodes: Option<usize>,
    /// Print the trace.
    pub verbose: bool,
    /// Force which nodes keep a data directory (otherwise drawn).
    pub durability: Option<Durability>,
    /// Add bursts of concurrent writes of one key through different nodes
    /// (off: the workload draws as it did before they existed, which the
    /// regression seeds need to replay what they found).
    pub same_key_writers: bool,
    /// What clients do after a write's unknown outcome.
    pub retry_writes: RetryWrites,
    /// Writes go in client sessions, as the library sends them (off: as
    /// before sessions existed, which the regression seeds need).
    pub sessions: bool,
    /// Leave out the linearizability check of the client history (a
    /// second run of a seed, for its trace hash only).
    pub skip_history_check: bool,
}

/// Which nodes keep a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// None: a restart is a new member that catches up from the others.
    Off,
    /// Every node: restarts resume, and the whole cluster may crash at once.
    All,
    /// Each node by a coin toss.
    Mixed,
}

/// Everything about a run that is drawn from its seed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Nodes at the start.
    pub nodes: usize,
    /// All start at once, each listing the others (otherwise one founds
    /// and the others join one by one).
    pub simultaneous: bool,
    /// Datagram faults of the safety phase.
    pub faults: Faults,
    /// Length of the safety phase.
    pub safety_ms: Millis,
    /// Per chaos tick (every 100 ms), per thousand: a partition starts.
    pub partition_permille: u32,
    /// ... a node pauses.
    pub pause_permille: u32,
    /// ... a node crashes (only when the cluster is healthy).
    pub crash_permille: u32,
    /// ... a new node joins.
    pub join_permille: u32,
    /// ... a member leaves (only when the cluster is healthy).
    pub leave_permille: u32,
    /// The core settings.
    pub params: Params,
    /// Which nodes keep a data directory.
    pub durability: Durability,
    /// Per chaos tick, per thousand: every node crashes at once (only when
    /// every node is durable).
    pub whole_crash_permille: u32,
    /// Per thousand crashes of a durable node: it crashes in the middle of
    /// its next write instead, tearing it.
    pub torn_permille: u32,
    /// Per thousand restarts of a durable node: its data directory was
    /// wiped (it starts with nothing, as without one).
    pub wipe_permille: u32,
    /// Per chaos tick, per thousand: the founder (slot 0) crashes and is
    /// started again with its own command within one heartbeat, with
    /// writes aimed at it.
    pub founder_restart_permille: u32,
    /// Mean time between two bursts of concurrent writes of one key (0:
    /// none).
    pub burst_interval_ms: Millis,
}

impl Plan {
    /// The plan of `seed`.
    pub fn draw(seed: u64, options: &RunOptions) -> Plan {
        let mut rng = Rng::new(seed ^ 0x0050_4C41_4E00);
        let nodes = options.nodes.unwrap_or_else(|| {
            if seed % 100 == 99 {
                25
            } else {
                [1, 2, 3, 3, 3, 4, 5, 5, 5, 6, 7][rng.index(11)]
            }
        });
        let calm = rng.chance(100);
        let faults = if calm {
            Faults::none()
        } else {
            Faults::random(&mut rng)
        };
        let chaos = |rng: &mut Rng, max: u64| if calm { 0 } else { rng.range(0, max) as u32 };
        let mut params = Params::lan(nodes.min(3));
        params.log_tail_entries_max = [8, 64, 1024][rng.index(3)];
        // Half the runs apply every change of more than a pair or two in
        // slices (the sim's maps are small): drawn from the seed alone, so
        // the draws after it, and the regression seeds, stay as they were.
        if options.sessions && seed.is_multiple_of(2) {
            params.apply_slice_pairs_max = 1 + (seed / 2 % 3) as usize;
        }
        let safety_ms = if nodes > 7 {
            rng.range(5_000, 10_000)
        } else {
            rng.range(10_000, 30_000)
        };
        Plan {
            nodes,
            simultaneous: rng.chance(500),
            faults,
            safety_ms,
            partition_permille: chaos(&mut rng, 40),
            pause_permille: chaos(&mut rng, 30),
            crash_permille: chaos(&mut rng, 30),
            join_permille: chaos(&mut rng, 10),
            leave_permille: chaos(&mut rng, 10),
            params,
            durability: Durability::Off,
            whole_crash_permille: 0,
            torn_permille: 0,
            wipe_permille: 0,
            founder_restart_permille: 0,
            burst_interval_ms: 0,
        }
        .with_durability(seed, calm, options)
        .with_restarts(seed, calm)
        .with_bursts(seed, options)
    }

    /// Bursts are drawn from a stream of their own, like durability.
    fn with_bursts(mut self, seed: u64, options: &RunOptions) -> Plan {
        let mut rng = Rng::new(seed ^ 0x0042_5552_5354);
        if options.same_key_writers {
            self.burst_interval_ms = rng.range(200, 2_000);
        }
        self
    }

    /// Restart faults are drawn from a stream of their own, like
    /// durability.
    fn with_restarts(mut self, seed: u64, calm: bool) -> Plan {
        let mut rng = Rng::new(seed ^ 0x0052_4553_5400);
        if !calm {
            self.founder_restart_permille = rng.range(0, 20) as u32;
            if self.durability != Durability::Off {
                self.wipe_permille = rng.range(0, 300) as u32;
            }
        }
        self
    }

    /// Durability is drawn from a stream of its own, so that adding it left
    /// every other draw of a seed as it was.
    fn with_durability(mut self, seed: u64, calm: bool, options: &RunOptions) -> Plan {
        let mut rng = Rng::new(seed ^ 0x0044_4953_4B00);
        let drawn = [Durability::Off, Durability::All, Durability::Mixed][rng.index(3)];
        self.durability = options.durability.unwrap_or(drawn);
        if self.durability != Durability::Off && !calm {
            self.torn_permille = rng.range(0, 1000) as u32;
            if self.durability == Durability::All {
                self.whole_crash_permille = rng.range(0, 8) as u32;
                // Crashes cost nothing but time when nothing is lost: more.
                self.crash_permille = self.crash_permille.max(rng.range(0, 40) as u32);
            }
        }
        self
    }
}
