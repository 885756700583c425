//! The liveness phase: heal everything, restart what is down, stop the
//! workload; the cluster must then settle in bounded time and answer every
//! request.

use simple_raft::core::Role;

use super::clients::Request;
use super::cluster::{Sim, Status};
use super::network::Faults;
use super::run::{Run, ANSWER_MS, LIVENESS_MS};

impl Run {
    /// Runs the liveness phase; fails the run if it does not settle.
    pub(super) fn liveness(&mut self) {
        let sim = &mut self.sim;
        let healed_at = sim.now;
        sim.trace.record(healed_at, "liveness", 0, 0, String::new);
        sim.net.heal_all();
        let mut calm = Faults::none();
        calm.delay_max_ms = self.plan.faults.delay_max_ms.clamp(1, 10);
        sim.net.faults = calm;
        self.agenda.clear();
        self.planned.clear();
        for i in 0..sim.nodes.len() {
            if sim.nodes[i].paused {
                sim.resume(i);
            }
        }
        self.restart_stranded();
        let sim = &mut self.sim;
        for i in 0..sim.nodes.len() {
            // A crash in the middle of a write that never came: now.
            if sim.nodes[i].status == Status::Up && sim.nodes[i].crash_on_write {
                sim.crash(i);
            }
        }
        for i in 0..sim.nodes.len() {
            let status = sim.nodes[i].status;
            let restart = status == Status::Crashed
                || (status == Status::Left && !self.stay_down.contains(&i));
            if restart {
                let seeds = sim.others(i);
                sim.start(i, seeds);
            }
        }
        let deadline = healed_at + LIVENESS_MS;
        loop {
            let now = self.sim.now;
            self.sim.run_until(now + 100);
            self.restart_departed();
            self.restart_stranded();
            let settled = converged(&self.sim);
            let waiting = unanswered(&self.sim);
            if settled.is_ok() && waiting.is_empty() {
                break;
            }
            if let Some((id, r)) = waiting.first() {
                if self.sim.now >= healed_at + ANSWER_MS {
                    let msg = format!(
                        "{} requests unanswered {ANSWER_MS} ms after healing, e.g. #{id} {:?} \
                         sent to n{} at {} ms",
                        waiting.len(),
                        r.op,
                        r.node,
                        r.issued_at
                    );
                    self.sim.fail(r.node, msg);
                }
            }
            if let Err(why) = settled {
                if self.sim.now >= deadline {
                    let msg =
                        format!("liveness: not converged {LIVENESS_MS} ms after healing: {why}");
                    self.sim.fail(usize::MAX, msg);
                }
            }
        }
        let converged_at = self.sim.now;
        self.sim.trace.note(converged_at, || {
            format!("converged {} ms after healing", converged_at - healed_at)
        });
        self.sim.check_all();
    }

    /// A node still joining whose every seed is gone is restarted with
    /// all the other addresses, as its operator would.
    fn restart_stranded(&mut self) {
        for i in self.sim.up() {
            let seeds = &self.sim.nodes[i].seeds;
            let stranded = self.sim.core(i).id().is_none()
                && !seeds.is_empty()
                && seeds.iter().all(|a| self.gone(a));
            if stranded {
                self.sim.crash(i);
                let seeds = self.sim.others(i);
                self.sim.start(i, seeds);
            }
        }
    }

    /// In the liveness phase a node that left stays down.
    fn restart_departed(&mut self) {
        for node in std::mem::take(&mut self.sim.departures) {
            self.stay_down.insert(node);
        }
    }
}

/// Requests at nodes that kept running since they were sent, unanswered.
fn unanswered(sim: &Sim) -> Vec<(u64, Request)> {
    sim.clients
        .pending
        .iter()
        .filter(|(_, r)| {
            sim.nodes[r.node].status == Status::Up && sim.nodes[r.node].incarnation == r.incarnation
        })
        .map(|(&id, r)| (id, r.clone()))
        .collect()
}

/// Whether the running nodes form one settled cluster: one leader, every
/// running node a member of its committed member list (and no other),
/// every node at the leader's commit and digest, nobody voting or standing.
pub fn converged(sim: &Sim) -> Result<usize, String> {
    let up = sim.up();
    let leaders: Vec<usize> = up
        .iter()
        .copied()
        .filter(|&i| sim.core(i).role() == Role::Leader)
        .collect();
    let [leader] = leaders[..] else {
        return Err(format!(
            "{} leaders among the running nodes: {leaders:?}",
            leaders.len()
        ));
    };
    let lc = sim.core(leader);
    let mut members: Vec<(String, u64)> = lc
        .members()
        .into_iter()
        .map(|m| (m.addr, m.incarnation))
        .collect();
    members.sort();
    let mut running: Vec<(String, u64)> = up
        .iter()
        .map(|&i| (sim.nodes[i].addr.to_string(), sim.member_incarnation(i)))
        .collect();
    running.sort();
    if members != running {
        return Err(format!(
            "the leader n{leader}'s members {members:?} are not the running nodes {running:?}"
        ));
    }
    for &i in &up {
        let c = sim.core(i);
        if matches!(c.role(), Role::Voter | Role::Candidate) {
            return Err(format!("n{i} is still {}", c.role()));
        }
        if !c.is_member() {
            return Err(format!("n{i} is not a member"));
        }
        if c.commit() != lc.commit() || c.digest() != lc.digest() {
            return Err(format!(
                "n{i} is at version {} (digest {:#x}), the leader at {} ({:#x})",
                c.commit(),
                c.digest(),
                lc.commit(),
                lc.digest()
            ));
        }
        if c.leader() != Some(lc.addr()) {
            return Err(format!("n{i} follows {:?}, not {}", c.leader(), lc.addr()));
        }
    }
    Ok(leader)
}
