//! The protocol core alone: three cores on a perfect in-memory network (no
//! loss, in order, no I/O, a virtual clock), so what is measured is the
//! state machine's own cost per proposal: encode, decode, log, commit,
//! apply, answer.
//!
//! - `commit_sequential`: one write at a time, each delivered until the
//!   leader answers that it committed.
//! - `commit_batch_64`: 64 writes proposed at once, then delivered until all
//!   committed: concurrent proposals share append rounds.
//! - `heartbeat_round`: one idle heartbeat round (the leader's heartbeats
//!   and the followers' answers).
//!
//! `cargo bench --bench core_sim` reports proposals (elements) per second;
//! `-- --test` runs each benchmark once as a smoke test.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use simple_raft::core::{Command, Core, CoreConfig, Event, Millis, Role, Transmit};

/// Writes cycle through this many keys, so the map stays the same size
/// however many iterations criterion asks for.
const KEYS: u64 = 1024;
/// A value of realistic size: a hash, an address with a port.
const VALUE: &str = "0123456789abcdef0123456789abcdef";
const NODES: usize = 3;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001 + i as u16))
}

fn index_of(addr: SocketAddr) -> usize {
    usize::from(addr.port() - 7001)
}

/// Cores that hand each other every frame at once, in order.
struct Net {
    cores: Vec<Core>,
    now: Millis,
    queue: VecDeque<(usize, Transmit)>,
    next_request: u64,
    committed: u64,
    failed: u64,
}

impl Net {
    /// Node 0 founds the cluster; the others join through it and are
    /// promoted, on the virtual clock.
    fn cluster() -> Net {
        let mut net = Net {
            cores: Vec::new(),
            now: 0,
            queue: VecDeque::new(),
            next_request: 1,
            committed: 0,
            failed: 0,
        };
        for i in 0..NODES {
            let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
            let config = CoreConfig::new(addr(i), seeds, 1);
            let core = Core::new(config, 7 * i as u64 + 1, net.now).expect("a valid config");
            net.cores.push(core);
            net.drain(i);
        }
        net.run(3_000);
        let voters = net.cores[0].members().iter().filter(|m| m.voter).count();
        assert_eq!(voters, NODES, "every node is a voter");
        assert_eq!(net.cores[0].role(), Role::Leader);
        net
    }

    /// Takes everything core `i` has to say; fetches snapshots at once.
    fn drain(&mut self, i: usize) {
        let mut fetches = Vec::new();
        let core = &mut self.cores[i];
        while core.poll_persist().is_some() {}
        while let Some(transmit) = core.poll_transmit() {
            self.queue.push_back((i, transmit));
        }
        while let Some(event) = core.poll_event() {
            match event {
                Event::Done { result: Ok(_), .. } => self.committed += 1,
                Event::Done { result: Err(_), .. } => self.failed += 1,
                Event::FetchSnapshot { from } => fetches.push(index_of(from)),
                _ => {}
            }
        }
        for from in fetches {
            let snapshot = self.cores[from].snapshot();
            let now = self.now;
            self.cores[i].handle_snapshot(now, snapshot);
            self.drain(i);
        }
    }

    /// Delivers until no frame is left.
    fn deliver(&mut self) {
        while let Some((from, transmit)) = self.queue.pop_front() {
            let to = index_of(transmit.to);
            let now = self.now;
            if transmit.stream {
                self.cores[to].handle_stream_frame(now, addr(from), &transmit.bytes);
            } else {
                self.cores[to].handle_datagram(now, addr(from), &transmit.bytes);
            }
            self.drain(to);
        }
    }

    /// Runs `ms` of virtual time: delivers, then fires the next timers.
    fn run(&mut self, ms: Millis) {
        let end = self.now + ms;
        // Bounded: every turn either fires a timer (moving time forward) or
        // reaches the end.
        loop {
            self.deliver();
            let next = self.cores.iter().filter_map(Core::poll_timeout).min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    for i in 0..self.cores.len() {
                        let now = self.now;
                        if self.cores[i].poll_timeout().is_some_and(|t| t <= now) {
                            self.cores[i].handle_timeout(now);
                            self.drain(i);
                        }
                    }
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    /// Proposes one write on the leader (node 0).
    fn propose(&mut self) {
        let request = self.next_request;
        self.next_request += 1;
        let command = Command::Set {
            key: format!("bench/{:04}", request % KEYS),
            value: VALUE.to_string(),
        };
        let now = self.now;
        self.cores[0].handle_command(now, request, command);
        self.drain(0);
    }

    /// Proposes `n` writes at once and delivers until all have committed.
    fn commit(&mut self, n: u64) {
        let target = self.committed + n;
        for _ in 0..n {
            self.propose();
        }
        self.deliver();
        assert_eq!(self.failed, 0, "no write fails on a perfect network");
        assert_eq!(self.committed, target, "every write committed");
    }

    /// One heartbeat round: time moves to the leader's next deadline.
    fn heartbeat_round(&mut self) {
        let Some(at) = self.cores[0].poll_timeout() else {
            return;
        };
        self.now = self.now.max(at);
        let now = self.now;
        self.cores[0].handle_timeout(now);
        self.drain(0);
        self.deliver();
    }
}

fn core_sim(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_sim");
    for batch in [1u64, 64] {
        let name = if batch == 1 {
            "commit_sequential".to_string()
        } else {
            format!("commit_batch_{batch}")
        };
        let mut net = Net::cluster();
        group.throughput(Throughput::Elements(batch));
        group.bench_function(name, |b| b.iter(|| net.commit(black_box(batch))));
    }
    let mut net = Net::cluster();
    group.throughput(Throughput::Elements(1));
    group.bench_function("heartbeat_round", |b| b.iter(|| net.heartbeat_round()));
    assert_eq!(net.cores[0].role(), Role::Leader, "the leader kept leading");
    group.finish();
}

criterion_group!(benches, core_sim);
criterion_main!(benches);
