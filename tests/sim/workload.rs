//! The random client workload: sets, removes, whole-map updates and
//! linearizable reads over a small key space, sent to random nodes.

use std::collections::BTreeMap;

use super::clients::Op;
use super::rng::Rng;

/// Keys are `k0..k{KEYS-1}`.
const KEYS: u64 = 8;

/// One run's workload.
#[derive(Debug)]
pub struct Workload {
    rng: Rng,
    /// Mean time between requests.
    pub interval_ms: u64,
    values: u64,
}

impl Workload {
    /// A workload whose rate is drawn from `rng`.
    pub fn new(mut rng: Rng) -> Workload {
        let interval_ms = rng.range(10, 300);
        Workload {
            rng,
            interval_ms,
            values: 0,
        }
    }

    /// Milliseconds until the next request.
    pub fn gap_ms(&mut self) -> u64 {
        self.rng.range(1, 2 * self.interval_ms)
    }

    /// Which of `count` candidate nodes gets the next request.
    pub fn pick(&mut self, count: usize) -> usize {
        self.rng.index(count)
    }

    /// The next request.
    pub fn next_op(&mut self) -> Op {
        let roll = self.rng.below(100);
        match roll {
            0..=39 => {
                self.values += 1;
                Op::Set {
                    key: self.key(),
                    value: format!("v{}", self.values),
                }
            }
            40..=51 => Op::Remove { key: self.key() },
            52..=61 => {
                let mut map = BTreeMap::new();
                for _ in 0..self.rng.below(5) {
                    self.values += 1;
                    map.insert(self.key(), format!("v{}", self.values));
                }
                Op::Update { map }
            }
            62..=98 => Op::Read,
            _ => Op::Transfer,
        }
    }

    /// A `set` of a fresh value.
    pub fn set_op(&mut self) -> Op {
        self.values += 1;
        Op::Set {
            key: self.key(),
            value: format!("v{}", self.values),
        }
    }

    fn key(&mut self) -> String {
        format!("k{}", self.rng.below(KEYS))
    }
}
