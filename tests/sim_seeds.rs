//! Runs the deterministic simulator over many seeds. Each seed runs twice
//! and must produce the same trace hash.
//!
//! - `cargo test --test sim_seeds`: the default seeds.
//! - `SIM_SEEDS=N`: N seeds (from `SIM_SEED_BASE`, default 0).
//! - `SIM_SEED=S`: replay one seed, printing its trace.
//! - `SIM_NODES=K`: force the cluster size.
//! - `SIM_DURABILITY=off|all|mixed`: force which nodes keep a data
//!   directory (otherwise drawn per seed: a third each).

#[path = "sim/mod.rs"]
mod sim;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use sim::env_u64;
use sim::plan::Durability;
use sim::run::{run_seed, RunOptions};

/// Seeds the default run takes.
const DEFAULT_SEEDS: u64 = 500;

/// Seeds that once failed, kept so the bug stays fixed. When a bug a seed
/// shows is fixed, add the seed here with the finding it showed (see
/// `sim/FINDINGS.md`); a change to the simulator's draws may make an old
/// seed draw a different run, so keep the list short and recent.
const REGRESSION_SEEDS: &[u64] = &[
    1, 2, 40, // 1: a removed member never learned it was removed
    19, 41, // 2: a leader with a pending leave asked for a timer in the past
    26, // 3: a member added to a lone leader was removed as silent at once
    92, 174,   // 4: a lost removal notice left the node silent forever
    294,   // 5: a welcomed node removed before it got the state was stuck
    16347, // 6: the most up-to-date node could not stand (membership on append)
    20904, // 6: the same with a promotion overwritten by a later leader
    687,
    858, // 7: with membership counted from commits, a leader that crashed
         // right after committing a promotion took the news with it
];

/// Seeds that failed once restarts used the original command line (the
/// founder's names no one), replayed with the durability their seed draws
/// (finding 8 of `sim/FINDINGS.md`).
const RESTART_SEEDS: &[u64] = &[
    20,  // 8: a majority of wiped data directories (a simulator rule)
    86,  // 8: the founder restarted between the removal and the re-adding
    302, // 8: the founder cut off while it listened (a simulator rule)
    358, // 8: one pre-vote per round, all lost: the founder founded again
    38,  // 9: a member behind the change that added the leader dropped its
         // heartbeats (the leader's address taken only from the member list)
];

fn options() -> RunOptions {
    let durability = std::env::var("SIM_DURABILITY")
        .ok()
        .map(|d| match d.trim() {
            "off" => Durability::Off,
            "all" => Durability::All,
            "mixed" => Durability::Mixed,
            other => panic!("SIM_DURABILITY={other:?}: expected off, all or mixed"),
        });
    RunOptions {
        nodes: env_u64("SIM_NODES").map(|n| n as usize),
        verbose: false,
        durability,
    }
}

fn replay_hint(seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test --release --test sim_seeds -- --nocapture")
}

/// Runs `seed` twice; the trace hashes must agree.
fn check_seed(seed: u64, options: &RunOptions) {
    let first = run_seed(seed, options);
    let quiet = RunOptions {
        verbose: false,
        ..*options
    };
    let second = run_seed(seed, &quiet);
    assert_eq!(
        first,
        second,
        "seed {seed} is not reproducible: trace hashes {first:#x} and {second:#x} (replay: {})",
        replay_hint(seed)
    );
}

/// Runs `seeds` on every core; returns the ones that failed.
fn run_many(seeds: Vec<u64>, options: RunOptions) -> Vec<u64> {
    let next = AtomicU64::new(0);
    let failed = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(k) else { break };
                if failed.lock().unwrap().len() >= 10 {
                    break;
                }
                let ran = catch_unwind(AssertUnwindSafe(|| check_seed(seed, &options)));
                if ran.is_err() {
                    eprintln!("seed {seed} failed; replay with: {}", replay_hint(seed));
                    failed.lock().unwrap().push(seed);
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap();
    failed.sort_unstable();
    failed
}

#[test]
fn seeds() {
    if let Some(seed) = env_u64("SIM_SEED") {
        let options = RunOptions {
            verbose: true,
            ..options()
        };
        check_seed(seed, &options);
        println!("seed {seed} passed");
        return;
    }
    let count = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
    let started = Instant::now();
    let failed = run_many((base..base + count).collect(), options());
    assert!(
        failed.is_empty(),
        "seeds failed: {failed:?}; replay one with: {}",
        replay_hint(failed[0])
    );
    println!(
        "{count} seeds passed (each twice) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn regression_seeds() {
    // Found before data directories: replayed as they ran then.
    let options = RunOptions {
        durability: Some(Durability::Off),
        ..options()
    };
    let failed = run_many(REGRESSION_SEEDS.to_vec(), options);
    assert!(failed.is_empty(), "regression seeds failed: {failed:?}");
}

#[test]
fn restart_seeds() {
    let failed = run_many(RESTART_SEEDS.to_vec(), options());
    assert!(failed.is_empty(), "restart seeds failed: {failed:?}");
}
