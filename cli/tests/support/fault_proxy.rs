//! A relay that stands between the nodes of a test cluster: every UDP
//! datagram between two nodes passes through it and may be dropped,
//! duplicated, corrupted or delayed (random delays reorder), while TCP on
//! the same ports is relayed as it is.
//!
//! The nodes listen on their real addresses and advertise an address of
//! the relay, so the others send to the relay. The core answers the UDP
//! *source* address of a datagram in several places (a follower takes the
//! leader's address from its heartbeats, a redirect hands that address on,
//! a snapshot is fetched over TCP from the source of a hint), so the relay
//! is a consistent NAT: each of its sockets is a *face* of one node, its
//! owner, and whatever arrives on a face goes to the owner. A datagram
//! from node `k` to node `i` is delivered to `i` from the face "k as seen
//! by i", owned by `k`: whatever `i` sends back to that address reaches
//! `k`, through the relay again. Each face also accepts TCP on its port and
//! pipes every connection to its owner's real address, so every address a
//! node may learn from a datagram works for TCP too.
//!
//! Two layouts: [`Layout::Shared`], where "k as seen by anyone" is `k`'s
//! advertised face (every node sees the member addresses as sources), and
//! [`Layout::PerPair`], where every ordered pair of nodes has a face of its
//! own (a node sees each peer from an address that is not the peer's
//! member address, as behind a symmetric NAT).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;

/// What the relay does to UDP datagrams; each datagram is decided on its
/// own, each copy of a duplicated one too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is dropped.
    pub drop: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a copy is corrupted (bits flipped, a byte changed,
    /// truncated, or bytes appended) before delivery.
    pub corrupt: f64,
    /// Each copy is held for a random time in this range of milliseconds
    /// (inclusive); copies held for different times overtake each other.
    pub delay_ms: (u64, u64),
    /// Probability that a datagram brings along an old one: a copy of one
    /// of the last [`HISTORY`] datagrams of the same sender to the same
    /// receiver, delivered again (a duplicate delayed for long).
    pub replay: f64,
    /// Probability that a TCP connection (accepted from now on) carries
    /// what the client sends but loses the answer: it is closed when the
    /// first byte of an answer comes back, after the server did the work.
    pub lose_answers: f64,
}

/// Datagrams remembered per link for [`Faults::replay`].
pub const HISTORY: usize = 64;

impl Faults {
    /// Every datagram delivered at once, unchanged.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        corrupt: 0.0,
        delay_ms: (0, 0),
        replay: 0.0,
        lose_answers: 0.0,
    };

    fn check(&self) {
        for (name, p) in [
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
            ("replay", self.replay),
            ("lose_answers", self.lose_answers),
        ] {
            assert!((0.0..=1.0).contains(&p), "{name} probability {p}");
        }
        assert!(self.delay_ms.0 <= self.delay_ms.1, "{:?}", self.delay_ms);
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drop {:.0} %, duplicate {:.0} %, corrupt {:.0} %, delay {}-{} ms",
            self.drop * 100.0,
            self.duplicate * 100.0,
            self.corrupt * 100.0,
            self.delay_ms.0,
            self.delay_ms.1
        )?;
        if self.replay > 0.0 {
            write!(f, ", replay {:.1} %", self.replay * 100.0)?;
        }
        if self.lose_answers > 0.0 {
            write!(f, ", TCP answers lost {:.0} %", self.lose_answers * 100.0)?;
        }
        Ok(())
    }
}

/// Which way a cut-off node's datagrams are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Everything it sends and everything sent to it.
    Both,
    /// Only what it sends: it hears the others, they do not hear it.
    Outbound,
    /// Only what is sent to it: the others hear it, it hears nobody.
    Inbound,
}

/// Which address a node sees another node's datagrams come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// From the sender's advertised address (its member address).
    Shared,
    /// From a face for that pair alone.
    PerPair,
}

/// What the relay did, counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received from a node.
    pub received: u64,
    /// Of those, dropped.
    pub dropped: u64,
    /// Of those, dropped because their sender or receiver was cut off.
    pub cut: u64,
    /// Old datagrams delivered again.
    pub replayed: u64,
    /// Of those, delivered twice.
    pub duplicated: u64,
    /// Copies corrupted.
    pub corrupted: u64,
    /// Copies held back before delivery.
    pub delayed: u64,
    /// Copies delivered after a later datagram of the same sender to the
    /// same receiver.
    pub reordered: u64,
    /// Copies delivered.
    pub delivered: u64,
    /// Datagrams from an address that is no node's, ignored.
    pub unknown_source: u64,
    /// Copies the relay failed to send.
    pub send_errors: u64,
    /// TCP connections relayed.
    pub tcp_connections: u64,
    /// Of those, closed when the answer came back.
    pub answers_lost: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {}, dropped {}, cut {}, duplicated {}, corrupted {}, delayed {}, \
             reordered {}, replayed {}, delivered {}, unknown source {}, send errors {}, \
             tcp connections {}, answers lost {}",
            self.received,
            self.dropped,
            self.cut,
            self.duplicated,
            self.corrupted,
            self.delayed,
            self.reordered,
            self.replayed,
            self.delivered,
            self.unknown_source,
            self.send_errors,
            self.tcp_connections,
            self.answers_lost
        )
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dropped: AtomicU64,
    cut: AtomicU64,
    replayed: AtomicU64,
    duplicated: AtomicU64,
    corrupted: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
    delivered: AtomicU64,
    unknown_source: AtomicU64,
    send_errors: AtomicU64,
    tcp_connections: AtomicU64,
    answers_lost: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The relay's sockets, bound but not yet relaying: bind them before
/// picking the nodes' real ports, so that no node is given a port of the
/// relay.
pub struct Faces {
    nodes: usize,
    layout: Layout,
    /// Face index of "sender as seen by receiver": `via[sender][receiver]`.
    via: Vec<Vec<usize>>,
    /// The owner of each face.
    owners: Vec<usize>,
    sockets: Vec<(StdUdpSocket, StdTcpListener)>,
}

impl Faces {
    /// Binds the faces for `nodes` nodes on 127.0.0.1: one advertised face
    /// a node, and with [`Layout::PerPair`] one for every ordered pair.
    pub fn bind(nodes: usize, layout: Layout) -> Faces {
        let mut owners: Vec<usize> = (0..nodes).collect();
        let via = (0..nodes)
            .map(|sender| {
                (0..nodes)
                    .map(|_receiver| match layout {
                        Layout::Shared => sender,
                        Layout::PerPair => {
                            owners.push(sender);
                            owners.len() - 1
                        }
                    })
                    .collect()
            })
            .collect();
        let sockets = owners.iter().map(|_| bind_face()).collect();
        Faces {
            nodes,
            layout,
            via,
            owners,
            sockets,
        }
    }

    /// The address node `i` advertises: the relay's face for it.
    pub fn advertised(&self, i: usize) -> SocketAddr {
        self.sockets[i].0.local_addr().expect("face address")
    }

    /// Starts relaying to the nodes at `reals` (their listen addresses, in
    /// node order), deciding faults with a generator seeded with `seed`.
    /// Faults are off until [`Relay::set_faults`].
    pub fn start(self, reals: &[SocketAddr], seed: u64) -> Relay {
        assert_eq!(reals.len(), self.nodes, "one real address a node");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("build the relay's runtime");
        let _entered = runtime.enter();
        let addrs: Vec<SocketAddr> = self
            .sockets
            .iter()
            .map(|(udp, _)| udp.local_addr().expect("face address"))
            .collect();
        let mut udps = Vec::new();
        let mut tcps = Vec::new();
        for (udp, tcp) in self.sockets {
            udp.set_nonblocking(true).expect("nonblocking udp");
            tcp.set_nonblocking(true).expect("nonblocking tcp");
            udps.push(Arc::new(
                UdpSocket::from_std(udp).expect("register a udp face"),
            ));
            tcps.push(TcpListener::from_std(tcp).expect("register a tcp face"));
        }
        let links = self.nodes * self.nodes;
        let shared = Arc::new(Shared {
            reals: reals.to_vec(),
            owners: self.owners,
            via: self.via,
            sockets: udps,
            faults: Mutex::new(Faults::NONE),
            cut_off: Mutex::new(None),
            history: Mutex::new(vec![VecDeque::new(); links]),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            order: Mutex::new(vec![Order::default(); links]),
            counters: Counters::default(),
            corrupted_to: (0..self.nodes).map(|_| AtomicU64::new(0)).collect(),
        });
        for (face, tcp) in tcps.into_iter().enumerate() {
            tokio::spawn(serve_udp(shared.clone(), face));
            let owner = shared.reals[shared.owners[face]];
            tokio::spawn(serve_tcp(shared.clone(), tcp, owner));
        }
        Relay {
            runtime: Some(runtime),
            shared,
            layout: self.layout,
            addrs,
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_face() -> (StdUdpSocket, StdTcpListener) {
    for _ in 0..100 {
        let udp = StdUdpSocket::bind("127.0.0.1:0").expect("bind a udp face");
        let addr = udp.local_addr().expect("face address");
        if let Ok(tcp) = StdTcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// The order of delivery on one link (sender, receiver): sequence numbers
/// given on arrival, the highest delivered so far.
#[derive(Debug, Clone, Copy, Default)]
struct Order {
    next: u64,
    delivered_max: Option<u64>,
}

struct Shared {
    reals: Vec<SocketAddr>,
    owners: Vec<usize>,
    via: Vec<Vec<usize>>,
    sockets: Vec<Arc<UdpSocket>>,
    faults: Mutex<Faults>,
    /// A node whose datagrams, both ways, are all dropped.
    cut_off: Mutex<Option<(usize, Cut)>>,
    /// The last datagrams of each link, for replays.
    history: Mutex<Vec<VecDeque<Vec<u8>>>>,
    rng: Mutex<StdRng>,
    order: Mutex<Vec<Order>>,
    counters: Counters,
    corrupted_to: Vec<AtomicU64>,
}

/// A copy to deliver: its bytes and where it stands on its link.
struct Copy {
    sender: usize,
    receiver: usize,
    seq: u64,
    bytes: Vec<u8>,
}

impl Shared {
    /// Decides the fate of one datagram from `sender` to `receiver`.
    fn relay(self: &Arc<Self>, sender: usize, receiver: usize, bytes: &[u8]) {
        bump(&self.counters.received);
        let cut_off = *self.cut_off.lock().expect("cut-off lock");
        let cut = cut_off.is_some_and(|(node, cut)| match cut {
            Cut::Both => node == sender || node == receiver,
            Cut::Outbound => node == sender,
            Cut::Inbound => node == receiver,
        });
        if cut {
            bump(&self.counters.cut);
            return;
        }
        let faults = *self.faults.lock().expect("faults lock");
        let link = sender * self.reals.len() + receiver;
        let seq = {
            let mut order = self.order.lock().expect("order lock");
            order[link].next += 1;
            order[link].next
        };
        let mut copies = Vec::new();
        {
            let mut rng = self.rng.lock().expect("rng lock");
            if faults.replay > 0.0 {
                let mut history = self.history.lock().expect("history lock");
                let past = &mut history[link];
                if !past.is_empty() && rng.gen_bool(faults.replay) {
                    let old = past[rng.gen_range(0..past.len())].clone();
                    bump(&self.counters.replayed);
                    copies.push((0, old));
                }
                if past.len() == HISTORY {
                    past.pop_front();
                }
                past.push_back(bytes.to_vec());
            }
            if rng.gen_bool(faults.drop) {
                bump(&self.counters.dropped);
            } else {
                self.decide_copies(faults, receiver, bytes, &mut rng, &mut copies);
            }
        }
        for (delay, bytes) in copies {
            let copy = Copy {
                sender,
                receiver,
                seq,
                bytes,
            };
            if delay == 0 {
                self.deliver(copy);
            } else {
                bump(&self.counters.delayed);
                let shared = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    shared.deliver(copy);
                });
            }
        }
    }

    /// The copies of a datagram that is not dropped: one or two, each
    /// maybe corrupted, each with its delay.
    fn decide_copies(
        &self,
        faults: Faults,
        receiver: usize,
        bytes: &[u8],
        rng: &mut StdRng,
        copies: &mut Vec<(u64, Vec<u8>)>,
    ) {
        let count = if rng.gen_bool(faults.duplicate) {
            bump(&self.counters.duplicated);
            2
        } else {
            1
        };
        for _ in 0..count {
            let mut copy = bytes.to_vec();
            if rng.gen_bool(faults.corrupt) {
                corrupt(&mut copy, rng);
                bump(&self.counters.corrupted);
                bump(&self.corrupted_to[receiver]);
            }
            let delay = rng.gen_range(faults.delay_ms.0..=faults.delay_ms.1);
            copies.push((delay, copy));
        }
    }

    /// Sends a copy to its receiver from the face "sender as seen by
    /// receiver".
    fn deliver(&self, copy: Copy) {
        let link = copy.sender * self.reals.len() + copy.receiver;
        {
            let mut order = self.order.lock().expect("order lock");
            let max = &mut order[link].delivered_max;
            if max.is_some_and(|max| copy.seq < max) {
                bump(&self.counters.reordered);
            } else {
                *max = Some(copy.seq);
            }
        }
        let face = &self.sockets[self.via[copy.sender][copy.receiver]];
        match face.try_send_to(&copy.bytes, self.reals[copy.receiver]) {
            Ok(_) => bump(&self.counters.delivered),
            Err(_) => bump(&self.counters.send_errors),
        }
    }
}

/// Damages a datagram in one of four ways, each of which a CRC-32 over the
/// frame detects (or the frame's own length fields do).
fn corrupt(bytes: &mut Vec<u8>, rng: &mut StdRng) {
    if bytes.is_empty() {
        bytes.push(rng.gen());
        return;
    }
    match rng.gen_range(0..4) {
        // Up to three bits flipped, in distinct bytes.
        0 => {
            let flips = rng.gen_range(1..=3.min(bytes.len()));
            let start = rng.gen_range(0..bytes.len());
            for k in 0..flips {
                let at = (start + k * (bytes.len() / flips).max(1)) % bytes.len();
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        // One byte replaced by another value.
        1 => {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= rng.gen_range(1..=255u8);
        }
        // Cut short.
        2 => bytes.truncate(rng.gen_range(0..bytes.len())),
        // Garbage appended.
        _ => {
            for _ in 0..rng.gen_range(1..=8) {
                bytes.push(rng.gen());
            }
        }
    }
}

/// Receives on one face: what comes from a node goes to the face's owner.
async fn serve_udp(shared: Arc<Shared>, face: usize) {
    let socket = shared.sockets[face].clone();
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => match shared.reals.iter().position(|r| *r == from) {
                Some(sender) => shared.relay(sender, shared.owners[face], &buf[..len]),
                None => bump(&shared.counters.unknown_source),
            },
            // ICMP errors of earlier sends may surface here; keep going.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Accepts TCP on one face and pipes each connection to `owner`, as it is.
async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, owner: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        bump(&shared.counters.tcp_connections);
        let lose_answer = {
            let p = shared.faults.lock().expect("faults lock").lose_answers;
            p > 0.0 && shared.rng.lock().expect("rng lock").gen_bool(p)
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(owner).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            if lose_answer {
                if lose_the_answer(inbound, outbound).await {
                    bump(&shared.counters.answers_lost);
                }
            } else {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Carries what the client sends, and closes both connections when the
/// first byte of an answer comes back; says whether an answer came.
async fn lose_the_answer(inbound: TcpStream, outbound: TcpStream) -> bool {
    let (mut client_reads, _client_writes) = inbound.into_split();
    let (mut server_reads, mut server_writes) = outbound.into_split();
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = tokio::io::copy(&mut client_reads, &mut server_writes) => false,
        read = server_reads.read(&mut byte) => matches!(read, Ok(n) if n > 0),
    }
}

/// A running relay; dropping it closes every face and connection.
pub struct Relay {
    runtime: Option<Runtime>,
    shared: Arc<Shared>,
    layout: Layout,
    addrs: Vec<SocketAddr>,
}

impl Relay {
    /// The address node `i` advertises.
    pub fn advertised(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// The layout of the faces.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The node an address stands for: the owner of a face, or the node
    /// listening there.
    pub fn owner_of(&self, addr: &str) -> Option<usize> {
        let addr: SocketAddr = addr.parse().ok()?;
        if let Some(face) = self.addrs.iter().position(|a| *a == addr) {
            return Some(self.shared.owners[face]);
        }
        self.shared.reals.iter().position(|r| *r == addr)
    }

    /// Changes the faults from the next datagram on (copies already held
    /// back are still delivered when their time comes).
    pub fn set_faults(&self, faults: Faults) {
        faults.check();
        *self.shared.faults.lock().expect("faults lock") = faults;
    }

    /// Cuts node `i` off, one way or both (its datagrams dropped, TCP left
    /// alone), or with `None` lets everyone through again.
    pub fn cut_off(&self, node: Option<(usize, Cut)>) {
        *self.shared.cut_off.lock().expect("cut-off lock") = node;
    }

    /// What the relay did so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            received: get(&c.received),
            dropped: get(&c.dropped),
            cut: get(&c.cut),
            replayed: get(&c.replayed),
            duplicated: get(&c.duplicated),
            corrupted: get(&c.corrupted),
            delayed: get(&c.delayed),
            reordered: get(&c.reordered),
            delivered: get(&c.delivered),
            unknown_source: get(&c.unknown_source),
            send_errors: get(&c.send_errors),
            tcp_connections: get(&c.tcp_connections),
            answers_lost: get(&c.answers_lost),
        }
    }

    /// Corrupted copies sent to node `i` so far.
    pub fn corrupted_to(&self, i: usize) -> u64 {
        self.shared.corrupted_to[i].load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
