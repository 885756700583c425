//! Frames used by several wire tests: the golden examples of docs/WIRE.md
//! and proptest strategies that cover every message kind.
#![allow(dead_code)]

use proptest::prelude::*;
use simple_raft::wire::*;

pub const CLUSTER: u32 = 0x00C0_FFEE;

/// The cluster generation of the golden frames that carry one.
pub const GOLDEN_GENERATION: u64 = 0x5EED_0000_0000_0001;

/// The key of the tagged golden frame of docs/WIRE.md: the bytes 0 to 31.
pub const GOLDEN_KEY: [u8; 32] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];

/// The join token of the golden challenge and proof: the bytes `a0` to
/// `af` (a real one is a keyed hash only its maker can check).
pub const GOLDEN_TOKEN: [u8; JOIN_TOKEN_BYTES] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
];

/// A keyring of [`GOLDEN_KEY`] alone.
pub fn golden_keys() -> Keyring {
    Keyring::new(GOLDEN_KEY)
}

/// `frame` with the tag that `keys` gives it, as a node would send it.
pub fn signed(frame: &Frame, keys: &Keyring) -> Frame {
    let mut out = bytes::BytesMut::new();
    frame
        .encode_signed(&mut out, 1 << 20, Some(keys))
        .expect("encodes");
    decode_frame_keyed(&out, &roomy(frame.cluster_id), Some(keys)).expect("decodes")
}

/// The golden examples of docs/WIRE.md, by the name they have there.
pub fn golden() -> Vec<(&'static str, Frame, bool)> {
    let heartbeat = Frame::new(
        CLUSTER,
        NodeId(3),
        7,
        Message::Heartbeat(Heartbeat {
            last: LogId {
                term: 7,
                version: 42,
            },
            commit: 42,
            seq: 9,
        }),
    );
    let tagged = signed(&heartbeat, &golden_keys());
    let member_heartbeat = heartbeat.clone().with_generation(Some(GOLDEN_GENERATION));
    vec![
        ("heartbeat", heartbeat, false),
        ("heartbeat_generation", member_heartbeat, false),
        (
            "heartbeat_ack",
            Frame::new(
                CLUSTER,
                NodeId(2),
                7,
                Message::HeartbeatAck(HeartbeatAck {
                    seq: 9,
                    matched: true,
                    version: 42,
                }),
            ),
            false,
        ),
        (
            "vote_request",
            Frame::new(
                CLUSTER,
                NodeId(1),
                8,
                Message::VoteRequest(VoteRequest {
                    last: LogId {
                        term: 7,
                        version: 42,
                    },
                    transfer: false,
                }),
            ),
            false,
        ),
        (
            "append",
            Frame::new(
                CLUSTER,
                NodeId(3),
                7,
                Message::Append(Append {
                    prev: LogId {
                        term: 7,
                        version: 42,
                    },
                    commit: 42,
                    seq: 10,
                    entries: vec![
                        Entry {
                            term: 7,
                            change: Change::Set {
                                key: "color".into(),
                                value: "blue".into(),
                            },
                        },
                        Entry {
                            term: 7,
                            change: Change::Remove { key: "size".into() },
                        },
                    ],
                }),
            ),
            false,
        ),
        (
            "append_session",
            Frame::new(
                CLUSTER,
                NodeId(3),
                7,
                Message::Append(Append {
                    prev: LogId {
                        term: 7,
                        version: 44,
                    },
                    commit: 44,
                    seq: 11,
                    entries: vec![
                        Entry {
                            term: 7,
                            change: Change::OpenSession {
                                id: 0x51,
                                sessions_max: 4096,
                            },
                        },
                        Entry {
                            term: 7,
                            change: Change::SessionWrite {
                                tag: WriteTag {
                                    session: 0x51,
                                    seq: 1,
                                    floor: 1,
                                },
                                write: Write::Set {
                                    key: "color".into(),
                                    value: "red".into(),
                                },
                            },
                        },
                    ],
                }),
            ),
            false,
        ),
        (
            "introduce",
            Frame::new(
                CLUSTER,
                NodeId::UNASSIGNED,
                0,
                Message::Introduce(Introduce {
                    addr: "127.0.0.1:7004".into(),
                    incarnation: 1,
                    seeds: vec!["127.0.0.1:7001".into()],
                }),
            ),
            false,
        ),
        (
            "join_challenge",
            Frame::new(
                CLUSTER,
                NodeId(1),
                7,
                Message::JoinChallenge(JoinChallenge {
                    token: GOLDEN_TOKEN,
                }),
            )
            .with_generation(Some(GOLDEN_GENERATION)),
            false,
        ),
        (
            "join_proof",
            Frame::new(
                CLUSTER,
                NodeId::UNASSIGNED,
                0,
                Message::JoinProof(JoinProof {
                    addr: "127.0.0.1:7004".into(),
                    incarnation: 1,
                    seeds: vec!["127.0.0.1:7001".into()],
                    token: GOLDEN_TOKEN,
                }),
            ),
            false,
        ),
        ("heartbeat_tagged", tagged, false),
        (
            "snapshot_stream",
            Frame::new(
                CLUSTER,
                NodeId(1),
                7,
                Message::Snapshot(Snapshot {
                    generation: GOLDEN_GENERATION,
                    last: LogId {
                        term: 7,
                        version: 42,
                    },
                    members: vec![Member {
                        id: NodeId(1),
                        addr: "127.0.0.1:7001".into(),
                        voter: true,
                        incarnation: 1,
                    }],
                    next_member_id: 2,
                    map: vec![("a".into(), "1".into())],
                    sessions: vec![SessionRecord {
                        id: 0x51,
                        floor: 3,
                        last_version: 40,
                        replies: vec![(3, 39), (4, 40)],
                    }],
                }),
            )
            .with_generation(Some(GOLDEN_GENERATION)),
            true,
        ),
        (
            "snapshot_chunk_stream",
            Frame::new(
                CLUSTER,
                NodeId::UNASSIGNED,
                0,
                Message::SnapshotChunk(SnapshotChunk {
                    total_bytes: 10,
                    offset: 4,
                    digest: GOLDEN_CHUNK_DIGEST,
                    bytes: vec![4, 5, 6, 7],
                }),
            ),
            true,
        ),
    ]
}

/// BLAKE3 of the bytes 0 to 9: the digest of the golden snapshot chunk.
pub const GOLDEN_CHUNK_DIGEST: [u8; 32] = [
    0x87, 0xfc, 0xf0, 0x7c, 0xac, 0x5b, 0xe3, 0xc9, 0x17, 0x35, 0xb3, 0x4e, 0x53, 0x5c, 0x67, 0x28,
    0x6e, 0x4e, 0x7a, 0x63, 0xbf, 0x15, 0x2d, 0x95, 0xf2, 0xcf, 0x4c, 0xd1, 0xa2, 0x44, 0x75, 0x8b,
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:./-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(20).collect()),
    ]
}

/// A term within the wire's range (larger ones are refused at decode).
pub fn term() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0..=TERM_MAX]
}

/// A version within the wire's range, with room for the entries of an
/// append after it.
pub fn version() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0..=VERSION_MAX - 8]
}

fn log_id() -> impl Strategy<Value = LogId> {
    (term(), version()).prop_map(|(term, version)| LogId { term, version })
}

fn node_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![0u32..300, 0..=NODE_ID_MAX].prop_map(NodeId)
}

fn member() -> impl Strategy<Value = Member> {
    (node_id(), text(), any::<bool>(), any::<u64>()).prop_map(|(id, addr, voter, incarnation)| {
        Member {
            id,
            addr,
            voter,
            incarnation,
        }
    })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::Noop),
        (text(), text()).prop_map(|(key, value)| Change::Set { key, value }),
        text().prop_map(|key| Change::Remove { key }),
        (
            prop::collection::vec((text(), text()), 0..4),
            prop::collection::vec(text(), 0..4)
        )
            .prop_map(|(set, remove)| Change::Replace { set, remove }),
        member().prop_map(Change::AddMember),
        node_id().prop_map(Change::PromoteMember),
        node_id().prop_map(Change::RemoveMember),
        (node_id(), member()).prop_map(|(old, new)| Change::ReplaceMember { old, new }),
        (any::<u64>(), 1..=SESSIONS_MAX_LIMIT)
            .prop_map(|(id, sessions_max)| Change::OpenSession { id, sessions_max }),
        (write_tag(), write()).prop_map(|(tag, write)| Change::SessionWrite { tag, write }),
    ]
}

fn write_tag() -> impl Strategy<Value = WriteTag> {
    (any::<u64>(), 0..=SEQ_MAX, any::<u64>()).prop_map(|(session, seq, floor)| WriteTag {
        session,
        seq,
        floor: floor % (seq + 1),
    })
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        (text(), text()).prop_map(|(key, value)| Write::Set { key, value }),
        text().prop_map(|key| Write::Remove { key }),
        (
            prop::collection::vec((text(), text()), 0..4),
            prop::collection::vec(text(), 0..4)
        )
            .prop_map(|(set, remove)| Write::Replace { set, remove }),
    ]
}

/// Sessions as a snapshot may carry them: sorted ids, replies sorted and
/// none below the floor.
fn session_records() -> impl Strategy<Value = Vec<SessionRecord>> {
    prop::collection::btree_map(
        any::<u64>(),
        (
            0..1000u64,
            version(),
            prop::collection::btree_map(0..100u64, version(), 0..4),
        ),
        0..4,
    )
    .prop_map(|sessions| {
        sessions
            .into_iter()
            .map(|(id, (floor, last_version, replies))| SessionRecord {
                id,
                floor,
                last_version,
                replies: replies.into_iter().map(|(q, v)| (q + floor, v)).collect(),
            })
            .collect()
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (term(), change()).prop_map(|(term, change)| Entry { term, change })
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        Just(ClientOp::Status),
        (prop::option::of(text()), any::<bool>())
            .prop_map(|(key, linearizable)| ClientOp::Get { key, linearizable }),
        (text(), text()).prop_map(|(key, value)| ClientOp::Set { key, value }),
        text().prop_map(|key| ClientOp::Remove { key }),
        prop::collection::vec((text(), text()), 0..4).prop_map(|map| ClientOp::Update { map }),
        any::<u64>().prop_map(|id| ClientOp::OpenSession { id }),
    ]
}

fn client_reply() -> impl Strategy<Value = ClientReply> {
    let failure = prop_oneof![
        Just(ClientFailure::NoLeader),
        Just(ClientFailure::Timeout),
        Just(ClientFailure::Uncertain),
        Just(ClientFailure::Busy),
        Just(ClientFailure::TooLarge),
        Just(ClientFailure::NotMember),
        Just(ClientFailure::Invalid),
        Just(ClientFailure::Stopping),
        Just(ClientFailure::SessionExpired),
    ];
    prop_oneof![
        (
            text(),
            prop::option::of(node_id()),
            text(),
            term(),
            prop::option::of(text()),
            prop::collection::vec(member(), 0..3),
            version(),
            prop::option::of(any::<u64>())
        )
            .prop_map(
                |(addr, id, state, term, leader, members, version, since_heartbeat_ms)| {
                    ClientReply::Status(NodeStatus {
                        addr,
                        id,
                        state,
                        term,
                        leader,
                        members,
                        version,
                        since_heartbeat_ms,
                        generation: since_heartbeat_ms.map(|ms| ms ^ 0x5EED),
                    })
                }
            ),
        (version(), prop::collection::vec((text(), text()), 0..4))
            .prop_map(|(version, map)| ClientReply::Map { version, map }),
        (version(), prop::option::of(text()))
            .prop_map(|(version, value)| ClientReply::Value { version, value }),
        version().prop_map(|version| ClientReply::Written { version }),
        (failure, text()).prop_map(|(failure, message)| ClientReply::Failed { failure, message }),
    ]
}

/// Any message of any kind, with random field values.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (log_id(), version(), any::<u64>())
            .prop_map(|(last, commit, seq)| Message::Heartbeat(Heartbeat { last, commit, seq })),
        (any::<u64>(), any::<bool>(), version()).prop_map(|(seq, matched, version)| {
            Message::HeartbeatAck(HeartbeatAck {
                seq,
                matched,
                version,
            })
        }),
        log_id().prop_map(|last| Message::PreVoteRequest(PreVoteRequest { last })),
        any::<bool>().prop_map(|granted| Message::PreVoteResponse(PreVoteResponse { granted })),
        (log_id(), any::<bool>())
            .prop_map(|(last, transfer)| Message::VoteRequest(VoteRequest { last, transfer })),
        any::<bool>().prop_map(|granted| Message::VoteResponse(VoteResponse { granted })),
        (
            log_id(),
            version(),
            any::<u64>(),
            prop::collection::vec(entry(), 0..6)
        )
            .prop_map(|(prev, commit, seq, entries)| Message::Append(Append {
                prev,
                commit,
                seq,
                entries
            })),
        (any::<u64>(), any::<bool>(), version()).prop_map(|(seq, success, version)| {
            Message::AppendAck(AppendAck {
                seq,
                success,
                version,
            })
        }),
        (text(), any::<u64>(), prop::collection::vec(text(), 0..4)).prop_map(
            |(addr, incarnation, seeds)| Message::Introduce(Introduce {
                addr,
                incarnation,
                seeds
            })
        ),
        (
            prop::option::of(text()),
            any::<bool>(),
            prop::collection::vec(text(), 0..4)
        )
            .prop_map(|(leader, joined, seeds)| Message::Redirect(Redirect {
                leader,
                joined,
                seeds
            })),
        Just(Message::Leave(Leave)),
        Just(Message::TimeoutNow(TimeoutNow)),
        any::<u64>()
            .prop_map(|request_id| Message::ReadIndexRequest(ReadIndexRequest { request_id })),
        (any::<u64>(), prop::option::of(version())).prop_map(|(request_id, index)| {
            Message::ReadIndexResponse(ReadIndexResponse { request_id, index })
        }),
        (node_id(), any::<u64>())
            .prop_map(|(id, incarnation)| Message::Welcome(Welcome { id, incarnation })),
        any::<[u8; JOIN_TOKEN_BYTES]>()
            .prop_map(|token| Message::JoinChallenge(JoinChallenge { token })),
        (
            text(),
            any::<u64>(),
            prop::collection::vec(text(), 0..4),
            any::<[u8; JOIN_TOKEN_BYTES]>()
        )
            .prop_map(
                |(addr, incarnation, seeds, token)| Message::JoinProof(JoinProof {
                    addr,
                    incarnation,
                    seeds,
                    token
                })
            ),
        Just(Message::SnapshotRequest(SnapshotRequest)),
        (
            log_id(),
            prop::collection::vec(member(), 0..4),
            any::<u32>(),
            prop::collection::btree_map(text(), text(), 0..8),
            session_records(),
        )
            .prop_map(
                |(last, members, next_member_id, map, sessions)| Message::Snapshot(Snapshot {
                    generation: last.term ^ 0x5EED,
                    last,
                    members,
                    next_member_id,
                    map: map.into_iter().collect(),
                    sessions,
                })
            ),
        (log_id(), any::<bool>()).prop_map(|(base, from_leader)| Message::FetchSnapshot(
            FetchSnapshot { base, from_leader }
        )),
        (any::<u64>(), client_op(), prop::option::of(write_tag())).prop_map(
            |(request_id, op, tag)| Message::ClientRequest(ClientRequest {
                request_id,
                op,
                tag
            })
        ),
        (any::<u64>(), client_reply()).prop_map(|(request_id, reply)| {
            Message::ClientResponse(ClientResponse { request_id, reply })
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(total_bytes, offset, digest, bytes)| {
                Message::SnapshotChunk(SnapshotChunk {
                    total_bytes,
                    offset,
                    digest,
                    bytes,
                })
            }),
    ]
}

/// Any frame: random header fields, any message, with or without a tag.
pub fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u32>(),
        node_id(),
        term(),
        message(),
        prop::option::of(prop::collection::vec(
            any::<u8>(),
            TAG_BYTES_MIN..=TAG_BYTES_MAX,
        )),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(cluster_id, sender, term, message, tag, generation)| Frame {
                cluster_id,
                generation,
                sender,
                term,
                message,
                tag,
            },
        )
}

/// Limits that accept any frame these strategies make.
pub fn roomy(cluster_id: u32) -> DecodeLimits {
    DecodeLimits {
        cluster_id: Some(cluster_id),
        frame_bytes_max: 1 << 20,
    }
}
