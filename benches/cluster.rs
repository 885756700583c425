//! Commit latency of a 3-node cluster on loopback: the time from a `set`
//! call to its committed answer, one write after the other. Through the
//! leader a write costs one round of appends to the followers; through a
//! follower it is forwarded to the leader over a new TCP connection first.
//!
//! `cargo bench --bench cluster` prints the p50 and p99 of 1000 sequential
//! sets each way, then runs the criterion benchmarks; `-- --test` runs each
//! criterion benchmark once as a smoke test.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use simple_raft::{Config, Node, State};
use tokio::runtime::Runtime;

/// Sets per percentile measurement.
const SETS: usize = 1000;
/// Writes cycle through this many keys, so the map stays the same size
/// however many iterations criterion asks for.
const KEYS: u64 = 1024;
/// A value of realistic size: a hash, an address with a port.
const VALUE: &str = "0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn config(join: Vec<SocketAddr>) -> Config {
    // The library's LAN defaults: the heartbeat does not pace commits (a
    // write is sent to the followers at once), so this is what users get.
    Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), join)
}

/// Three voters, and the index of the leader they agree on.
async fn cluster() -> (Vec<Node>, usize) {
    let first = Node::start(config(vec![])).await.unwrap();
    let seed = first.addr();
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(Node::start(config(vec![seed])).await.unwrap());
    }
    for node in &nodes {
        node.wait_for(WAIT, |s| {
            s.members.len() == 3 && s.members.iter().all(|m| m.voter)
        })
        .await
        .expect("three voters");
    }
    let leader = nodes
        .iter()
        .position(|n| n.state() == State::Leader)
        .expect("a leader");
    (nodes, leader)
}

fn key(i: u64) -> String {
    format!("bench/{:04}", i % KEYS)
}

/// `n` sequential sets through `node`; the latency of each.
async fn sequential_sets(node: &Node, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        node.set(key(i as u64), VALUE).await.expect("set commits");
        latencies.push(start.elapsed());
    }
    latencies
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report_percentiles(runtime: &Runtime, nodes: &[Node], leader: usize) {
    let follower = (leader + 1) % nodes.len();
    for (name, node) in [("leader", &nodes[leader]), ("follower", &nodes[follower])] {
        let mut latencies = runtime.block_on(sequential_sets(node, SETS));
        latencies.sort_unstable();
        println!(
            "commit latency, {SETS} sequential sets via the {name}: p50 {} us, p99 {} us, max {} us",
            percentile(&latencies, 50.0).as_micros(),
            percentile(&latencies, 99.0).as_micros(),
            latencies[latencies.len() - 1].as_micros(),
        );
    }
}

fn commit_latency(c: &mut Criterion, runtime: &Runtime, nodes: &[Node], leader: usize) {
    let follower = (leader + 1) % nodes.len();
    let mut group = c.benchmark_group("commit_latency");
    for (name, node) in [
        ("set_via_leader", &nodes[leader]),
        ("set_via_follower", &nodes[follower]),
    ] {
        group.bench_function(name, |b| {
            // The timed loop runs inside the runtime: one `block_on` per
            // batch, not per write.
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(node.set(key(i), VALUE).await.expect("set commits"));
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (nodes, leader) = runtime.block_on(cluster());

    report_percentiles(&runtime, &nodes, leader);
    let mut criterion = Criterion::default().configure_from_args();
    commit_latency(&mut criterion, &runtime, &nodes, leader);
    criterion.final_summary();

    runtime.block_on(async {
        for node in nodes {
            let _ = node.shutdown().await;
        }
    });
}
