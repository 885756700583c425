//! A deterministic simulator for the consensus core: many cores on a
//! virtual clock, a seeded network that loses, duplicates, delays,
//! reorders, corrupts and partitions, crashes, restarts and pauses, and
//! invariant checks after every step. One `u64` seed reproduces a run.
#![allow(dead_code)]

pub mod clients;
pub mod cluster;
pub mod delivery;
pub mod disk;
pub mod invariants;
#[path = "../support/linearizability.rs"]
pub mod linearizability;
pub mod liveness;
pub mod model;
pub mod network;
pub mod node;
pub mod plan;
pub mod report;
pub mod rng;
pub mod run;
pub mod script;
pub mod trace;
pub mod workload;

/// A number from the environment, if set.
pub fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}
