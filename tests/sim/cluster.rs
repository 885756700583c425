//! The simulated cluster: the cores, a virtual clock, the queue of things
//! in flight, and the step loop that checks the invariants after every
//! step.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use simple_raft::core::{Core, Event, Millis, RequestId, Role};

use super::clients::{After, Clients, Op, Request};
use super::delivery::Action;
use super::invariants::Checker;
use super::network::{Faults, Network};
pub use super::node::{addr_of, Node, Params, Status, BASE_PORT};
use super::node::{Held, INBOX_MAX};
use super::report::event_hash;
use super::rng::Rng;
use super::trace::{hash_of, Trace};

/// Outputs one handler call may produce before it counts as a runaway.
const OUTPUTS_PER_STEP_MAX: usize = 100_000;

/// The simulated cluster.
pub struct Sim {
    /// Virtual time.
    pub now: Millis,
    /// Every address ever used, by slot.
    pub nodes: Vec<Node>,
    /// Links and faults.
    pub net: Network,
    /// Safety invariants.
    pub checker: Checker,
    /// Client requests.
    pub clients: Clients,
    /// The run's trace.
    pub trace: Trace,
    /// The core settings.
    pub params: Params,
    /// Steps taken.
    pub steps: u64,
    /// The step budget: a run that takes more is a failure.
    pub steps_max: u64,
    /// Slots that stopped after leaving, for the driver to restart.
    pub departures: Vec<usize>,
    /// What to print with a failure (the seed and how to replay it).
    pub context: String,
    /// Check the client history for linearizability when the simulation
    /// ends (scripted scenarios; a seed run checks it itself).
    pub check_history_at_end: bool,
    /// Everything in flight, by delivery time (then sending order).
    pub(super) queue: BTreeMap<(Millis, u64), Action>,
    pub(super) seq: u64,
    rng: Rng,
    full_check_every: u64,
}

impl Drop for Sim {
    /// A scripted scenario's history is checked however the test ends
    /// (unless it is failing already): every write and linearizable read
    /// it made must be linearizable.
    fn drop(&mut self) {
        if !self.check_history_at_end || std::thread::panicking() {
            return;
        }
        match self.clients.history.check_with(Default::default()) {
            Ok(report) => {
                if !report.exceeded.is_empty() {
                    panic!(
                        "{}: the history check stopped at its bound: {:?}",
                        self.context, report.exceeded
                    );
                }
                eprintln!(
                    "{}: {} client operations checked linearizable",
                    self.context, report.checked
                );
            }
            Err(violation) => panic!("{}: the client history: {violation}", self.context),
        }
    }
}

impl Sim {
    /// An empty cluster.
    pub fn new(params: Params, faults: Faults, seed: u64, verbose: bool) -> Sim {
        let mut rng = Rng::new(seed);
        let net = Network::new(faults, rng.fork());
        Sim {
            now: 0,
            nodes: Vec::new(),
            net,
            checker: Checker::new(),
            clients: Clients::default(),
            trace: Trace::new(verbose),
            params,
            steps: 0,
            steps_max: 20_000_000,
            departures: Vec::new(),
            context: format!("seed {seed}"),
            queue: BTreeMap::new(),
            seq: 0,
            rng,
            full_check_every: 997,
            check_history_at_end: false,
        }
    }

    /// Adds an address (not started) and returns its slot.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            addr: addr_of(i),
            core: None,
            incarnation: 0,
            status: Status::Idle,
            paused: false,
            paused_until: 0,
            leaving: false,
            seeds: Vec::new(),
            original_seeds: None,
            clock_offset_ms: 0,
            inbox: VecDeque::new(),
            durable: false,
            disk: Default::default(),
            crash_on_write: false,
            spins: (0, 0),
        });
        i
    }

    /// Every other address, for a restart's seed list.
    pub fn others(&self, i: usize) -> Vec<SocketAddr> {
        (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(addr_of)
            .collect()
    }

    /// Starts a process at slot `i`: a new incarnation, with no data, or
    /// with what its disk kept when it is durable.
    pub fn start(&mut self, i: usize, seeds: Vec<SocketAddr>) {
        assert!(self.nodes[i].core.is_none(), "n{i} is already running");
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.status = Status::Up;
        node.paused = false;
        node.leaving = false;
        node.crash_on_write = false;
        node.seeds = seeds.clone();
        node.original_seeds.get_or_insert_with(|| seeds.clone());
        node.inbox.clear();
        let incarnation = node.incarnation;
        let mut config = self.params.config(node.addr, seeds.clone(), incarnation);
        config.durable = node.durable;
        let core_seed = self.rng.next_u64();
        let now = self.clock(i);
        let mut restored = false;
        let core = if self.nodes[i].durable {
            let recovery = match self.nodes[i].disk.recover() {
                Ok(recovery) => recovery,
                Err(e) => self.fail(i, e),
            };
            let image = recovery.image;
            restored = image.identity.is_some();
            self.trace.record(self.now, "restore", i, incarnation, || {
                format!(
                    "id {:?} {:?} snapshot {:?} + {} entries ({} records, damage {:?})",
                    image.identity.as_ref().map(|m| m.id),
                    image.hard_state,
                    image.snapshot.last,
                    image.entries.len(),
                    recovery.records,
                    recovery.damage
                )
            });
            Core::restore(config, core_seed, now, image)
        } else {
            Core::new(config, core_seed, now)
        };
        let core = match core {
            Ok(core) => core,
            Err(e) => self.fail(i, format!("the configuration was refused: {e}")),
        };
        if let Err(what) = self.checker.restarted(i, incarnation, &core, restored) {
            self.fail(i, what);
        }
        self.nodes[i].core = Some(core);
        self.trace.record(self.now, "start", i, incarnation, || {
            format!("incarnation {incarnation} seeds {seeds:?}")
        });
        self.drain(i);
    }

    /// Crashes slot `i`: its process and data are gone.
    pub fn crash(&mut self, i: usize) {
        self.stop(i, Status::Crashed);
    }

    fn stop(&mut self, i: usize, status: Status) {
        let node = &mut self.nodes[i];
        node.core = None;
        node.status = status;
        node.paused = false;
        node.inbox.clear();
        self.clients.lost(i, self.now);
        let tag = if status == Status::Crashed {
            "crash"
        } else {
            "stop"
        };
        self.trace.record(self.now, tag, i, 0, String::new);
    }

    /// Pauses slot `i` for `ms`.
    pub fn pause(&mut self, i: usize, ms: Millis) {
        if self.nodes[i].status != Status::Up || self.nodes[i].paused {
            return;
        }
        self.nodes[i].paused = true;
        self.nodes[i].paused_until = self.now + ms;
        self.trace
            .record(self.now, "pause", i, ms, || format!("for {ms} ms"));
        self.schedule(self.now + ms, Action::Resume { node: i });
    }

    /// Keeps input for paused slot `i`; false (dropped) when its buffer is
    /// full.
    pub(super) fn hold(&mut self, i: usize, held: Held) -> bool {
        let inbox = &mut self.nodes[i].inbox;
        if inbox.len() >= INBOX_MAX {
            return false;
        }
        inbox.push_back(held);
        true
    }

    /// Ends a pause now: the node takes its held input, then runs.
    pub fn resume(&mut self, i: usize) {
        if !self.nodes[i].paused {
            return;
        }
        self.nodes[i].paused = false;
        self.trace.record(self.now, "resume", i, 0, String::new);
        while let Some(held) = self.nodes[i].inbox.pop_front() {
            if self.nodes[i].status != Status::Up {
                break;
            }
            self.count_step();
            match held {
                Held::Datagram {
                    from,
                    bytes,
                    corrupt,
                } => self.handle_datagram(from, i, &bytes, corrupt),
                Held::Stream { from, bytes } => self.handle_stream(from, i, &bytes),
                Held::Snapshot { snapshot } => self.handle_snapshot(i, *snapshot),
                Held::Command { id } => self.deliver_request(id),
            }
        }
    }

    /// What the clock of slot `i`'s machine reads now.
    pub fn clock(&self, i: usize) -> Millis {
        self.now + self.nodes[i].clock_offset_ms
    }

    /// The running core at slot `i`.
    pub fn core(&self, i: usize) -> &Core {
        self.nodes[i]
            .core
            .as_ref()
            .unwrap_or_else(|| panic!("n{i} is not running"))
    }

    /// The incarnation slot `i`'s member record carries: the one its
    /// process joined with, which a durable restart keeps.
    pub fn member_incarnation(&self, i: usize) -> u64 {
        self.core(i)
            .identity()
            .map_or(self.nodes[i].incarnation, |m| m.incarnation)
    }

    /// Whether slot `i` runs and is not paused.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].status == Status::Up && !self.nodes[i].paused
    }

    /// Slots with a process.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].status == Status::Up)
            .collect()
    }

    /// The slot of an address.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        let i = usize::from(addr.port().checked_sub(BASE_PORT)?);
        (i < self.nodes.len() && self.nodes[i].addr == addr).then_some(i)
    }

    /// The running leader with the highest term.
    pub fn leader(&self) -> Option<usize> {
        self.up()
            .into_iter()
            .filter(|&i| self.core(i).role() == Role::Leader)
            .max_by_key(|&i| self.core(i).term())
    }

    /// Sends a client request to slot `i`; `None` if no process runs
    /// there. A paused node gets it when it resumes, in order with the
    /// datagrams that arrived before it.
    pub fn command(&mut self, i: usize, op: Op) -> Option<RequestId> {
        if self.nodes[i].status != Status::Up {
            return None;
        }
        let incarnation = self.nodes[i].incarnation;
        let (op, tag) = self.clients.prepare(i, incarnation, op)?;
        let request = Request {
            node: i,
            incarnation,
            op,
            issued_at: self.now,
            acked_before: 0,
            term_at_issue: self.core(i).term(),
            hops: 0,
            history: None,
            rewrites: 0,
            tag,
            origin: (i, incarnation),
        };
        Some(self.send_request(request))
    }

    pub(super) fn send_request(&mut self, request: Request) -> RequestId {
        let i = request.node;
        let id = self.clients.issue(request);
        if self.nodes[i].paused {
            if !self.hold(i, Held::Command { id }) {
                self.clients.undeliverable(id, self.now);
            }
        } else {
            self.count_step();
            self.deliver_request(id);
        }
        id
    }

    fn deliver_request(&mut self, id: RequestId) {
        let Some(request) = self.clients.pending.get(&id) else {
            return;
        };
        let i = request.node;
        let command = request.op.command();
        let tag = request.tag;
        self.trace.record(self.now, "command", i, hash_of(&id), || {
            format!("#{id} {command:?} {tag:?}")
        });
        let now = self.clock(i);
        let core = self.nodes[i].core.as_mut().expect("running");
        match tag {
            Some(tag) => core.handle_session_write(now, id, command, tag),
            None => core.handle_command(now, id, command),
        }
        self.drain(i);
    }

    /// Runs every step due at or before `until`, then sets the clock there.
    pub fn run_until(&mut self, until: Millis) {
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Runs until `done` holds (checked after every step) or `until`;
    /// returns whether it holds.
    pub fn run_until_cond(&mut self, until: Millis, mut done: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                self.now = self.now.max(until);
                return done(self);
            }
        }
    }

    /// Takes the next step due at or before `until`; false if there is none.
    pub fn step(&mut self, until: Millis) -> bool {
        let action_at = self.queue.keys().next().map(|&(at, _)| at);
        let timer = self.next_timer();
        let (at, is_timer) = match (action_at, timer) {
            (Some(a), Some((t, _))) if t < a => (t, true),
            (Some(a), _) => (a, false),
            (None, Some((t, _))) => (t, true),
            (None, None) => return false,
        };
        if at > until {
            return false;
        }
        self.now = self.now.max(at);
        self.count_step();
        if is_timer {
            let i = timer.expect("timer").1;
            self.fire_timer(i);
        } else {
            let (_, action) = self.queue.pop_first().expect("queued");
            self.perform(action);
        }
        true
    }

    pub(super) fn count_step(&mut self) {
        self.steps += 1;
        if self.steps > self.steps_max {
            let msg = format!(
                "more than {} steps: the run does not settle",
                self.steps_max
            );
            self.fail(usize::MAX, msg);
        }
    }

    fn next_timer(&self) -> Option<(Millis, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.paused)
            .filter_map(|(i, n)| {
                let deadline = n.core.as_ref()?.poll_timeout()?;
                Some((deadline.saturating_sub(n.clock_offset_ms), i))
            })
            .min()
    }

    fn fire_timer(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        if node.spins.0 == now {
            node.spins.1 += 1;
            if node.spins.1 > 1_000 {
                self.fail(
                    i,
                    "poll_timeout stays at or before now after handle_timeout".into(),
                );
            }
        } else {
            node.spins = (now, 0);
        }
        self.trace.record(now, "timeout", i, 0, String::new);
        let clock = now + node.clock_offset_ms;
        node.core.as_mut().expect("running").handle_timeout(clock);
        self.drain(i);
    }
    /// Takes everything a handler call produced, routes it, and checks the
    /// node.
    pub(super) fn drain(&mut self, i: usize) {
        // What may leave before the disk write (a leader's appends) leaves
        // first, as the driver sends it: a crash in the middle of the write
        // then finds it already on the network.
        let mut early = Vec::new();
        if self.nodes[i].durable {
            let core = self.nodes[i].core.as_mut().expect("running");
            while let Some(t) = core.poll_transmit() {
                early.push(t);
                if early.len() > OUTPUTS_PER_STEP_MAX {
                    self.fail(i, "one handler call produced an unbounded output".into());
                }
            }
        }
        for t in early {
            self.send(i, t);
        }
        if self.nodes[i].durable && self.persist(i) {
            return;
        }
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        {
            let core = self.nodes[i].core.as_mut().expect("running");
            while let Some(t) = core.poll_transmit() {
                transmits.push(t);
                if transmits.len() > OUTPUTS_PER_STEP_MAX {
                    break;
                }
            }
            while let Some(e) = core.poll_event() {
                events.push(e);
                if events.len() > OUTPUTS_PER_STEP_MAX {
                    break;
                }
            }
        }
        if transmits.len() > OUTPUTS_PER_STEP_MAX || events.len() > OUTPUTS_PER_STEP_MAX {
            self.fail(i, "one handler call produced an unbounded output".into());
        }
        for t in transmits {
            self.send(i, t);
        }
        let mut left = false;
        for event in events {
            left |= event == Event::Left;
            if let Err(what) = self.on_event(i, event) {
                self.fail(i, what);
            }
        }
        let full = self.steps.is_multiple_of(self.full_check_every);
        let core = self.nodes[i].core.as_ref().expect("running");
        let checked = self.checker.after_step(i, core, full);
        if let Err(what) = checked {
            self.fail(i, what);
        }
        // A node that asked to leave stops; one removed without asking
        // keeps running (the core joins again as a new member).
        if left && self.nodes[i].leaving {
            self.stop(i, Status::Left);
            self.departures.push(i);
        }
    }

    /// Writes what durable slot `i` must keep before it sends anything;
    /// true if it crashed in the middle of the write (as asked).
    fn persist(&mut self, i: usize) -> bool {
        let now = self.clock(i);
        // Syncing may commit (a lone voter), which may need writing again.
        for _ in 0..8 {
            let node = &mut self.nodes[i];
            let core = node.core.as_mut().expect("running");
            let mut batch = Vec::new();
            while let Some(change) = core.poll_persist() {
                batch.push(change);
                if batch.len() > OUTPUTS_PER_STEP_MAX {
                    self.fail(i, "one handler call produced an unbounded persist".into());
                }
            }
            if batch.is_empty() {
                return false;
            }
            if node.crash_on_write {
                let mut rng = self.rng.fork();
                let records = batch.len() as u64;
                node.disk.write_torn(batch, &mut rng);
                self.trace
                    .record(self.now, "torn", i, records, || format!("{records} writes"));
                self.crash(i);
                return true;
            }
            node.disk.write(batch, || core.durable_image());
            core.handle_persisted(now);
        }
        self.fail(i, "writes to disk did not settle in 8 rounds".into())
    }

    pub(super) fn on_event(&mut self, i: usize, event: Event) -> Result<(), String> {
        let now = self.now;
        self.trace
            .record(now, "event", i, event_hash(&event), || format!("{event:?}"));
        let incarnation = self.nodes[i].incarnation;
        match event {
            Event::RoleChanged {
                role: Role::Leader,
                term,
            } => {
                let core = self.nodes[i].core.as_ref().expect("running");
                self.checker.leader(term, core, incarnation)
            }
            Event::Applied {
                version,
                term,
                change,
            } => {
                let node_term = self.core(i).term();
                self.checker.applied(i, node_term, version, term, &change)
            }
            Event::SnapshotInstalled { last } => self.checker.snapshot_installed(i, last),
            Event::FetchSnapshot { from } => {
                self.fetch_snapshot(i, from);
                Ok(())
            }
            Event::Done { request, result } => {
                let core = self.nodes[i].core.as_ref().expect("running");
                let after = self.clients.done(
                    i,
                    request,
                    &result,
                    (core.commit(), core.map()),
                    &self.checker.history,
                    now,
                )?;
                match after {
                    After::Nothing => {}
                    After::Retry { leader, request } => match self.index_of(leader) {
                        Some(j) => {
                            let mut request = request;
                            request.node = j;
                            request.hops += 1;
                            let at = now + 1;
                            self.schedule(at, Action::Retry { node: j, request });
                        }
                        None => self.clients.dropped(request, now),
                    },
                    After::Rewrite { request } => {
                        // To the leader when there is one, as a client told
                        // of it would; else where it went before.
                        let j = self.leader().unwrap_or(i);
                        let mut request = request;
                        request.node = j;
                        let at = request.issued_at;
                        self.schedule(at, Action::Retry { node: j, request });
                    }
                }
                Ok(())
            }
            Event::RoleChanged { .. }
            | Event::LeaderChanged { .. }
            | Event::Joined { .. }
            | Event::Left => Ok(()),
        }
    }

    /// A full walk of every running node's log and state.
    pub fn check_all(&mut self) {
        for i in self.up() {
            let core = self.nodes[i].core.as_ref().expect("running");
            if let Err(what) = self.checker.after_step(i, core, true) {
                self.fail(i, what);
            }
        }
        if let Err(what) = self.clients.check_all(&self.checker.history) {
            self.fail(usize::MAX, what);
        }
    }
}
