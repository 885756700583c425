//! One seeded run: a safety phase with faults and a workload, then a
//! liveness phase on a healed network that must converge in bounded time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use simple_raft::wire::{Change, Member};

use super::clients::Op;
use super::cluster::{addr_of, Sim, Status};
use super::linearizability::{Call, Limits, Outcome, Report};
use super::model::State;
use super::network::Millis;
pub use super::plan::{Durability, Plan, RunOptions};
use super::rng::Rng;
use super::workload::Workload;

/// The liveness phase must converge within this.
pub const LIVENESS_MS: Millis = 60_000;
/// Requests still unanswered this long after the workload stopped fail.
pub const ANSWER_MS: Millis = 30_000;
/// Time between two chaos decisions.
const CHAOS_TICK_MS: Millis = 100;

/// What the driver does next.
#[derive(Debug)]
pub(super) enum Driver {
    Start {
        node: usize,
        seeds: Vec<SocketAddr>,
    },
    Chaos,
    Client,
    Heal {
        links: Vec<(usize, usize)>,
    },
    Restart {
        node: usize,
    },
    /// Writes aimed at one node (the founder just restarted).
    WritesTo {
        node: usize,
        count: u32,
    },
    /// Concurrent writes of one key through different nodes.
    Burst,
    /// One request to a random running node.
    Send {
        op: Op,
    },
}

/// The driver of one run: the cluster, the plan, and what comes next.
pub(super) struct Run {
    pub(super) sim: Sim,
    pub(super) plan: Plan,
    pub(super) rng: Rng,
    workload: Workload,
    pub(super) agenda: BTreeMap<(Millis, u64), Driver>,
    seq: u64,
    /// Slots that left for good.
    pub(super) stay_down: BTreeSet<usize>,
    /// Slots not started yet that will start.
    pub(super) planned: BTreeSet<usize>,
    partitions: usize,
    /// Draws about durability, kept apart so that runs without it draw as
    /// they did before it existed.
    durable_rng: Rng,
    /// Draws about restarts (wiped data directories, the founder's quick
    /// restart), kept apart likewise.
    restart_rng: Rng,
    /// A node restarted with no one to contact listens until then: no
    /// partition starts before (see `Driver::Restart`).
    founder_listening_until: Millis,
    /// Draws about bursts of same-key writes, kept apart likewise.
    burst_rng: Rng,
}

/// What one run did, besides passing.
#[derive(Debug)]
pub struct Ran {
    /// The trace hash (equal for two runs of one seed).
    pub trace_hash: u64,
    /// What the linearizability check of the client history did.
    pub history: Report,
}

/// Runs one seed through both phases, then checks that the history of
/// client operations is linearizable; returns its trace hash and what the
/// check did. Panics (naming the seed) when an invariant breaks.
pub fn run_seed(seed: u64, options: &RunOptions) -> Ran {
    let plan = Plan::draw(seed, options);
    let mut rng = Rng::new(seed);
    let mut sim = Sim::new(plan.params, plan.faults, rng.next_u64(), options.verbose);
    sim.context = format!(
        "seed {seed} (replay: SIM_SEED={seed} cargo test --release --test sim_seeds -- --nocapture)"
    );
    sim.clients.follow_redirects = true;
    sim.clients.retry_writes = options.retry_writes;
    sim.clients.sessions_on = options.sessions;
    let total_s = (plan.safety_ms + LIVENESS_MS + ANSWER_MS) / 1000;
    sim.steps_max = 200_000 + total_s * ((plan.nodes as u64 + 4).pow(2)) * 200;
    sim.trace.note(0, || format!("plan {plan:?}"));
    let workload = Workload::new(rng.fork());
    let mut run = Run {
        sim,
        plan,
        rng,
        workload,
        agenda: BTreeMap::new(),
        seq: 0,
        stay_down: BTreeSet::new(),
        planned: BTreeSet::new(),
        partitions: 0,
        durable_rng: Rng::new(seed ^ 0x0044_5552_4100),
        restart_rng: Rng::new(seed ^ 0x0052_5354_5200),
        founder_listening_until: 0,
        burst_rng: Rng::new(seed ^ 0x0053_414D_4500),
    };
    run.bootstrap();
    run.safety();
    run.liveness();
    let history = if options.skip_history_check {
        Report::default()
    } else {
        run.hint_unknown_writes();
        let mut limits = Limits::default();
        if let Some(n) = super::env_u64("SIM_LIN_CONFIGURATIONS") {
            limits.configurations_max = n;
        }
        match run.sim.clients.history.check_with(limits) {
            Ok(report) => report,
            Err(violation) => run
                .sim
                .fail(usize::MAX, format!("the client history: {violation}")),
        }
    };
    let sim = &run.sim;
    sim.trace.note(sim.now, || {
        format!(
            "done: {} steps, {} committed versions, outcomes {:?}",
            sim.steps,
            sim.checker.history.last(),
            sim.clients.outcomes
        )
    });
    Ran {
        trace_hash: sim.trace.hash(),
        history,
    }
}

impl Run {
    fn at(&mut self, at: Millis, d: Driver) {
        if let Driver::Start { node, .. } = d {
            self.planned.insert(node);
        }
        self.seq += 1;
        self.agenda.insert((at, self.seq), d);
    }

    /// A new address, on a machine whose clock disagrees with the others.
    fn add_node(&mut self) -> usize {
        let node = self.sim.add_node();
        self.sim.nodes[node].clock_offset_ms = self.rng.below(1 << 40);
        self.sim.nodes[node].durable = match self.plan.durability {
            Durability::Off => false,
            Durability::All => true,
            Durability::Mixed => self.durable_rng.chance(500),
        };
        node
    }

    fn bootstrap(&mut self) {
        let n = self.plan.nodes;
        for _ in 0..n {
            self.add_node();
        }
        if self.plan.simultaneous {
            for i in 0..n {
                let at = self.rng.range(0, 50);
                let seeds = self.sim.others(i);
                self.at(at, Driver::Start { node: i, seeds });
            }
        } else {
            // Everyone has started well before the safety phase ends.
            let gap_max = (self.plan.safety_ms / 2 / n as u64).min(600);
            let mut at = 0;
            self.at(
                0,
                Driver::Start {
                    node: 0,
                    seeds: Vec::new(),
                },
            );
            for i in 1..n {
                at += self.rng.range(0, gap_max);
                let via = if self.rng.chance(500) {
                    0
                } else {
                    self.rng.index(i)
                };
                self.at(
                    at,
                    Driver::Start {
                        node: i,
                        seeds: vec![addr_of(via)],
                    },
                );
            }
        }
        self.at(CHAOS_TICK_MS, Driver::Chaos);
        let gap = self.workload.gap_ms();
        self.at(gap, Driver::Client);
        let interval = self.plan.burst_interval_ms;
        if interval > 0 {
            let at = self.burst_rng.range(1, 2 * interval);
            self.at(at, Driver::Burst);
        }
    }

    fn safety(&mut self) {
        let end = self.plan.safety_ms;
        while let Some(entry) = self.agenda.first_entry() {
            let at = entry.key().0;
            if at > end {
                break;
            }
            let driver = entry.remove();
            self.sim.run_until(at);
            self.after_departures();
            self.drive(driver);
        }
        self.sim.run_until(end);
        self.after_departures();
    }

    fn drive(&mut self, d: Driver) {
        let now = self.sim.now;
        match d {
            Driver::Start { node, seeds } => {
                self.planned.remove(&node);
                let seeds = self.live_seeds(node, seeds);
                self.sim.start(node, seeds);
            }
            Driver::Chaos => {
                self.chaos();
                self.at(now + CHAOS_TICK_MS, Driver::Chaos);
            }
            Driver::Client => {
                self.client();
                let gap = self.workload.gap_ms();
                self.at(now + gap, Driver::Client);
            }
            Driver::Heal { links } => {
                self.sim.net.heal_links(&links);
                self.partitions -= 1;
                self.sim
                    .trace
                    .record(now, "heal", 0, links.len() as u64, || format!("{links:?}"));
            }
            Driver::Restart { node } => {
                if self.sim.nodes[node].status == Status::Up && self.sim.nodes[node].crash_on_write
                {
                    // It wrote nothing since: it crashes now instead.
                    self.sim.crash(node);
                }
                let status = self.sim.nodes[node].status;
                if matches!(status, Status::Crashed | Status::Left)
                    && !self.stay_down.contains(&node)
                {
                    // A wiped directory is a member's data lost: only while
                    // every other node runs as a member (and is not about to
                    // crash), so the cluster keeps a majority that remembers
                    // (losing that is losing the data, which no restart rule
                    // can undo).
                    let others_up = (0..self.sim.nodes.len()).all(|j| {
                        j == node
                            || self.gone(&addr_of(j))
                            || (self.sim.nodes[j].status == Status::Up
                                && !self.sim.nodes[j].crash_on_write
                                && self.sim.core(j).is_member())
                    });
                    if self.sim.nodes[node].durable
                        && others_up
                        && self.restart_rng.chance(self.plan.wipe_permille)
                    {
                        self.sim.nodes[node].disk = Default::default();
                        self.sim
                            .trace
                            .record(now, "wipe", node, 0, || "data directory wiped".into());
                    }
                    let seeds = self.restart_seeds(node);
                    if seeds.is_empty() && self.partitions > 0 {
                        // The one restart no rule can make safe: a node with
                        // no one to contact and no data, cut off from the
                        // cluster that lists it for longer than it listens,
                        // can only found (the README says to give it
                        // `--join`). Started once the network is whole.
                        self.at(now + CHAOS_TICK_MS, Driver::Restart { node });
                        return;
                    }
                    if seeds.is_empty() {
                        let listen = self.plan.params.config(addr_of(node), vec![], 0);
                        self.founder_listening_until = now + listen.found_listen_ms();
                    }
                    self.sim.start(node, seeds);
                }
            }
            Driver::Burst => {
                self.burst();
                let gap = self.burst_rng.range(1, 2 * self.plan.burst_interval_ms);
                self.at(now + gap, Driver::Burst);
            }
            Driver::Send { op } => {
                let up = self.sim.up();
                if !up.is_empty() {
                    let node = up[self.burst_rng.index(up.len())];
                    self.sim.command(node, op);
                }
            }
            Driver::WritesTo { node, count } => {
                for _ in 0..count {
                    if self.sim.running(node) {
                        let op = self.workload.set_op();
                        self.sim.command(node, op);
                    }
                }
            }
        }
    }

    /// The seeds of a restart: the node's own command line again, as people
    /// restart a service (the founder's names no one). The one exception is
    /// documented in the README: a node that keeps no data directory and
    /// that the cluster no longer lists (it left, or was removed while
    /// away) has nothing that could lead it back, so its operator adds
    /// `--join`.
    fn restart_seeds(&mut self, node: usize) -> Vec<SocketAddr> {
        let original = self.sim.nodes[node]
            .original_seeds
            .clone()
            .unwrap_or_default();
        let keeps_data = self.sim.nodes[node].durable && !self.sim.nodes[node].disk.is_empty();
        if !original.is_empty() || keeps_data || self.listed(node) {
            return self.live_seeds(node, original);
        }
        let others = self.sim.others(node);
        self.live_seeds(node, others)
    }

    /// Whether the cluster lists slot `node`'s address: in the latest
    /// configuration (committed members with the log's changes applied) of
    /// the leader, or of the most up-to-date running member when there is
    /// none, since that is who will send to it.
    fn listed(&self, node: usize) -> bool {
        let sim = &self.sim;
        let addr = addr_of(node).to_string();
        let running: Vec<usize> = sim
            .up()
            .into_iter()
            .filter(|&i| i != node && sim.running(i) && sim.core(i).is_member())
            .collect();
        let Some(&source) = running
            .iter()
            .find(|&&i| sim.core(i).role() == simple_raft::core::Role::Leader)
            .or_else(|| running.iter().max_by_key(|&&i| sim.core(i).last_log_id()))
        else {
            return false;
        };
        let core = sim.core(source);
        let mut latest = State {
            members: core.members().iter().map(|m| (m.id, m.clone())).collect(),
            ..State::default()
        };
        for v in core.commit() + 1..=core.last_log_id().version {
            if let Some(entry) = core.entry(v) {
                latest.apply(v, &entry.change);
            }
        }
        latest.members.values().any(|m| m.addr == addr)
    }

    /// Whether the address is of a slot that left for good or will never
    /// start: nobody will ever answer there.
    pub(super) fn gone(&self, addr: &SocketAddr) -> bool {
        self.sim.index_of(*addr).is_some_and(|j| {
            self.stay_down.contains(&j)
                || (self.sim.nodes[j].status == Status::Idle && !self.planned.contains(&j))
        })
    }

    /// `seeds`, unless every one of them is gone: then a random node that
    /// is still around (as an operator would do).
    fn live_seeds(&mut self, node: usize, seeds: Vec<SocketAddr>) -> Vec<SocketAddr> {
        if seeds.is_empty() || seeds.iter().any(|a| !self.gone(a)) {
            return seeds;
        }
        let around: Vec<usize> = (0..self.sim.nodes.len())
            .filter(|&j| j != node && !self.gone(&addr_of(j)))
            .collect();
        vec![addr_of(around[self.rng.index(around.len())])]
    }

    /// A node that left stays down, or comes back later as a new
    /// incarnation.
    fn after_departures(&mut self) {
        for node in std::mem::take(&mut self.sim.departures) {
            if self.rng.chance(500) {
                self.stay_down.insert(node);
            } else {
                let at = self.sim.now + self.rng.range(500, 3_000);
                self.at(at, Driver::Restart { node });
            }
        }
    }

    fn client(&mut self) {
        let up = self.sim.up();
        if up.is_empty() {
            return;
        }
        let op = self.workload.next_op();
        let node = if op == Op::Transfer {
            match self.sim.leader() {
                Some(l) if self.sim.running(l) => l,
                _ => return,
            }
        } else {
            up[self.workload.pick(up.len())]
        };
        self.sim.command(node, op);
    }

    /// Gives the checker the version at which each write of unknown outcome
    /// committed, when the committed history shows it (a `set` by its
    /// unique value, an `update` by the map it left): the search then
    /// tries the order the cluster applied first. Only its speed depends on
    /// this.
    fn hint_unknown_writes(&mut self) {
        let committed = &self.sim.checker.history;
        let mut hints = Vec::new();
        for (id, op) in self.sim.clients.history.operations().iter().enumerate() {
            if !matches!(op.outcome, Outcome::Unknown | Outcome::Pending) {
                continue;
            }
            let version = match &op.call {
                Call::Set { key, value } => committed.entries.iter().find_map(|(v, c)| {
                    let change = Change::Set {
                        key: key.clone(),
                        value: value.clone(),
                    };
                    (c.change == change).then_some(*v)
                }),
                Call::Update { map } => committed.entries.iter().find_map(|(v, c)| {
                    let replaced = matches!(c.change, Change::Replace { .. })
                        && committed.state(*v).is_some_and(|(s, _, _)| &s.map == map);
                    replaced.then_some(*v)
                }),
                _ => None,
            };
            if let Some(v) = version {
                hints.push((id, 2 * v));
            }
        }
        for (id, hint) in hints {
            self.sim.clients.history.hint(id, hint);
        }
    }

    /// Writes of one key sent at once through different nodes (followers
    /// redirect them to the leader), sometimes with a hand-over of the
    /// leadership right after them, then reads a little later.
    fn burst(&mut self) {
        let mut up = self.sim.up();
        if up.is_empty() {
            return;
        }
        let (writes, reads) = self.workload.same_key(&mut self.burst_rng);
        for (n, op) in writes.into_iter().enumerate() {
            if n % up.len() == 0 {
                self.burst_rng.shuffle(&mut up);
            }
            self.sim.command(up[n % up.len()], op);
        }
        if self.burst_rng.chance(250) {
            if let Some(leader) = self.sim.leader().filter(|&l| self.sim.running(l)) {
                self.sim.command(leader, Op::Transfer);
            }
        }
        let now = self.sim.now;
        for op in reads {
            let at = now + self.burst_rng.range(0, 30);
            self.at(at, Driver::Send { op });
        }
    }

    fn chaos(&mut self) {
        let now = self.sim.now;
        let count = self.sim.nodes.len();
        let p = self.plan.clone();
        let listening = now <= self.founder_listening_until;
        if self.rng.chance(p.partition_permille) && self.partitions < 2 && count >= 2 && !listening
        {
            let links = self.partition_links(count);
            self.sim.net.cut_links(&links);
            self.partitions += 1;
            let heal_at = now + self.rng.range(100, 3_000);
            self.sim
                .trace
                .record(now, "partition", 0, links.len() as u64, || {
                    format!("{links:?} until {heal_at}")
                });
            self.at(heal_at, Driver::Heal { links });
        }
        if self.rng.chance(p.pause_permille) && !self.sim.nodes.iter().any(|n| n.paused) {
            let up = self.sim.up();
            if !up.is_empty() {
                let leader = self.sim.leader().filter(|_| self.rng.chance(500));
                let node = leader.unwrap_or_else(|| up[self.rng.index(up.len())]);
                let ms = self.rng.range(50, 2_000);
                self.sim.pause(node, ms);
                if leader.is_some() && self.partitions < 2 && self.rng.chance(500) && !listening {
                    // A stalled leader, cut off until a little after it
                    // wakes: it must not serve what it no longer knows.
                    let links: Vec<(usize, usize)> = (0..count)
                        .filter(|&j| j != node)
                        .flat_map(|j| [(node, j), (j, node)])
                        .collect();
                    self.sim.net.cut_links(&links);
                    self.partitions += 1;
                    let heal_at = now + ms + self.rng.range(0, 300);
                    self.sim.trace.record(now, "isolate", node, heal_at, || {
                        format!("n{node} until {heal_at}")
                    });
                    self.at(heal_at, Driver::Heal { links });
                }
            }
        }
        if self.rng.chance(p.crash_permille) && self.healthy().is_some() {
            let up = self.sim.up();
            let node = up[self.rng.index(up.len())];
            if self.sim.nodes[node].durable && self.durable_rng.chance(p.torn_permille) {
                // Crashes in the middle of its next write.
                self.sim.nodes[node].crash_on_write = true;
            } else {
                self.sim.crash(node);
            }
            let at = now + self.rng.range(100, 3_000);
            self.at(at, Driver::Restart { node });
        }
        if self.restart_rng.chance(p.founder_restart_permille)
            && self.sim.running(0)
            && self.partitions == 0
            && self.healthy().is_some()
        {
            // The founder, killed and started again at once with its own
            // command, while clients keep writing to it.
            self.sim.crash(0);
            let heartbeat = self.plan.params.heartbeat_ms;
            let at = now + self.restart_rng.range(0, heartbeat + 1);
            self.at(at, Driver::Restart { node: 0 });
            let count = self.restart_rng.range(1, 6) as u32;
            self.at(at + 1, Driver::WritesTo { node: 0, count });
        }
        if self.durable_rng.chance(p.whole_crash_permille) && self.healthy().is_some() {
            // Every node at once: only what is on disk is left.
            for node in self.sim.up() {
                if self.durable_rng.chance(p.torn_permille) {
                    self.sim.nodes[node].crash_on_write = true;
                } else {
                    self.sim.crash(node);
                }
                let at = now + self.durable_rng.range(100, 3_000);
                self.at(at, Driver::Restart { node });
            }
        }
        if self.rng.chance(p.join_permille)
            && count < p.nodes + 2
            && count < 25
            && now + 5_000 < p.safety_ms
        {
            let node = self.add_node();
            let mut seeds: Vec<SocketAddr> = Vec::new();
            for j in 0..node {
                if seeds.is_empty() || self.rng.chance(300) {
                    seeds.push(addr_of(j));
                }
            }
            self.sim.start(node, seeds);
        }
        // One leave at a time, and never below three voters.
        let leaving = self
            .sim
            .nodes
            .iter()
            .any(|n| n.status == Status::Up && n.leaving);
        if self.rng.chance(p.leave_permille)
            && !leaving
            && self.healthy().is_some_and(|voters| voters >= 4)
        {
            let members: Vec<usize> = self
                .sim
                .up()
                .into_iter()
                .filter(|&i| self.sim.running(i) && self.sim.core(i).is_member())
                .collect();
            if !members.is_empty() {
                let node = members[self.rng.index(members.len())];
                let id = self.sim.core(node).id();
                self.sim.nodes[node].leaving = true;
                self.sim.command(node, Op::Leave { id });
            }
        }
    }

    /// Either a split of the nodes into two sides, or a few one-way cuts.
    fn partition_links(&mut self, count: usize) -> Vec<(usize, usize)> {
        let mut links = Vec::new();
        if self.rng.chance(500) {
            let side: Vec<bool> = (0..count).map(|_| self.rng.chance(500)).collect();
            for a in 0..count {
                for b in 0..count {
                    if side[a] && !side[b] {
                        links.push((a, b));
                        links.push((b, a));
                    }
                }
            }
        } else {
            for _ in 0..self.rng.range(1, 3) {
                let a = self.rng.index(count);
                let b = self.rng.index(count);
                if a != b && !links.contains(&(a, b)) {
                    links.push((a, b));
                }
            }
        }
        links
    }

    /// The voters of the leader's configuration when the cluster can lose
    /// any one node: no node is down, and in both
    /// the committed member list and the latest one (with the changes in
    /// the leader's log applied) every member runs and there are at least
    /// three voters.
    fn healthy(&self) -> Option<usize> {
        let sim = &self.sim;
        let down = sim.nodes.iter().enumerate().any(|(i, n)| {
            n.status == Status::Crashed
                || (n.status == Status::Left && !self.stay_down.contains(&i))
        });
        if down {
            return None;
        }
        let leader = sim.leader()?;
        if !sim.running(leader) {
            return None;
        }
        let core = sim.core(leader);
        let committed = core.members();
        let mut latest = State {
            members: committed.iter().map(|m| (m.id, m.clone())).collect(),
            ..State::default()
        };
        for v in core.commit() + 1..=core.last_log_id().version {
            latest.apply(v, &core.entry(v)?.change);
        }
        let latest: Vec<Member> = latest.members.into_values().collect();
        let mut voters = usize::MAX;
        for config in [&committed, &latest] {
            for m in config {
                let i = sim.index_of(m.addr.parse().ok()?)?;
                if !sim.running(i) || sim.member_incarnation(i) != m.incarnation {
                    return None;
                }
            }
            voters = voters.min(config.iter().filter(|m| m.voter).count());
        }
        (voters >= 3).then_some(voters)
    }
}
