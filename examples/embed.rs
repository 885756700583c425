//! Embedding simple-raft in a service.
//!
//! Three nodes run in this one process on loopback, as three processes of
//! a service would on three machines of a LAN. Each node's owner watches
//! its status and starts or stops its leader-only work when the role
//! changes; writes go through any node; reads are local (fast, possibly a
//! heartbeat stale) or linearizable (confirmed with a quorum).
//!
//! Run it with `cargo run --example embed`.

use std::net::SocketAddr;
use std::time::Duration;

use simple_raft::{Config, Error, Node, State, Status};
use tokio::sync::watch;

/// How long the example waits for any condition before giving up.
const WAIT: Duration = Duration::from_secs(10);

/// A node's settings. Port 0 picks a free port, so that the example never
/// collides with anything; a real service listens on a fixed address and
/// lists its peers' fixed addresses in `join`.
fn config(join: Vec<SocketAddr>) -> Config {
    Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), join)
}

/// What a service does with its node's role: here it prints; a work
/// scheduler would start its dispatch loop on becoming leader and stop it
/// on losing the role. Ends when the node stops (the watch closes).
async fn follow_role(addr: SocketAddr, mut status: watch::Receiver<Status>) {
    let mut leading = false;
    loop {
        // `borrow_and_update` marks the value seen, so `changed` below only
        // wakes for a newer one. The role may already be `leader` when we
        // subscribe (the founding node leads at once), so look before
        // waiting.
        let now = status.borrow_and_update().clone();
        if now.state == State::Leader && !leading {
            println!("{addr}: became leader in term {}", now.term);
        } else if now.state != State::Leader && leading {
            println!("{addr}: no longer leader (term {})", now.term);
        }
        leading = now.state == State::Leader;
        if status.changed().await.is_err() {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // An empty join list founds a cluster; the others join through it. Any
    // member would do: a node that is not the leader redirects to it.
    let first = Node::start(config(vec![])).await?;
    let seed = first.addr();
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(Node::start(config(vec![seed])).await?);
    }

    // Subscribe before anything happens that the service should react to.
    let watchers: Vec<_> = nodes
        .iter()
        .map(|node| tokio::spawn(follow_role(node.addr(), node.subscribe())))
        .collect();

    // Joining nodes start as non-voters and are promoted once caught up;
    // wait for all three to vote so the cluster survives one failure.
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
    let follower = (leader + 1) % nodes.len();

    // A write returns once a majority has it: the version it committed at.
    let v1 = nodes[leader]
        .set("scheduler/owner", nodes[leader].addr().to_string())
        .await?;
    // Through a follower, the write is forwarded to the leader.
    let v2 = nodes[follower].set("workers/max", "8").await?;
    println!("wrote through the leader (version {v1}) and a follower (version {v2})");

    // A local read answers from the node's own copy, which may lag the
    // leader by a heartbeat: wait until this node has applied the write.
    let other = (leader + 2) % nodes.len();
    nodes[other].wait_for(WAIT, |s| s.version >= v2).await?;
    let workers = nodes[other].get("workers/max").await?;
    println!(
        "local read on {}: workers/max = {workers:?}",
        nodes[other].addr()
    );

    // A linearizable read confirms with a quorum first: it sees every
    // write that committed before it, on any node, without waiting.
    let map = nodes[follower].read_linearizable().await?;
    println!("linearizable read on {}: {map:?}", nodes[follower].addr());

    // Shut down gracefully: the leader first, which hands the role to the
    // most up-to-date follower at once rather than leaving the others to
    // notice its silence (another watcher prints the new leader); then the
    // rest, the same way. The last node has nobody left to hand over to and
    // simply stops. Dropping a node instead would stop it like a crash.
    let leader = nodes.remove(leader);
    let old = leader.addr();
    leader.shutdown().await?;
    for node in &nodes {
        node.wait_for(WAIT, |s| s.leader.is_some_and(|l| l != old))
            .await?;
    }
    for node in nodes {
        node.shutdown().await?;
    }
    // Each watcher ends when its node has stopped and its status closed.
    for watcher in watchers {
        let _ = watcher.await;
    }
    println!("all nodes stopped");
    Ok(())
}
