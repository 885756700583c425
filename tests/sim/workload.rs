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

    /// A burst on one key, drawn from `rng` (the workload's own draws stay
    /// as they were): two to four writes of it (mostly sets, sometimes a
    /// remove or an update that keeps one other key), then a read or two.
    pub fn same_key(&mut self, rng: &mut Rng) -> (Vec<Op>, Vec<Op>) {
        let key = format!("k{}", rng.below(KEYS));
        let mut writes = Vec::new();
        for _ in 0..rng.range(2, 5) {
            self.values += 1;
            let value = format!("v{}", self.values);
            writes.push(match rng.below(10) {
                0 => Op::Remove { key: key.clone() },
                1 => {
                    self.values += 1;
                    let other = format!("k{}", rng.below(KEYS));
                    let mut map = BTreeMap::from([(other, format!("v{}", self.values))]);
                    map.insert(key.clone(), value);
                    Op::Update { map }
                }
                _ => Op::Set {
                    key: key.clone(),
                    value,
                },
            });
        }
        let reads = (0..rng.range(1, 3)).map(|_| Op::Read).collect();
        (writes, reads)
    }

    fn key(&mut self) -> String {
        format!("k{}", self.rng.below(KEYS))
    }
}
