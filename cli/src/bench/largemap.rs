//! The large-map section: what `Node::update` and `set` cost on a 3-node
//! cluster (in this process) holding a map of many keys, and how long the
//! nodes' loops are kept from everything else meanwhile. An update whose
//! map is derived from `Node::data` shares the node's structure, so it
//! should cost in proportion to what changed; one built anew as a plain
//! `BTreeMap` costs a comparison of the whole map. Either way heartbeats
//! and votes wait behind a node's loop while it works: that wait is what a
//! large map must not make long.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simple_raft::{Node, SharedMap};
use tokio::task::JoinSet;

use super::host::{Cluster, Mode, Timing};
use super::report::LargeMap;
use super::sample::Latencies;
use super::{big_map, progress, sequential, Plan, FORM_WAIT};

/// How long one update or load may take before the section fails.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often each node's read probe asks.
const PROBE_EVERY: Duration = Duration::from_millis(1);
/// A probe stops after this many reads even if its phase goes on.
const PROBE_READS_MAX: usize = 200_000;

pub async fn run(plan: &Plan) -> Result<LargeMap, String> {
    let keys = plan.largemap_keys;
    let (map, bytes) = big_map(keys);
    progress(&format!(
        "largemap: 3 nodes in process, {keys} keys ({:.1} MB); {} updates of each kind, {} sets",
        bytes as f64 / 1e6,
        plan.largemap_updates,
        plan.largemap_sets
    ));
    let cluster = Cluster::form(
        &plan.launch().as_mode(Mode::InProcess),
        3,
        Timing::DEFAULT,
        false,
        FORM_WAIT,
    )
    .await?;
    let agreed = cluster.agreed(FORM_WAIT).await?;
    let leader_member = &cluster.members[agreed.leader];
    let leader = leader_member.node_handle().ok_or("no leader handle")?;
    let nodes: Vec<Arc<Node>> = cluster
        .members
        .iter()
        .filter_map(|m| m.node_handle())
        .collect();

    let term_before = max_term(&nodes);
    let started = Instant::now();
    let version = timed_update(&leader, map.clone()).await?;
    let load = started.elapsed();
    cluster.converged(version, FORM_WAIT).await?;
    let loop_max_after_load = loop_max(&nodes).await?;

    // (a) The map derived from the node's own: one key changed each round.
    let (derived, probe_derived) = probed(&nodes, async || {
        let mut samples = Vec::with_capacity(plan.largemap_updates);
        for round in 0..plan.largemap_updates {
            let mut next = leader.data().await.map_err(|e| e.to_string())?;
            next.insert(changed_key(round, keys), format!("derived-{round}"));
            let started = Instant::now();
            timed_update(&leader, next).await?;
            samples.push(started.elapsed());
        }
        Ok(Latencies::new(samples))
    })
    .await?;

    // (b) The same change, as a plain collection built from scratch (its
    // building is not timed, its conversion and comparison are).
    let (plain, probe_plain) = probed(&nodes, async || {
        let mut samples = Vec::with_capacity(plan.largemap_updates);
        for round in 0..plan.largemap_updates {
            let current = leader.data().await.map_err(|e| e.to_string())?;
            // Built off the bench's runtime, which the read probes share.
            let next = tokio::task::spawn_blocking(move || {
                let mut next: BTreeMap<String, String> = current
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                next.insert(changed_key(round, keys), format!("plain-{round}"));
                next
            })
            .await
            .map_err(|e| format!("building a plain map: {e}"))?;
            let started = Instant::now();
            timed_update(&leader, next).await?;
            samples.push(started.elapsed());
        }
        Ok(Latencies::new(samples))
    })
    .await?;

    // (c) Single-key sets with the map loaded.
    let writer = leader_member.writer();
    let (sets, probe_sets) = probed(&nodes, async || {
        sequential(&writer, "largemap", plan.largemap_sets).await
    })
    .await?;
    let loop_max_after_all = loop_max(&nodes).await?;
    let elections = max_term(&nodes).saturating_sub(term_before);

    Ok(LargeMap {
        keys,
        bytes,
        load,
        derived,
        plain,
        sets,
        probe_derived,
        probe_plain,
        probe_sets,
        loop_max_after_load,
        loop_max_after_all,
        elections,
    })
}

/// The highest term any node is at.
fn max_term(nodes: &[Arc<Node>]) -> u64 {
    nodes.iter().map(|n| n.status().term).max().unwrap_or(0)
}

/// A key of the map, a different one each round.
fn changed_key(round: usize, keys: usize) -> String {
    format!("key-{:07}", (round * 7919) % keys.max(1))
}

async fn timed_update(node: &Node, map: impl Into<SharedMap>) -> Result<u64, String> {
    tokio::time::timeout(UPDATE_TIMEOUT, node.update(map))
        .await
        .map_err(|_| format!("an update took over {} s", UPDATE_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())
}

/// The longest loop turn any node has had since it started.
async fn loop_max(nodes: &[Arc<Node>]) -> Result<Duration, String> {
    let mut max = 0;
    for node in nodes {
        let metrics = node.metrics().await.map_err(|e| e.to_string())?;
        max = max.max(metrics.loop_busy_us_max);
    }
    Ok(Duration::from_micros(max))
}

/// Runs `work` while every node answers a local read each millisecond; the
/// work's result and how long those reads waited (a read waits in the
/// node's inbox while its loop is busy, so the longest is the longest
/// stall a request met).
async fn probed<T>(
    nodes: &[Arc<Node>],
    work: impl AsyncFnOnce() -> Result<T, String>,
) -> Result<(T, Latencies), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut probes = JoinSet::new();
    for node in nodes {
        let (node, stop) = (node.clone(), stop.clone());
        probes.spawn(async move {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) && waits.len() < PROBE_READS_MAX {
                let started = Instant::now();
                if node.get("largemap-probe").await.is_err() {
                    break;
                }
                waits.push(started.elapsed());
                tokio::time::sleep(PROBE_EVERY).await;
            }
            waits
        });
    }
    let result = work().await;
    stop.store(true, Ordering::Relaxed);
    let mut waits = Vec::new();
    while let Some(joined) = probes.join_next().await {
        waits.extend(joined.map_err(|e| format!("a read probe failed: {e}"))?);
    }
    Ok((result?, Latencies::new(waits)))
}
