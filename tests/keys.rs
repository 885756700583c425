//! Cluster keys in the protocol core (on an in-memory network) and in
//! running nodes (on 127.0.0.1): replayed frames change nothing, a node
//! with the wrong key or none cannot join, vote or write, a TCP write
//! cannot be replayed, and keys rotate under a stream of writes without a
//! failure.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use simple_raft::core::{
    Command, Core, CoreConfig, Event, Millis, RequestError, RequestId, Role, Transmit,
};
use simple_raft::wire::{
    decode_frame_keyed, encode_stream_frame_signed, Append, Change, ClientFailure, ClientOp,
    ClientReply, ClientRequest, DecodeLimits, DecodeReason, Entry, Frame, Heartbeat, Keyring, Kind,
    LogId, Member, Message, NodeId, VoteRequest, WriteTag,
};
use simple_raft::{Client, Config, Error, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: [u8; 32] = [0x5a; 32];
const WRONG: [u8; 32] = [0xa5; 32];
const NEW: [u8; 32] = [0x3c; 32];

// ----- the core on an in-memory network -----

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7101 + i as u16))
}

fn index_of(a: SocketAddr) -> usize {
    (a.port() - 7101) as usize
}

/// Cores on a perfect network: everything arrives at once, in order. Every
/// frame sent is recorded.
struct Net {
    nodes: Vec<Core>,
    now: Millis,
    queue: VecDeque<(SocketAddr, Transmit)>,
    done: BTreeMap<RequestId, Result<u64, RequestError>>,
    recorded: Vec<(SocketAddr, Transmit)>,
    /// Nodes cut off: nothing they send or are sent arrives.
    cut: BTreeSet<usize>,
}

/// What must not change: the replicated state and the election state.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    term: u64,
    role: Role,
    leader: Option<SocketAddr>,
    commit: u64,
    last: LogId,
    map: BTreeMap<String, String>,
    members: Vec<Member>,
}

impl Net {
    fn new() -> Net {
        Net {
            nodes: Vec::new(),
            now: 0,
            queue: VecDeque::new(),
            done: BTreeMap::new(),
            recorded: Vec::new(),
            cut: BTreeSet::new(),
        }
    }

    fn start(&mut self, seeds: Vec<SocketAddr>, keyring: Option<Keyring>) -> usize {
        let i = self.nodes.len();
        let mut cfg = CoreConfig::new(addr(i), seeds, 1);
        cfg.heartbeat_ms = 50;
        cfg.leader_timeout_ms = 300;
        cfg.election_timeout_ms = 300;
        cfg.member_silence_ms = None;
        cfg.keyring = keyring;
        self.nodes
            .push(Core::new(cfg, 11 + i as u64, self.now).unwrap());
        self.drain(i);
        i
    }

    fn drain(&mut self, i: usize) {
        let mut fetches = Vec::new();
        let core = &mut self.nodes[i];
        while core.poll_persist().is_some() {}
        while let Some(t) = core.poll_transmit() {
            self.recorded.push((addr(i), t.clone()));
            self.queue.push_back((addr(i), t));
        }
        while let Some(event) = core.poll_event() {
            match event {
                Event::Done { request, result } => {
                    self.done.insert(request, result);
                }
                Event::FetchSnapshot { from } => fetches.push(from),
                _ => {}
            }
        }
        for from in fetches {
            let snapshot = self.nodes[index_of(from)].snapshot();
            let now = self.now;
            self.nodes[i].handle_snapshot(now, snapshot);
            self.drain(i);
        }
    }

    fn deliver(&mut self, from: SocketAddr, t: &Transmit) {
        let to = index_of(t.to);
        let now = self.now;
        let Some(core) = self.nodes.get_mut(to) else {
            return;
        };
        if t.stream {
            core.handle_stream_frame(now, from, &t.bytes);
        } else {
            core.handle_datagram(now, from, &t.bytes);
        }
        self.drain(to);
    }

    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            while let Some((from, t)) = self.queue.pop_front() {
                if !self.cut.contains(&index_of(from)) && !self.cut.contains(&index_of(t.to)) {
                    self.deliver(from, &t);
                }
            }
            let next = self.nodes.iter().filter_map(Core::poll_timeout).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in 0..self.nodes.len() {
                        let now = self.now;
                        if self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                            self.nodes[i].handle_timeout(now);
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

    fn command(&mut self, i: usize, request: RequestId, command: Command) {
        let now = self.now;
        self.nodes[i].handle_command(now, request, command);
        self.drain(i);
        self.run(200);
    }

    fn leader(&self) -> usize {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.cut.contains(i) && self.nodes[*i].role() == Role::Leader)
            .collect();
        assert_eq!(leaders.len(), 1, "one leader");
        leaders[0]
    }

    fn seen(&self, i: usize) -> Seen {
        let core = &self.nodes[i];
        Seen {
            term: core.term(),
            role: core.role(),
            leader: core.leader(),
            commit: core.commit(),
            last: core.last_log_id(),
            map: core
                .map()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            members: core.members(),
        }
    }

    fn decode_errors(&self, i: usize, reason: DecodeReason) -> u64 {
        self.nodes[i].metrics().decode_errors[reason.index()]
    }

    /// Three keyed cores: the first founds, the others join.
    fn keyed_cluster() -> Net {
        let mut net = Net::new();
        let keys = Keyring::new(KEY);
        net.start(vec![], Some(keys.clone()));
        net.start(vec![addr(0)], Some(keys.clone()));
        net.start(vec![addr(0)], Some(keys));
        net.run(3000);
        for i in 0..3 {
            assert!(net.nodes[i].is_member(), "node {i} joined");
            assert_eq!(net.nodes[i].members().len(), 3);
        }
        net
    }
}

fn set(key: &str, value: &str) -> Command {
    Command::Set {
        key: key.into(),
        value: value.into(),
    }
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        cluster_id: Some(0),
        frame_bytes_max: 1 << 26,
    }
}

#[test]
fn replayed_frames_change_nothing() {
    let mut net = Net::keyed_cluster();
    let first = net.leader();
    let write = |net: &mut Net, request: RequestId, command: Command| {
        let leader = net.leader();
        net.command(leader, request, command);
        assert!(
            matches!(net.done.get(&request), Some(Ok(_))),
            "write {request}: {:?}",
            net.done.get(&request)
        );
    };
    write(&mut net, 1, set("color", "blue"));
    write(&mut net, 2, set("size", "large"));
    write(&mut net, 3, Command::Remove { key: "size".into() });
    // A leadership hand-over: old terms, votes and a timeout_now to replay.
    net.command(first, 4, Command::TransferLeadership);
    net.run(2000);
    assert_ne!(net.leader(), first, "leadership moved");
    write(&mut net, 5, set("color", "red"));
    // The leader cut off: a pre-vote and an election without it, and a
    // deposed leader's frames of an old term.
    let cut = net.leader();
    net.cut.insert(cut);
    net.run(3000);
    assert_ne!(net.leader(), cut, "a new leader");
    net.cut.clear();
    net.run(2000);
    write(
        &mut net,
        6,
        Command::Update {
            map: BTreeMap::from([
                ("color".to_string(), "green".to_string()),
                ("shape".to_string(), "round".to_string()),
            ])
            .into(),
        },
    );
    let big = "x".repeat(2000);
    write(&mut net, 7, set("big", &big)); // an append over TCP
    net.run(1000);

    let recorded = std::mem::take(&mut net.recorded);
    let keys = Keyring::new(KEY);
    let kinds: BTreeSet<Kind> = recorded
        .iter()
        .map(|(_, t)| {
            decode_frame_keyed(&t.bytes, &limits(), Some(&keys))
                .expect("the cluster's own frames verify")
                .message
                .kind()
        })
        .collect();
    for kind in [
        Kind::Heartbeat,
        Kind::HeartbeatAck,
        Kind::PreVoteRequest,
        Kind::VoteRequest,
        Kind::VoteResponse,
        Kind::Append,
        Kind::AppendAck,
        Kind::Introduce,
        Kind::Welcome,
        Kind::TimeoutNow,
    ] {
        assert!(kinds.contains(&kind), "recorded no {kind:?}: {kinds:?}");
    }
    assert!(recorded.iter().any(|(_, t)| t.stream), "no TCP frame");

    let before: Vec<Seen> = (0..3).map(|i| net.seen(i)).collect();
    let reversed: Vec<(SocketAddr, Transmit)> = recorded.iter().rev().cloned().collect();
    for (round, frames) in [("in order", &recorded), ("reversed", &reversed)] {
        // Each frame to where it went, then to every node.
        for (from, t) in frames {
            net.deliver(*from, t);
        }
        for (from, t) in frames {
            for to in 0..3 {
                let t = Transmit {
                    to: addr(to),
                    ..t.clone()
                };
                net.deliver(*from, &t);
            }
        }
        // Whatever the nodes answered to the replays arrives too.
        net.run(1000);
        let after: Vec<Seen> = (0..3).map(|i| net.seen(i)).collect();
        assert_eq!(after, before, "replayed {round}");
    }
    for i in 0..3 {
        assert_eq!(net.decode_errors(i, DecodeReason::BadTag), 0);
        assert_eq!(net.nodes[i].map().get("big"), Some(&big));
    }
}

/// A frame as someone with `keys` would send it.
fn forged(
    keys: Option<&Keyring>,
    generation: Option<u64>,
    sender: u32,
    term: u64,
    message: Message,
) -> Transmit {
    let frame = Frame::new(0, NodeId(sender), term, message).with_generation(generation);
    let mut out = BytesMut::new();
    frame.encode_signed(&mut out, 1 << 20, keys).unwrap();
    Transmit {
        to: addr(0),
        bytes: out.freeze(),
        stream: false,
    }
}

/// A hand-over's vote request one term above `last` (the one frame of a
/// later term a follower of a live leader takes), a leader's append at a
/// high term that sets `evil`, a vote request at a high term, and a
/// heartbeat claiming leadership.
fn disruptive_frames(
    keys: Option<&Keyring>,
    generation: Option<u64>,
    sender: u32,
    last: LogId,
) -> Vec<Transmit> {
    let term = last.term + 100;
    vec![
        forged(
            keys,
            generation,
            sender,
            last.term + 1,
            Message::VoteRequest(VoteRequest {
                last,
                transfer: true,
            }),
        ),
        forged(
            keys,
            generation,
            sender,
            term,
            Message::Append(Append {
                prev: last,
                commit: last.version + 1,
                seq: 1,
                entries: vec![Entry {
                    term,
                    change: Change::Set {
                        key: "evil".into(),
                        value: "yes".into(),
                    },
                }],
            }),
        ),
        forged(
            keys,
            generation,
            sender,
            term + 1,
            Message::VoteRequest(VoteRequest {
                last: LogId {
                    term: term + 1,
                    version: last.version + 10,
                },
                transfer: true,
            }),
        ),
        forged(
            keys,
            generation,
            sender,
            term + 2,
            Message::Heartbeat(Heartbeat {
                last,
                commit: last.version,
                seq: 1,
            }),
        ),
    ]
}

#[test]
fn a_core_with_the_wrong_key_or_none_cannot_join_vote_or_write() {
    let mut net = Net::keyed_cluster();
    net.command(net.leader(), 1, set("color", "blue"));
    let wrong = net.start(vec![addr(0), addr(1)], Some(Keyring::new(WRONG)));
    let unkeyed = net.start(vec![addr(0), addr(1)], None);
    net.run(3000);
    for i in [wrong, unkeyed] {
        assert!(!net.nodes[i].is_member(), "node {i} must not join");
        assert_eq!(net.nodes[i].id(), None);
    }
    let members = net.nodes[0].members();
    assert_eq!(members.len(), 3, "{members:?}");
    let refused = |net: &Net, reason| (0..3).map(|i| net.decode_errors(i, reason)).sum::<u64>();
    assert!(refused(&net, DecodeReason::BadTag) > 0);
    assert!(refused(&net, DecodeReason::MissingTag) > 0);

    // A member whose key goes wrong: it stands for election, alone.
    let before: Vec<Seen> = (0..3).map(|i| net.seen(i)).collect();
    let outcast = (0..3).find(|i| *i != net.leader()).unwrap();
    net.nodes[outcast].set_keyring(Some(Keyring::new(WRONG)));
    net.run(5000);
    assert_ne!(net.nodes[outcast].role(), Role::Leader);
    assert_eq!(net.nodes[outcast].leader(), None, "it hears no leader");
    for i in (0..3).filter(|i| *i != outcast) {
        let mut after = net.seen(i);
        // Only the outcast's progress differs; the state does not.
        assert_eq!(after.term, before[i].term, "node {i}");
        assert_eq!(after.leader, before[i].leader, "node {i}");
        assert_eq!(after.map, before[i].map, "node {i}");
        assert_eq!(after.members, before[i].members, "node {i}");
        after.role = before[i].role;
        assert_eq!(after, before[i], "node {i}");
    }

    // Frames that would take the cluster over, with the wrong key and with
    // none: nothing happens.
    let last = net.nodes[0].last_log_id();
    let leader_id = net.nodes[net.leader()].id().unwrap().0;
    // Even with the cluster's generation, as a recorded frame shows it.
    let generation = net.nodes[net.leader()].generation();
    let before: Vec<Seen> = (0..3)
        .filter(|i| *i != outcast)
        .map(|i| net.seen(i))
        .collect();
    for keys in [Some(Keyring::new(WRONG)), None] {
        for t in disruptive_frames(keys.as_ref(), generation, leader_id, last) {
            for to in (0..3).filter(|i| *i != outcast) {
                let t = Transmit {
                    to: addr(to),
                    ..t.clone()
                };
                net.deliver(addr(outcast), &t);
            }
        }
    }
    net.run(1000);
    let after: Vec<Seen> = (0..3)
        .filter(|i| *i != outcast)
        .map(|i| net.seen(i))
        .collect();
    assert_eq!(after, before);
    assert!(net.nodes[0].map().get("evil").is_none());

    // The same frames with the cluster's key do take it over: the test
    // above is not vacuous.
    let target = (0..3).find(|i| *i != outcast).unwrap();
    let t = &disruptive_frames(Some(&Keyring::new(KEY)), generation, leader_id, last)[0];
    let t = Transmit {
        to: addr(target),
        ..t.clone()
    };
    net.deliver(addr(outcast), &t);
    assert!(net.nodes[target].term() > before[0].term);
}

// ----- running nodes on 127.0.0.1 -----

const WAIT: Duration = Duration::from_secs(10);

fn config(join: Vec<SocketAddr>, keys: &Keyring) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), join);
    config.heartbeat_ms = 20;
    config.leader_timeout_ms = 150;
    config.election_timeout_ms = 150;
    config.member_silence_ms = Some(5_000);
    config.cluster_keys = Some(keys.clone());
    config
}

/// Three keyed nodes, each a voter before the next starts.
async fn keyed_nodes(keys: &Keyring) -> Vec<Node> {
    let first = Node::start(config(vec![], keys)).await.unwrap();
    let seed = first.addr();
    let mut nodes = vec![first];
    for i in 1..3 {
        let node = Node::start(config(vec![seed], keys)).await.unwrap();
        node.wait_for(WAIT, |s| {
            s.members.len() == i + 1 && s.members.iter().all(|m| m.voter)
        })
        .await
        .unwrap_or_else(|e| panic!("node {i} did not become a voter: {e}"));
        nodes.push(node);
    }
    for node in &nodes {
        node.wait_for(WAIT, |s| s.members.len() == 3 && s.leader.is_some())
            .await
            .unwrap();
    }
    nodes
}

/// Sends one client request frame with `request_id` (and `tag`, for a
/// session write) over TCP, as a recording would be sent again; returns the
/// answer.
async fn send_raw(
    node: SocketAddr,
    keys: &Keyring,
    request_id: u64,
    op: ClientOp,
    tag: Option<WriteTag>,
) -> ClientReply {
    let frame = Frame::new(
        0,
        NodeId::UNASSIGNED,
        0,
        Message::ClientRequest(ClientRequest {
            request_id,
            op,
            tag,
        }),
    );
    let mut out = BytesMut::new();
    encode_stream_frame_signed(&frame, &mut out, 1 << 20, Some(keys)).unwrap();
    let mut stream = TcpStream::connect(node).await.unwrap();
    stream.write_all(&out).await.unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.unwrap();
    match decode_frame_keyed(&body, &limits(), Some(keys))
        .unwrap()
        .message
    {
        Message::ClientResponse(response) => {
            assert_eq!(response.request_id, request_id);
            response.reply
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_the_key_cannot_write_and_a_replayed_write_applies_nothing() {
    let keys = Keyring::new(KEY);
    let nodes = keyed_nodes(&keys).await;
    let a = nodes[0].addr();
    let version = nodes[1].set("color", "blue").await.unwrap();
    for node in &nodes {
        node.wait_for(WAIT, |s| s.version >= version).await.unwrap();
    }

    let quick = |keys: Option<Keyring>| {
        Client::new(a, 0)
            .with_keys(keys)
            .with_timeout(Duration::from_secs(2))
    };
    let op = || ClientOp::Set {
        key: "color".into(),
        value: "red".into(),
    };
    for keys in [None, Some(Keyring::new(WRONG))] {
        // The node closes the connection without a word: to the client
        // the request went out and got no answer.
        let refused = quick(keys.clone()).write(op()).await;
        assert!(
            matches!(refused, Err(Error::NoAnswer { .. })),
            "{keys:?}: {refused:?}"
        );
    }
    let metrics = nodes[0].metrics().await.unwrap();
    let errors: BTreeMap<&str, u64> = metrics.decode_errors().into_iter().collect();
    assert_eq!(errors.get("missing_tag"), Some(&1), "{errors:?}");
    assert_eq!(errors.get("bad_tag"), Some(&1), "{errors:?}");
    assert_eq!(
        nodes[2].get("color").await.unwrap().as_deref(),
        Some("blue")
    );
    assert_eq!(nodes[0].status().version, version);

    // A write with the key carries its session request: the same frame
    // sent again, to any node and after a newer write, applies nothing and
    // gets the first answer. Request ids carry no time: a client whose
    // clock is a day off writes as well as any.
    const SESSION: u64 = 0x5e55_1011;
    let opened = send_raw(a, &keys, 1, ClientOp::OpenSession { id: SESSION }, None).await;
    assert!(matches!(opened, ClientReply::Written { .. }), "{opened:?}");
    let tag = |seq, floor| {
        Some(WriteTag {
            session: SESSION,
            seq,
            floor,
        })
    };
    let first = send_raw(a, &keys, 2, op(), tag(1, 1)).await;
    let ClientReply::Written { version: red } = first else {
        panic!("{first:?}");
    };
    nodes[1].set("color", "green").await.unwrap();
    for node in &nodes {
        let again = send_raw(node.addr(), &keys, 2, op(), tag(1, 1)).await;
        assert_eq!(again, ClientReply::Written { version: red });
    }
    // Once the client has moved its floor past it, a copy is refused as
    // expired, and still applies nothing.
    let later = send_raw(
        a,
        &keys,
        u64::MAX,
        ClientOp::Set {
            key: "size".into(),
            value: "9".into(),
        },
        tag(2, 2),
    )
    .await;
    assert!(matches!(later, ClientReply::Written { .. }), "{later:?}");
    let expired = send_raw(a, &keys, 2, op(), tag(1, 1)).await;
    assert!(
        matches!(
            &expired,
            ClientReply::Failed {
                failure: ClientFailure::SessionExpired,
                ..
            }
        ),
        "{expired:?}"
    );
    // A write without a session could apply again each time it is sent:
    // a keyed cluster refuses it.
    let untagged = send_raw(a, &keys, 3, op(), None).await;
    assert!(
        matches!(
            &untagged,
            ClientReply::Failed { failure: ClientFailure::Invalid, message } if message.contains("session")
        ),
        "{untagged:?}"
    );
    // Reads are served whenever they come.
    let read = send_raw(
        a,
        &keys,
        3,
        ClientOp::Get {
            key: Some("color".into()),
            linearizable: false,
        },
        None,
    )
    .await;
    assert!(matches!(read, ClientReply::Value { .. }), "{read:?}");
    let last = nodes[1].set("shape", "round").await.unwrap();
    for node in &nodes {
        node.wait_for(WAIT, |s| s.version >= last).await.unwrap();
        assert_eq!(node.get("color").await.unwrap().as_deref(), Some("green"));
    }
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_on_running_nodes_without_a_failed_write() {
    let old = Keyring::new(KEY);
    let nodes = Arc::new(keyed_nodes(&old).await);
    let client_keys = Arc::new(std::sync::Mutex::new(old.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3 {
        let nodes = nodes.clone();
        let (stop, written, client_keys) = (stop.clone(), written.clone(), client_keys.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Through the node's handle (forwarded to the leader over
                // TCP) and through a client, in turn.
                let result = if i.is_multiple_of(2) {
                    nodes[w].set(format!("w{w}"), i.to_string()).await
                } else {
                    let keys = client_keys.lock().unwrap().clone();
                    Client::new(nodes[(w + 1) % 3].addr(), 0)
                        .with_keyring(keys)
                        .write(ClientOp::Set {
                            key: format!("w{w}"),
                            value: i.to_string(),
                        })
                        .await
                };
                if let Err(error) = result {
                    return Err(format!("writer {w}, write {i}: {error}"));
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
            Ok(i)
        }));
    }
    let steps = [
        old.clone().with_accepted(NEW),
        Keyring::new(NEW).with_accepted(KEY),
        Keyring::new(NEW),
    ];
    for keys in steps {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for node in nodes.iter() {
            node.set_cluster_keys(Some(keys.clone())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *client_keys.lock().unwrap() = keys;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    assert!(written.load(Ordering::Relaxed) > 30, "too few writes");
    let started = Instant::now();
    let leader = nodes[0].status().leader.unwrap();
    // The old key is out: a client with it alone is refused.
    let refused = Client::new(leader, 0)
        .with_keyring(old)
        .with_timeout(Duration::from_secs(2))
        .write(ClientOp::Remove { key: "w0".into() })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(started.elapsed() < WAIT);
    for node in nodes.iter() {
        let errors: BTreeMap<&str, u64> = node
            .metrics()
            .await
            .unwrap()
            .decode_errors()
            .into_iter()
            .collect();
        assert_eq!(errors.get("missing_tag"), None, "{errors:?}");
        // Only the refused client above (at the leader).
        assert!(
            errors.get("bad_tag").copied().unwrap_or(0) <= 1,
            "{errors:?}"
        );
    }
}
