//! Hostile but well-formed input: frames whose numbers are at or beyond
//! the protocol's maxima, and frames that claim a leader's identity from
//! another address. Each is dropped (and counted) or handled without a
//! panic, and never leaves a node unable to take part in elections.

use std::net::SocketAddr;

use bytes::BytesMut;
use simple_raft::core::{Core, CoreConfig, DurableImage, HardState, Identity, Role};
use simple_raft::wire::*;

const CLUSTER: u32 = 7;

/// The cluster generation of the cores these tests restore, and of the
/// frames they send them.
const GENERATION: u64 = 0x5EED;

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        cluster_id: Some(CLUSTER),
        frame_bytes_max: 1 << 20,
    }
}

fn encode(sender: u32, term: u64, message: Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    Frame::new(CLUSTER, NodeId(sender), term, message)
        .with_generation(Some(GENERATION))
        .encode(&mut out, 1 << 20)
        .expect("encodes");
    out.to_vec()
}

fn decoded(sender: u32, term: u64, message: Message) -> Result<Frame, DecodeError> {
    decode_frame(&encode(sender, term, message), &limits())
}

fn out_of_range(sender: u32, term: u64, message: Message) -> &'static str {
    match decoded(sender, term, message.clone()) {
        Err(DecodeError::OutOfRange { field, .. }) => field,
        other => panic!("{message:?} at term {term} from {sender}: {other:?}"),
    }
}

fn id(term: u64, version: u64) -> LogId {
    LogId { term, version }
}

fn heartbeat(last: LogId, commit: u64) -> Message {
    Message::Heartbeat(Heartbeat {
        last,
        commit,
        seq: 1,
    })
}

fn member(id: u32) -> Member {
    Member {
        id: NodeId(id),
        addr: addr(id % 1000).to_string(),
        voter: true,
        incarnation: 1,
    }
}

fn append(prev: LogId, commit: u64, entries: Vec<Entry>) -> Message {
    Message::Append(Append {
        prev,
        commit,
        seq: 1,
        entries,
    })
}

fn noop(term: u64) -> Entry {
    Entry {
        term,
        change: Change::Noop,
    }
}

#[test]
fn the_maxima_themselves_decode() {
    let frame = decoded(
        NODE_ID_MAX,
        TERM_MAX,
        heartbeat(id(TERM_MAX, VERSION_MAX), VERSION_MAX),
    )
    .expect("the maxima are in range");
    assert_eq!(frame.term, TERM_MAX);
    let full = append(id(1, VERSION_MAX - 2), 0, vec![noop(TERM_MAX), noop(1)]);
    decoded(1, 1, full).expect("an append that ends at VERSION_MAX is in range");
}

#[test]
fn every_term_version_and_id_beyond_its_maximum_is_refused() {
    let big = TERM_MAX + 1;
    let far = VERSION_MAX + 1;
    let cases: Vec<(u32, u64, Message)> = vec![
        (1, u64::MAX, heartbeat(id(1, 1), 1)),
        (1, big, heartbeat(id(1, 1), 1)),
        (u32::MAX, 1, heartbeat(id(1, 1), 1)),
        (1, 1, heartbeat(id(big, 1), 1)),
        (1, 1, heartbeat(id(1, far), 1)),
        (1, 1, heartbeat(id(1, 1), u64::MAX)),
        (
            1,
            1,
            Message::HeartbeatAck(HeartbeatAck {
                seq: 1,
                matched: true,
                version: far,
            }),
        ),
        (
            1,
            1,
            Message::PreVoteRequest(PreVoteRequest {
                last: id(u64::MAX, 1),
            }),
        ),
        (
            1,
            1,
            Message::VoteRequest(VoteRequest {
                last: id(1, u64::MAX),
                transfer: false,
            }),
        ),
        (1, 1, append(id(big, 1), 0, vec![])),
        (1, 1, append(id(1, 1), far, vec![])),
        (1, 1, append(id(1, VERSION_MAX), 0, vec![noop(1)])),
        (1, 1, append(id(1, u64::MAX), 0, vec![noop(1), noop(1)])),
        (1, 1, append(id(1, 1), 0, vec![noop(1), noop(big)])),
        (
            1,
            1,
            append(
                id(1, 1),
                0,
                vec![Entry {
                    term: 1,
                    change: Change::AddMember(member(u32::MAX)),
                }],
            ),
        ),
        (
            1,
            1,
            append(
                id(1, 1),
                0,
                vec![Entry {
                    term: 1,
                    change: Change::PromoteMember(NodeId(u32::MAX)),
                }],
            ),
        ),
        (
            1,
            1,
            append(
                id(1, 1),
                0,
                vec![Entry {
                    term: 1,
                    change: Change::RemoveMember(NodeId(u32::MAX)),
                }],
            ),
        ),
        (
            1,
            1,
            Message::AppendAck(AppendAck {
                seq: 1,
                success: true,
                version: u64::MAX,
            }),
        ),
        (
            1,
            1,
            Message::ReadIndexResponse(ReadIndexResponse {
                request_id: 1,
                index: Some(far),
            }),
        ),
        (
            1,
            1,
            Message::Welcome(Welcome {
                id: NodeId(u32::MAX),
                incarnation: 1,
            }),
        ),
        (
            1,
            1,
            Message::Snapshot(Snapshot {
                generation: GENERATION,
                last: id(1, u64::MAX),
                members: vec![member(1)],
                next_member_id: 2,
                map: vec![],
                sessions: Vec::new(),
            }),
        ),
        (
            1,
            1,
            Message::Snapshot(Snapshot {
                generation: GENERATION,
                last: id(1, 1),
                members: vec![member(u32::MAX)],
                next_member_id: 2,
                map: vec![],
                sessions: Vec::new(),
            }),
        ),
        (
            1,
            1,
            Message::FetchSnapshot(FetchSnapshot {
                base: id(big, 1),
                from_leader: true,
            }),
        ),
        (
            1,
            1,
            Message::ClientResponse(ClientResponse {
                request_id: 1,
                reply: ClientReply::Written { version: far },
            }),
        ),
    ];
    for (sender, term, message) in cases {
        let field = out_of_range(sender, term, message);
        assert!(!field.is_empty());
    }
    assert_eq!(
        DecodeError::OutOfRange {
            field: "term",
            value: 1,
            max: 0
        }
        .reason()
        .name(),
        "out_of_range"
    );
}

// ----- the core -----

/// Member 2 of three voters at term 5, following nobody yet.
fn member_two() -> Core {
    member_two_at(id(1, 3), vec![noop(5)])
}

/// Member 2 of three voters at term 5, its state at `last` and `entries`
/// after it.
fn member_two_at(last: LogId, entries: Vec<Entry>) -> Core {
    member_two_in(5, last, entries)
}

/// Member 2 of three voters at `term`, its state at `last` and `entries`
/// after it.
fn member_two_in(term: u64, last: LogId, entries: Vec<Entry>) -> Core {
    let image = DurableImage {
        identity: Some(Identity {
            id: NodeId(2),
            incarnation: 1,
            addr: addr(2).to_string(),
            generation: GENERATION,
        }),
        hard_state: HardState {
            term,
            voted_for: None,
        },
        snapshot: Snapshot {
            generation: GENERATION,
            last,
            members: (1..=3).map(member).collect(),
            next_member_id: 4,
            map: vec![("k".into(), "v".into())],
            sessions: Vec::new(),
        },
        entries,
    };
    let mut cfg = CoreConfig::new(addr(2), vec![addr(1), addr(3)], 1);
    cfg.cluster_id = CLUSTER;
    Core::restore(cfg, 3, 0, image).unwrap()
}

fn drain(core: &mut Core) -> Vec<(SocketAddr, Frame)> {
    while core.poll_persist().is_some() {}
    let mut out = Vec::new();
    while let Some(t) = core.poll_transmit() {
        out.push((
            t.to,
            decode_frame(&t.bytes, &limits()).expect("own frames decode"),
        ));
    }
    while core.poll_event().is_some() {}
    out
}

#[test]
fn a_burst_at_the_largest_term_changes_nothing_and_is_counted() {
    let mut core = member_two();
    let stranger = SocketAddr::from(([127, 0, 0, 1], 9999));
    let mut sent = 0;
    for sender in [1, 2, 3, 77] {
        for message in [
            Message::VoteRequest(VoteRequest {
                last: id(u64::MAX, u64::MAX),
                transfer: true,
            }),
            Message::PreVoteRequest(PreVoteRequest {
                last: id(u64::MAX, u64::MAX),
            }),
            heartbeat(id(u64::MAX, 0), 0),
        ] {
            core.handle_datagram(10, stranger, &encode(sender, u64::MAX, message));
            sent += 1;
        }
    }
    assert_eq!(core.term(), 5);
    assert_eq!(core.leader(), None);
    assert!(drain(&mut core).is_empty(), "nothing answered");
    let reason = DecodeReason::OutOfRange.index();
    assert_eq!(core.metrics().decode_errors[reason], sent);
}

#[test]
fn a_heartbeat_at_version_zero_of_another_term_is_answered_without_a_panic() {
    // An empty log: the position (0, 0) is known, of term 0.
    let mut core = member_two_at(id(0, 0), vec![]);
    core.handle_datagram(10, addr(1), &encode(1, 5, heartbeat(id(4, 0), 0)));
    let out = drain(&mut core);
    assert!(
        matches!(
            out.as_slice(),
            [(
                _,
                Frame {
                    message: Message::HeartbeatAck(HeartbeatAck { matched: false, .. }),
                    ..
                }
            )]
        ),
        "{out:?}"
    );
}

#[test]
fn a_node_at_the_largest_term_stands_without_a_panic() {
    // Only a node one term below can be moved there by a frame (see
    // `TERM_STEP_MAX`).
    let mut core = member_two_in(TERM_MAX - 1, id(1, 3), vec![noop(5)]);
    core.handle_datagram(
        10,
        addr(3),
        &encode(
            3,
            TERM_MAX,
            Message::VoteRequest(VoteRequest {
                last: id(1, 1),
                transfer: true,
            }),
        ),
    );
    assert_eq!(core.term(), TERM_MAX);
    let mut now = 10;
    for _ in 0..20 {
        now = core.poll_timeout().unwrap_or(now).max(now) + 1;
        core.handle_timeout(now);
        drain(&mut core);
    }
    assert_eq!(core.term(), TERM_MAX, "no term beyond the maximum");
}

#[test]
fn a_leader_address_comes_from_the_members_not_from_the_datagram() {
    let mut core = member_two();
    let elsewhere = SocketAddr::from(([127, 0, 0, 1], 9999));
    // A replayed heartbeat of member 1 sent from another host.
    core.handle_datagram(10, elsewhere, &encode(1, 5, heartbeat(id(5, 4), 4)));
    assert_eq!(core.leader(), Some(addr(1)));
    assert_eq!(core.role(), Role::Follower);
    let out = drain(&mut core);
    assert!(out.iter().all(|(to, _)| *to == addr(1)), "{out:?}");

    // A leader the configuration does not list yet (this member fell
    // behind the change that added it) is followed where its frames come
    // from: only it can bring the member up to date. Once the log names it,
    // the member list's address wins again (a leader timeout later: until
    // then the leader it follows is live, and a later term is refused).
    let mut core = member_two();
    core.handle_datagram(10, elsewhere, &encode(77, 5, heartbeat(id(5, 4), 4)));
    assert_eq!(core.leader(), Some(elsewhere));
    core.handle_datagram(1000, elsewhere, &encode(1, 6, heartbeat(id(5, 4), 4)));
    assert_eq!(core.leader(), Some(addr(1)));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn reason(sender: u32, term: u64, message: Message) -> Option<DecodeReason> {
        decoded(sender, term, message).err().map(|e| e.reason())
    }

    proptest! {
        #[test]
        fn a_term_beyond_the_maximum_is_refused_wherever_it_is(
            big in TERM_MAX + 1..=u64::MAX,
            small in 0..=TERM_MAX,
            version in 0..=VERSION_MAX,
        ) {
            let out = Some(DecodeReason::OutOfRange);
            prop_assert_eq!(reason(1, big, heartbeat(id(small, version), 0)), out);
            prop_assert_eq!(reason(1, small, heartbeat(id(big, version), 0)), out);
            prop_assert_eq!(reason(1, small, append(id(small, 0), 0, vec![noop(big)])), out);
            prop_assert_eq!(reason(1, small, heartbeat(id(small, version), 0)), None);
        }

        #[test]
        fn an_append_is_refused_exactly_when_it_ends_beyond_the_maximum_version(
            prev in VERSION_MAX - 8..=VERSION_MAX + 8,
            count in 0usize..8,
        ) {
            let entries = (0..count).map(|_| noop(1)).collect();
            let refused = reason(1, 1, append(id(1, prev), 0, entries)).is_some();
            prop_assert_eq!(refused, prev + count as u64 > VERSION_MAX);
        }

        #[test]
        fn a_member_id_beyond_the_maximum_is_refused(id_value in NODE_ID_MAX + 1..=u32::MAX) {
            let out = Some(DecodeReason::OutOfRange);
            prop_assert_eq!(reason(id_value, 1, heartbeat(id(1, 1), 0)), out);
            let welcome = Message::Welcome(Welcome { id: NodeId(id_value), incarnation: 1 });
            prop_assert_eq!(reason(1, 1, welcome), out);
        }
    }
}

/// Found by the `core_drive` fuzz target: a leader whose next member id
/// was past `NODE_ID_MAX` (a snapshot may say `u32::MAX`) added a member
/// with an id no peer accepts and welcomed it with a frame every receiver
/// refuses, so replication of its log could never go on.
/// Member 2, the sole voter, its state at `last` with `next_member_id`,
/// once it leads.
fn sole_leader(last: LogId, next_member_id: u32) -> (Core, u64) {
    let image = DurableImage {
        identity: Some(Identity {
            id: NodeId(2),
            incarnation: 1,
            addr: addr(2).to_string(),
            generation: GENERATION,
        }),
        hard_state: HardState {
            term: 1,
            voted_for: None,
        },
        snapshot: Snapshot {
            generation: GENERATION,
            last,
            members: vec![member(2)],
            next_member_id,
            map: vec![],
            sessions: Vec::new(),
        },
        entries: vec![],
    };
    let mut cfg = CoreConfig::new(addr(2), vec![], 1);
    cfg.cluster_id = CLUSTER;
    let mut core = Core::restore(cfg, 3, 0, image).unwrap();
    let mut now = 0;
    for _ in 0..20 {
        if core.role() == Role::Leader {
            break;
        }
        now = core.poll_timeout().unwrap_or(now).max(now) + 1;
        core.handle_timeout(now);
        drain(&mut core);
    }
    assert_eq!(core.role(), Role::Leader);
    (core, now)
}

#[test]
fn a_leader_with_every_member_id_spent_admits_no_one() {
    let (mut core, mut now) = sole_leader(id(1, 1), u32::MAX);
    let introduce = Message::Introduce(Introduce {
        addr: addr(5).to_string(),
        incarnation: 1,
        seeds: vec![],
    });
    for _ in 0..5 {
        now += 100;
        core.handle_datagram(now, addr(5), &encode(0, 0, introduce.clone()));
        core.handle_timeout(now);
        // `drain` decodes every frame the node sends.
        drain(&mut core);
    }
    assert_eq!(core.members().len(), 1);
    assert!(core
        .entry(core.last_log_id().version)
        .is_some_and(|e| !matches!(e.change, Change::AddMember(_))));
}

/// A log at `VERSION_MAX` (only a forged snapshot gets there) takes no
/// more changes, rather than sending appends that every peer refuses.
#[test]
fn a_leader_at_the_largest_version_refuses_writes() {
    let (mut core, now) = sole_leader(id(1, VERSION_MAX), 3);
    assert_eq!(core.last_log_id().version, VERSION_MAX);
    let set = simple_raft::core::Command::Set {
        key: "k".into(),
        value: "v".into(),
    };
    core.handle_command(now, 1, set);
    while core.poll_persist().is_some() {}
    let mut refused = false;
    while let Some(event) = core.poll_event() {
        if let simple_raft::core::Event::Done { result, .. } = event {
            refused = matches!(result, Err(simple_raft::core::RequestError::Busy { .. }));
        }
    }
    assert!(refused);
    assert_eq!(core.last_log_id().version, VERSION_MAX);
}

// ----- a live cluster on loopback -----

mod live {
    use std::time::{Duration, Instant};

    use simple_raft::core::{TermRefusal, TERM_STEP_MAX};
    use simple_raft::{Config, Node};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn config(join: Vec<SocketAddr>) -> Config {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), join);
        config.heartbeat_ms = 20;
        config.leader_timeout_ms = 150;
        config.election_timeout_ms = 150;
        config
    }

    async fn three_voters() -> Vec<Node> {
        let first = Node::start(config(vec![])).await.unwrap();
        let seed = first.addr();
        let nodes = vec![
            first,
            Node::start(config(vec![seed])).await.unwrap(),
            Node::start(config(vec![seed])).await.unwrap(),
        ];
        for node in &nodes {
            node.wait_for(WAIT, |s| {
                s.members.len() == 3 && s.members.iter().all(|m| m.voter) && s.leader.is_some()
            })
            .await
            .unwrap_or_else(|e| panic!("{} did not see 3 voters: {e}", node.addr()));
        }
        nodes
    }

    /// A write through every node commits, each retried within a bound
    /// while the cluster settles.
    async fn writes_commit_through_every_node(nodes: &[Node], key: &str) {
        for node in nodes {
            let deadline = Instant::now() + WAIT;
            loop {
                match node.set(key, "v").await {
                    Ok(_) => break,
                    Err(error) if Instant::now() >= deadline => {
                        panic!("a write through {}: {error}", node.addr())
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }

    /// Every kind of frame that moves a term, at `term`, as members 1 to 3
    /// and a stranger 77 would send it.
    fn burst(cluster_id: u32, generation: u64, term: u64) -> Vec<Vec<u8>> {
        let last = id(term, VERSION_MAX - 1);
        let messages = [
            Message::VoteRequest(VoteRequest {
                last,
                transfer: true,
            }),
            Message::VoteRequest(VoteRequest {
                last,
                transfer: false,
            }),
            Message::PreVoteRequest(PreVoteRequest { last }),
            heartbeat(last, VERSION_MAX),
            append(last, VERSION_MAX, vec![noop(term)]),
            Message::AppendAck(AppendAck {
                seq: 1,
                success: true,
                version: VERSION_MAX,
            }),
        ];
        let mut frames = Vec::new();
        for sender in [1, 2, 3, 77] {
            for message in &messages {
                let mut out = BytesMut::new();
                Frame::new(cluster_id, NodeId(sender), term, message.clone())
                    .with_generation(Some(generation))
                    .encode(&mut out, DATAGRAM_BYTES_MAX_DEFAULT)
                    .expect("encodes");
                frames.push(out.to_vec());
            }
        }
        frames
    }

    /// The wedge a key used to be needed against: one burst of well-formed
    /// unkeyed frames just below `TERM_MAX`, and one `2^40` terms above
    /// the cluster's, sent once to every node of a live cluster. No node's
    /// term moves that far (it would leave no later term to elect in), the
    /// refusals are counted, and writes commit afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_just_below_the_largest_term_leaves_a_live_cluster_able_to_commit() {
        let nodes = three_voters().await;
        writes_commit_through_every_node(&nodes, "before").await;
        let status = nodes[0].status();
        let generation = status.generation.expect("a member");
        let term = nodes.iter().map(|n| n.status().term).max().unwrap();
        let cluster_id = config(vec![]).cluster_id;

        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for burst_term in [TERM_MAX - 1, term + (1 << 40)] {
            for node in &nodes {
                for frame in burst(cluster_id, generation, burst_term) {
                    socket.send_to(&frame, node.addr()).await.unwrap();
                }
            }
        }

        writes_commit_through_every_node(&nodes, "after").await;
        let mut too_far = 0;
        for node in &nodes {
            let status = node.status();
            assert!(status.term <= term + TERM_STEP_MAX, "{status:?}");
            let metrics = node.metrics().await.unwrap();
            too_far += metrics.core.term_refused[TermRefusal::TooFarAhead.index()];
        }
        // The frames reached the term checks (right cluster, generation).
        assert!(too_far > 0, "no frame was refused as too far ahead");
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    }
}
