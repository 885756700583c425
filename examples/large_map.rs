//! What `update` costs with large maps: three nodes in this process on
//! loopback, a map of `n` keys loaded, then `k` of its keys changed, with
//! the map derived from `data()` (the cheap way) and as a plain
//! `BTreeMap` built anew (one comparison pass on the leader).
//!
//! Run it with `cargo run --release --example large_map`; the figures
//! depend on the machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use simple_raft::{Config, Error, Node, SharedMap, State};

const WAIT: Duration = Duration::from_secs(30);

fn config(join: Vec<SocketAddr>) -> Config {
    let mut config = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), join);
    config.request_timeout_ms = 60_000;
    config
}

fn value(i: usize, round: usize) -> String {
    format!("{round:03}-{i:097}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let first = Node::start(config(vec![])).await?;
    let seed = first.addr();
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(Node::start(config(vec![seed])).await?);
    }
    for node in &nodes {
        node.wait_for(WAIT, |s| {
            s.members.len() == 3 && s.members.iter().all(|m| m.voter)
        })
        .await?;
    }
    let leader = nodes
        .iter()
        .position(|n| n.state() == State::Leader)
        .ok_or(Error::NoLeader)?;
    let leader = &nodes[leader];
    println!("n keys   k changed   derived from data() ms   plain BTreeMap ms");
    for n in [1_000, 10_000, 100_000] {
        // Load n keys (the full update), from an empty map.
        let plain: BTreeMap<String, String> = (0..n)
            .map(|i| (format!("key-{i:07}"), value(i, 0)))
            .collect();
        leader.update(SharedMap::new()).await?;
        let started = Instant::now();
        leader.update(plain.clone()).await?;
        println!(
            "{n:>6}   {n:>9}   {:>22}   {:>17.1}",
            "-",
            ms(started.elapsed())
        );
        for (round, k) in [1, 100, n].into_iter().enumerate() {
            let round = 2 * round + 1;
            // Derived from the committed map: shares its structure.
            let mut derived = leader.data().await?;
            for i in 0..k {
                derived.insert(format!("key-{i:07}"), value(i, round));
            }
            let started = Instant::now();
            leader.update(derived).await?;
            let derived_ms = ms(started.elapsed());
            // A plain map: compared with the state in one pass.
            let mut plain = plain.clone();
            for i in 0..k {
                plain.insert(format!("key-{i:07}"), value(i, round + 1));
            }
            let started = Instant::now();
            leader.update(plain).await?;
            let plain_ms = ms(started.elapsed());
            println!("{n:>6}   {k:>9}   {derived_ms:>22.1}   {plain_ms:>17.1}");
        }
    }
    let started = Instant::now();
    let writes = 100;
    for i in 0..writes {
        leader.set(format!("key-{i:07}"), "x").await?;
    }
    println!(
        "set with 100 000 keys loaded: {:.2} ms each",
        ms(started.elapsed()) / f64::from(writes)
    );
    for node in &nodes {
        let metrics = node.metrics().await?;
        println!(
            "{}: longest loop turn {:.1} ms",
            node.addr(),
            metrics.loop_busy_us_max as f64 / 1e3
        );
    }
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
