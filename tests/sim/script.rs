//! Helpers for the scripted scenarios: a quiet network the test controls,
//! growing a cluster, cutting links, and waiting for conditions.

use std::net::SocketAddr;

use simple_raft::core::{RequestError, RequestId, Role};
use simple_raft::wire::Message;

use super::cluster::{addr_of, Params, Sim};
use super::liveness::converged;
use super::network::{Faults, Millis, Packet};

/// A cluster of `slots` addresses (none started) on a quiet network that
/// logs every delivered frame.
pub fn quiet(slots: usize, params: Params, seed: u64) -> Sim {
    let mut sim = Sim::new(params, Faults::none(), seed, false);
    sim.context = format!("scenario (seed {seed})");
    sim.net.log = Some(Vec::new());
    sim.check_history_at_end = true;
    for _ in 0..slots {
        sim.add_node();
    }
    sim
}

/// Starts slot 0 as the founder, then slots `1..n` one by one with slot 0
/// as their seed; returns the leader once all `n` form one settled cluster
/// of voters.
pub fn grow(sim: &mut Sim, n: usize) -> usize {
    sim.start(0, Vec::new());
    for i in 1..n {
        let now = sim.now;
        sim.run_until(now + 50);
        sim.start(i, vec![addr_of(0)]);
    }
    let leader = settle(sim, 30_000);
    let voters = sim
        .core(leader)
        .members()
        .iter()
        .filter(|m| m.voter)
        .count();
    let now = sim.now;
    let all_voters = sim.run_until_cond(now + 10_000, |s| {
        s.core(leader).members().iter().filter(|m| m.voter).count() == n
    });
    assert!(
        all_voters,
        "only {voters} of {n} members were promoted to voters"
    );
    settle(sim, 10_000)
}

/// Runs until the running nodes form one settled cluster (see
/// [`converged`]); returns its leader. Panics after `within_ms`.
pub fn settle(sim: &mut Sim, within_ms: Millis) -> usize {
    let until = sim.now + within_ms;
    loop {
        if let Ok(leader) = converged(sim) {
            return leader;
        }
        if sim.now >= until {
            let why = converged(sim).expect_err("not converged");
            sim.fail(
                usize::MAX,
                format!("not settled within {within_ms} ms: {why}"),
            );
        }
        let now = sim.now;
        sim.run_until(now + 10);
    }
}

/// Runs for `ms`.
pub fn run_for(sim: &mut Sim, ms: Millis) {
    let until = sim.now + ms;
    sim.run_until(until);
}

/// Cuts every link between `group` and the other slots, both ways;
/// returns the links, for [`Sim::net`]'s `heal_links`.
pub fn isolate(sim: &mut Sim, group: &[usize]) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for a in 0..sim.nodes.len() {
        for b in 0..sim.nodes.len() {
            if group.contains(&a) != group.contains(&b) {
                links.push((a, b));
            }
        }
    }
    sim.net.cut_links(&links);
    links
}

/// Runs until request `id` has an answer (at most `within_ms`).
pub fn answer(sim: &mut Sim, id: RequestId, within_ms: Millis) -> Result<u64, RequestError> {
    let until = sim.now + within_ms;
    sim.run_until_cond(until, |s| s.clients.results.contains_key(&id));
    match sim.clients.results.get(&id) {
        Some(result) => result.clone(),
        None => sim.fail(
            usize::MAX,
            format!("request {id} unanswered after {within_ms} ms"),
        ),
    }
}

/// The slots (other than `except`) in `0..n`.
pub fn others(n: usize, except: &[usize]) -> Vec<usize> {
    (0..n).filter(|i| !except.contains(i)).collect()
}

/// Whether slot `i` runs and leads.
pub fn leads(sim: &Sim, i: usize) -> bool {
    sim.running(i) && sim.core(i).role() == Role::Leader
}

/// Delivered frames, in order, as `(time, packet)`.
pub fn delivered(sim: &Sim) -> &[(Millis, Packet)] {
    sim.net.log.as_deref().unwrap_or(&[])
}

/// The first delivery matching `pred`, with its time.
pub fn first_delivery(
    sim: &Sim,
    mut pred: impl FnMut(&Packet) -> bool,
) -> Option<(Millis, &Packet)> {
    delivered(sim)
        .iter()
        .find(|(_, p)| pred(p))
        .map(|(at, p)| (*at, p))
}

/// Whether `packet` carries a message of the kind `matches` accepts.
pub fn is(packet: &Packet, matches: impl Fn(&Message) -> bool) -> bool {
    matches(&packet.frame.message)
}

/// The address of slot `i` as the wire spells it.
pub fn addr_text(i: usize) -> String {
    addr_of(i).to_string()
}

/// The address of slot `i`.
pub fn addr(i: usize) -> SocketAddr {
    addr_of(i)
}
