//! A `Core` driven by arbitrary sequences of input: frames built from
//! arbitrary fields (near the node's own term and log, so they reach deep
//! into the protocol, or anywhere in the wire's range), raw bytes, the
//! passing of time, client commands, snapshots and persistence.
//!
//! Properties: nothing panics (the fuzz build has overflow checks and debug
//! assertions on, so an overflow on a received value is a crash); every
//! frame the core sends decodes under its own limits; the term and the
//! commit never go back, the commit never passes the log, and the term
//! stays within `TERM_MAX`.
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use arbitrary::{Result, Unstructured};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use simple_raft::core::{Command, Core, CoreConfig, DurableImage, HardState, Identity, Persist};
use simple_raft::wire::*;

const CLUSTER: u32 = 7;
/// Inputs handled per run.
const STEPS_MAX: usize = 256;
/// Entries, members or keys in one generated message.
const ITEMS_MAX: usize = 8;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(i)))
}

fn member(id: u32) -> Member {
    Member {
        id: NodeId(id),
        addr: addr(id as u8).to_string(),
        voter: true,
        incarnation: 1,
    }
}

fn config(durable: bool, seeds: Vec<SocketAddr>) -> CoreConfig {
    let mut cfg = CoreConfig::new(addr(2), seeds, 1);
    cfg.cluster_id = CLUSTER;
    cfg.durable = durable;
    cfg.heartbeat_ms = 10;
    cfg.leader_timeout_ms = 50;
    cfg.election_timeout_ms = 50;
    cfg.member_silence_ms = Some(500);
    cfg.log_tail_entries_max = 4;
    cfg
}

/// The node under test: member 2 of three voters with a short log, a
/// founder leading alone, or a node joining through seeds.
/// The cluster generation of the restored core, and of most frames sent.
const GENERATION: u64 = 0x5EED;

fn core(u: &mut Unstructured) -> Result<Core> {
    let durable = u.arbitrary()?;
    Ok(match u.int_in_range(0..=2u8)? {
        0 => {
            let image = DurableImage {
                identity: Some(Identity {
                    id: NodeId(2),
                    incarnation: 1,
                    addr: addr(2).to_string(),
                    generation: GENERATION,
                }),
                hard_state: HardState {
                    // At least the term of its entries (1): a node takes a
                    // term before any entry of it, so no data directory
                    // holds entries of a later term than its own.
                    term: u.int_in_range(1..=5)?,
                    voted_for: None,
                },
                snapshot: Snapshot {
                    generation: GENERATION,
                    last: LogId {
                        term: 1,
                        version: u.int_in_range(0..=3)?,
                    },
                    members: (1..=3).map(member).collect(),
                    next_member_id: 4,
                    map: vec![("k".into(), "v".into())],
                    sessions: vec![SessionRecord {
                        id: 1,
                        floor: 1,
                        last_version: 1,
                        replies: vec![(1, 1)],
                    }],
                },
                entries: (0..u.int_in_range(0..=3)?)
                    .map(|_| Entry {
                        term: 1,
                        change: Change::Noop,
                    })
                    .collect(),
            };
            Core::restore(config(durable, vec![addr(1), addr(3)]), 1, 0, image)
                .expect("a valid image restores")
        }
        1 => Core::new(config(durable, vec![]), 2, 0).expect("valid config"),
        _ => Core::new(config(durable, vec![addr(1), addr(3)]), 3, 0).expect("valid config"),
    })
}

/// A number near `around` most of the time, or anywhere up to `max`.
fn near(u: &mut Unstructured, around: u64, max: u64) -> Result<u64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.int_in_range(0..=max)?,
        1 => around.saturating_sub(u.int_in_range(0..=3)?),
        _ => around.saturating_add(u.int_in_range(0..=3)?).min(max),
    })
}

fn node_id(u: &mut Unstructured) -> Result<NodeId> {
    Ok(NodeId(match u.int_in_range(0..=6u8)? {
        0 => 0,
        1..=3 => u.int_in_range(1..=3)?,
        4 => 77,
        5 => NODE_ID_MAX,
        _ => u.int_in_range(0..=NODE_ID_MAX)?,
    }))
}

fn string(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.arbitrary()?,
        1 => addr(u.int_in_range(0..=4)?).to_string(),
        _ => format!("k{}", u.int_in_range(0..=3u8)?),
    })
}

fn list<T>(
    u: &mut Unstructured,
    mut item: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while out.len() < ITEMS_MAX && u.arbitrary::<bool>()? {
        out.push(item(u)?);
    }
    Ok(out)
}

/// Where the generated numbers gather: the node's own term and log.
#[derive(Clone, Copy)]
struct Near {
    term: u64,
    version: u64,
}

impl Near {
    fn term(self, u: &mut Unstructured) -> Result<u64> {
        near(u, self.term, TERM_MAX)
    }

    fn version(self, u: &mut Unstructured) -> Result<u64> {
        near(u, self.version, VERSION_MAX - ITEMS_MAX as u64)
    }

    fn log_id(self, u: &mut Unstructured) -> Result<LogId> {
        Ok(LogId {
            term: self.term(u)?,
            version: self.version(u)?,
        })
    }

    fn member(self, u: &mut Unstructured) -> Result<Member> {
        Ok(Member {
            id: node_id(u)?,
            addr: string(u)?,
            voter: u.arbitrary()?,
            incarnation: u.int_in_range(0..=2)?,
        })
    }

    fn change(self, u: &mut Unstructured) -> Result<Change> {
        Ok(match u.int_in_range(0..=8u8)? {
            7 => Change::OpenSession {
                id: u.int_in_range(0..=3)?,
                sessions_max: u.int_in_range(1..=4)?,
            },
            8 => Change::SessionWrite {
                tag: write_tag(u)?,
                write: Write::Set {
                    key: string(u)?,
                    value: string(u)?,
                },
            },
            0 => Change::Noop,
            1 => Change::Set {
                key: string(u)?,
                value: string(u)?,
            },
            2 => Change::Remove { key: string(u)? },
            3 => Change::Replace {
                set: list(u, |u| Ok((string(u)?, string(u)?)))?,
                remove: list(u, string)?,
            },
            4 => Change::AddMember(self.member(u)?),
            5 => Change::PromoteMember(node_id(u)?),
            _ => Change::RemoveMember(node_id(u)?),
        })
    }

    fn snapshot(self, u: &mut Unstructured) -> Result<Snapshot> {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in list(u, |u| Ok((string(u)?, string(u)?)))? {
            map.insert(k, v);
        }
        Ok(Snapshot {
            generation: if u.arbitrary()? {
                GENERATION
            } else {
                u.arbitrary()?
            },
            last: self.log_id(u)?,
            members: list(u, |u| self.member(u))?,
            next_member_id: u.arbitrary()?,
            map: map.into_iter().collect(),
            sessions: sessions(u)?,
        })
    }

    fn message(self, u: &mut Unstructured) -> Result<Message> {
        Ok(match u.int_in_range(0..=19u8)? {
            0 => Message::Heartbeat(Heartbeat {
                last: self.log_id(u)?,
                commit: self.version(u)?,
                seq: u.int_in_range(0..=5)?,
            }),
            1 => Message::HeartbeatAck(HeartbeatAck {
                seq: u.int_in_range(0..=5)?,
                matched: u.arbitrary()?,
                version: self.version(u)?,
            }),
            2 => Message::PreVoteRequest(PreVoteRequest {
                last: self.log_id(u)?,
            }),
            3 => Message::PreVoteResponse(PreVoteResponse {
                granted: u.arbitrary()?,
            }),
            4 => Message::VoteRequest(VoteRequest {
                last: self.log_id(u)?,
                transfer: u.arbitrary()?,
            }),
            5 => Message::VoteResponse(VoteResponse {
                granted: u.arbitrary()?,
            }),
            6 => Message::Append(Append {
                prev: self.log_id(u)?,
                commit: self.version(u)?,
                seq: u.int_in_range(0..=5)?,
                entries: list(u, |u| {
                    Ok(Entry {
                        term: self.term(u)?,
                        change: self.change(u)?,
                    })
                })?,
            }),
            7 => Message::AppendAck(AppendAck {
                seq: u.int_in_range(0..=5)?,
                success: u.arbitrary()?,
                version: self.version(u)?,
            }),
            8 => Message::Introduce(Introduce {
                addr: string(u)?,
                incarnation: u.int_in_range(0..=2)?,
                seeds: list(u, string)?,
            }),
            9 => Message::Redirect(Redirect {
                leader: if u.arbitrary()? {
                    Some(string(u)?)
                } else {
                    None
                },
                joined: u.arbitrary()?,
                seeds: list(u, string)?,
            }),
            10 => Message::Leave(Leave),
            11 => Message::TimeoutNow(TimeoutNow),
            12 => Message::ReadIndexRequest(ReadIndexRequest {
                request_id: u.int_in_range(0..=3)?,
            }),
            13 => Message::ReadIndexResponse(ReadIndexResponse {
                request_id: u.int_in_range(0..=3)?,
                index: if u.arbitrary()? {
                    Some(self.version(u)?)
                } else {
                    None
                },
            }),
            14 => Message::Welcome(Welcome {
                id: node_id(u)?,
                incarnation: u.int_in_range(0..=2)?,
            }),
            15 => Message::FetchSnapshot(FetchSnapshot {
                base: self.log_id(u)?,
                from_leader: u.arbitrary()?,
            }),
            16 => Message::Snapshot(self.snapshot(u)?),
            // Tokens the core never made: the refusal paths.
            17 => Message::JoinChallenge(JoinChallenge {
                token: u.arbitrary()?,
            }),
            18 => Message::JoinProof(JoinProof {
                addr: string(u)?,
                incarnation: u.int_in_range(0..=2)?,
                seeds: list(u, string)?,
                token: u.arbitrary()?,
            }),
            _ => Message::SnapshotRequest(SnapshotRequest),
        })
    }
}

/// A tag of one of a few sessions, so that resends and closed sessions
/// are met often.
fn write_tag(u: &mut Unstructured) -> Result<WriteTag> {
    let seq = u.int_in_range(0..=6)?;
    Ok(WriteTag {
        session: u.int_in_range(0..=3)?,
        seq,
        floor: u.int_in_range(0..=seq)?,
    })
}

/// Sessions as a snapshot may carry them (sorted, within the limits).
fn sessions(u: &mut Unstructured) -> Result<Vec<SessionRecord>> {
    let mut out: Vec<SessionRecord> = Vec::new();
    for id in 0..u.int_in_range(0..=3u64)? {
        let floor = u.int_in_range(0..=3)?;
        let replies = (floor..floor + u.int_in_range(0..=3)?)
            .map(|seq| (seq, seq + 1))
            .collect();
        out.push(SessionRecord {
            id,
            floor,
            last_version: u.int_in_range(0..=8)?,
            replies,
        });
    }
    Ok(out)
}

fn command(u: &mut Unstructured) -> Result<Command> {
    Ok(match u.int_in_range(0..=6u8)? {
        6 => Command::OpenSession {
            id: u.int_in_range(0..=3)?,
        },
        0 => Command::Set {
            key: string(u)?,
            value: string(u)?,
        },
        1 => Command::Remove { key: string(u)? },
        2 => {
            let mut map = BTreeMap::new();
            for (k, v) in list(u, |u| Ok((string(u)?, string(u)?)))? {
                map.insert(k, v);
            }
            Command::Update { map: map.into() }
        }
        3 => Command::ReadLinearizable,
        4 => Command::Leave,
        _ => Command::TransferLeadership,
    })
}

/// Drains the core's output, checking that every frame it sends decodes.
fn drain(core: &mut Core, persisted: &mut bool) {
    while let Some(persist) = core.poll_persist() {
        if let Persist::Image(image) = persist {
            // An image must describe a log that follows its snapshot.
            assert!(image.snapshot.last.version <= VERSION_MAX);
        }
        *persisted = true;
    }
    let limits = |stream: bool| DecodeLimits {
        cluster_id: Some(CLUSTER),
        frame_bytes_max: if stream {
            STREAM_FRAME_BYTES_MAX_DEFAULT
        } else {
            DATAGRAM_BYTES_MAX_DEFAULT
        },
    };
    while let Some(transmit) = core.poll_transmit() {
        if let Err(error) = decode_frame(&transmit.bytes, &limits(transmit.stream)) {
            panic!("the core sent a frame it cannot decode: {error}");
        }
    }
    while core.poll_event().is_some() {}
}

fn run(u: &mut Unstructured) -> Result<()> {
    let mut core = core(u)?;
    let mut now = 0u64;
    let mut request = 0u64;
    let mut persisted = false;
    drain(&mut core, &mut persisted);
    for _ in 0..STEPS_MAX {
        if u.is_empty() {
            break;
        }
        let (term, commit) = (core.term(), core.commit());
        let near = Near {
            term,
            version: core.last_log_id().version,
        };
        match u.int_in_range(0..=7u8)? {
            0..=2 => {
                // Mostly of the core's own cluster generation (or the one a
                // restored core has), else none or any: frames of another
                // history must change nothing.
                let generation = match u.int_in_range(0..=5u8)? {
                    0 => None,
                    1 => Some(u.arbitrary()?),
                    2 => Some(GENERATION),
                    _ => core.generation().or(Some(GENERATION)),
                };
                let frame = Frame::new(CLUSTER, node_id(u)?, near.term(u)?, near.message(u)?)
                    .with_generation(generation);
                let from = addr(u.int_in_range(0..=4)?);
                let mut bytes = BytesMut::new();
                let stream = u.arbitrary()?;
                let limit = if stream {
                    1 << 20
                } else {
                    DATAGRAM_BYTES_MAX_DEFAULT
                };
                if frame.encode(&mut bytes, limit).is_ok() {
                    if stream {
                        core.handle_stream_frame(now, from, &bytes);
                    } else {
                        core.handle_datagram(now, from, &bytes);
                    }
                }
            }
            3 => {
                let len = u.int_in_range(0..=64usize)?;
                let bytes = u.bytes(len)?;
                core.handle_datagram(now, addr(1), bytes);
            }
            4 => {
                now += u.int_in_range(0..=100)?;
                if core.poll_timeout().is_some_and(|t| t <= now) {
                    core.handle_timeout(now);
                }
            }
            5 => {
                request += 1;
                if u.arbitrary()? {
                    core.handle_session_write(now, request, command(u)?, write_tag(u)?);
                } else {
                    core.handle_command(now, request, command(u)?);
                }
            }
            6 => {
                let snapshot = near.snapshot(u)?;
                core.handle_snapshot(now, snapshot);
            }
            _ => {
                if persisted {
                    core.handle_persisted(now);
                    persisted = false;
                }
            }
        }
        drain(&mut core, &mut persisted);
        assert!(core.term() >= term, "the term went back");
        assert!(core.term() <= TERM_MAX, "the term passed TERM_MAX");
        assert!(core.commit() >= commit, "the commit went back");
        assert!(
            core.commit() <= core.last_log_id().version,
            "the commit passed the log"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
