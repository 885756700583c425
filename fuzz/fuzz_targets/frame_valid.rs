//! Valid frames of every kind, built from the fuzz input.
//!
//! Raw bytes rarely get past the header, let alone form a valid `Snapshot`;
//! building the frame first reaches every message and field. Each frame
//! must decode to itself and re-encode to the same bytes, as a datagram and
//! as a stream frame. Then one bit of the encoding is flipped: crc32 catches
//! every one-bit error, and since fuzzing builds skip the checksum
//! comparison the decoder itself must still not panic, and whatever it
//! accepts must re-encode to the flipped bytes. Signed with a cluster key
//! from the input, the frame must verify under that key, and no flipped
//! bit outside the crc32 may get past the tag (which fuzzing builds do
//! check).
#![no_main]

use arbitrary::{Result, Unstructured};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use simple_raft::wire::*;

/// Large enough for any frame the input can describe.
const FRAME_BYTES_MAX: usize = 1 << 20;
/// Longest list of entries, members, keys or addresses generated.
const ITEMS_MAX: usize = 64;

fn string(u: &mut Unstructured) -> Result<String> {
    u.arbitrary()
}

/// A list that ends when the input says so, or runs out.
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

/// Terms, versions and member ids within the wire's range (larger ones are
/// refused at decode); versions leave room for an append's entries.
fn term(u: &mut Unstructured) -> Result<u64> {
    u.int_in_range(0..=TERM_MAX)
}

fn version(u: &mut Unstructured) -> Result<u64> {
    u.int_in_range(0..=VERSION_MAX - ITEMS_MAX as u64)
}

fn node_id(u: &mut Unstructured) -> Result<NodeId> {
    Ok(NodeId(u.int_in_range(0..=NODE_ID_MAX)?))
}

fn log_id(u: &mut Unstructured) -> Result<LogId> {
    Ok(LogId {
        term: term(u)?,
        version: version(u)?,
    })
}

fn member(u: &mut Unstructured) -> Result<Member> {
    Ok(Member {
        id: node_id(u)?,
        addr: string(u)?,
        voter: u.arbitrary()?,
        incarnation: u.arbitrary()?,
    })
}

fn pair(u: &mut Unstructured) -> Result<(String, String)> {
    Ok((string(u)?, string(u)?))
}

fn change(u: &mut Unstructured) -> Result<Change> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => Change::Noop,
        1 => Change::Set {
            key: string(u)?,
            value: string(u)?,
        },
        2 => Change::Remove { key: string(u)? },
        3 => Change::Replace {
            set: list(u, pair)?,
            remove: list(u, string)?,
        },
        4 => Change::AddMember(member(u)?),
        5 => Change::PromoteMember(node_id(u)?),
        _ => Change::RemoveMember(node_id(u)?),
    })
}

fn entry(u: &mut Unstructured) -> Result<Entry> {
    Ok(Entry {
        term: term(u)?,
        change: change(u)?,
    })
}

/// A message of `kind`. The match is exhaustive, so a new kind does not
/// compile until it is generated here too.
fn message(u: &mut Unstructured, kind: Kind) -> Result<Message> {
    Ok(match kind {
        Kind::Heartbeat => Message::Heartbeat(Heartbeat {
            last: log_id(u)?,
            commit: version(u)?,
            seq: u.arbitrary()?,
        }),
        Kind::HeartbeatAck => Message::HeartbeatAck(HeartbeatAck {
            seq: u.arbitrary()?,
            matched: u.arbitrary()?,
            version: version(u)?,
        }),
        Kind::PreVoteRequest => Message::PreVoteRequest(PreVoteRequest { last: log_id(u)? }),
        Kind::PreVoteResponse => Message::PreVoteResponse(PreVoteResponse {
            granted: u.arbitrary()?,
        }),
        Kind::VoteRequest => Message::VoteRequest(VoteRequest {
            last: log_id(u)?,
            transfer: u.arbitrary()?,
        }),
        Kind::VoteResponse => Message::VoteResponse(VoteResponse {
            granted: u.arbitrary()?,
        }),
        Kind::Append => Message::Append(Append {
            prev: log_id(u)?,
            commit: version(u)?,
            seq: u.arbitrary()?,
            entries: list(u, entry)?,
        }),
        Kind::AppendAck => Message::AppendAck(AppendAck {
            seq: u.arbitrary()?,
            success: u.arbitrary()?,
            version: version(u)?,
        }),
        Kind::Introduce => Message::Introduce(Introduce {
            addr: string(u)?,
            incarnation: u.arbitrary()?,
            seeds: list(u, string)?,
        }),
        Kind::Redirect => Message::Redirect(Redirect {
            leader: u.arbitrary()?,
            joined: u.arbitrary()?,
            seeds: list(u, string)?,
        }),
        Kind::Leave => Message::Leave(Leave),
        Kind::TimeoutNow => Message::TimeoutNow(TimeoutNow),
        Kind::ReadIndexRequest => Message::ReadIndexRequest(ReadIndexRequest {
            request_id: u.arbitrary()?,
        }),
        Kind::ReadIndexResponse => Message::ReadIndexResponse(ReadIndexResponse {
            request_id: u.arbitrary()?,
            index: option(u, version)?,
        }),
        Kind::Welcome => Message::Welcome(Welcome {
            id: node_id(u)?,
            incarnation: u.arbitrary()?,
        }),
        Kind::SnapshotRequest => Message::SnapshotRequest(SnapshotRequest),
        Kind::JoinChallenge => Message::JoinChallenge(JoinChallenge {
            token: u.arbitrary()?,
        }),
        Kind::JoinProof => Message::JoinProof(JoinProof {
            addr: string(u)?,
            incarnation: u.arbitrary()?,
            seeds: list(u, string)?,
            token: u.arbitrary()?,
        }),
        Kind::FetchSnapshot => Message::FetchSnapshot(FetchSnapshot {
            base: log_id(u)?,
            from_leader: u.arbitrary()?,
        }),
        Kind::ClientRequest => Message::ClientRequest(ClientRequest {
            request_id: u.arbitrary()?,
            op: client_op(u)?,
            tag: option(u, |u| {
                let seq = u.int_in_range(0..=SEQ_MAX)?;
                Ok(WriteTag {
                    session: u.arbitrary()?,
                    seq,
                    floor: u.int_in_range(0..=seq)?,
                })
            })?,
        }),
        Kind::ClientResponse => Message::ClientResponse(ClientResponse {
            request_id: u.arbitrary()?,
            reply: client_reply(u)?,
        }),
        Kind::SnapshotChunk => Message::SnapshotChunk(SnapshotChunk {
            total_bytes: u.arbitrary()?,
            offset: u.arbitrary()?,
            digest: u.arbitrary()?,
            bytes: u.arbitrary()?,
        }),
        Kind::Snapshot => {
            // The wire requires the map sorted by key without duplicates.
            let mut map = list(u, pair)?;
            map.sort_by(|a, b| a.0.cmp(&b.0));
            map.dedup_by(|a, b| a.0 == b.0);
            Message::Snapshot(Snapshot {
                generation: u.arbitrary()?,
                last: log_id(u)?,
                members: list(u, member)?,
                next_member_id: u.arbitrary()?,
                map,
                sessions: Vec::new(),
            })
        }
    })
}

fn option<T>(
    u: &mut Unstructured,
    item: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.arbitrary::<bool>()? {
        Some(item(u)?)
    } else {
        None
    })
}

fn client_op(u: &mut Unstructured) -> Result<ClientOp> {
    Ok(match u.int_in_range(0..=5u8)? {
        5 => ClientOp::OpenSession { id: u.arbitrary()? },
        0 => ClientOp::Status,
        1 => ClientOp::Get {
            key: option(u, string)?,
            linearizable: u.arbitrary()?,
        },
        2 => ClientOp::Set {
            key: string(u)?,
            value: string(u)?,
        },
        3 => ClientOp::Remove { key: string(u)? },
        _ => ClientOp::Update {
            map: list(u, pair)?,
        },
    })
}

fn client_reply(u: &mut Unstructured) -> Result<ClientReply> {
    const FAILURES: [ClientFailure; 9] = [
        ClientFailure::NoLeader,
        ClientFailure::Timeout,
        ClientFailure::Uncertain,
        ClientFailure::Busy,
        ClientFailure::TooLarge,
        ClientFailure::NotMember,
        ClientFailure::Invalid,
        ClientFailure::Stopping,
        ClientFailure::SessionExpired,
    ];
    Ok(match u.int_in_range(0..=4u8)? {
        0 => ClientReply::Status(NodeStatus {
            addr: string(u)?,
            id: option(u, node_id)?,
            state: string(u)?,
            term: term(u)?,
            leader: option(u, string)?,
            members: list(u, member)?,
            version: version(u)?,
            since_heartbeat_ms: u.arbitrary()?,
            generation: u.arbitrary()?,
        }),
        1 => ClientReply::Map {
            version: version(u)?,
            map: list(u, pair)?,
        },
        2 => ClientReply::Value {
            version: version(u)?,
            value: option(u, string)?,
        },
        3 => ClientReply::Written {
            version: version(u)?,
        },
        _ => ClientReply::Failed {
            failure: *u.choose(&FAILURES)?,
            message: string(u)?,
        },
    })
}

fn frame(u: &mut Unstructured) -> Result<Frame> {
    let kind = *u.choose(&Kind::ALL)?;
    let tag = if u.arbitrary()? {
        let len = u.int_in_range(TAG_BYTES_MIN..=TAG_BYTES_MAX)?;
        let mut tag = vec![0; len];
        u.fill_buffer(&mut tag)?;
        Some(tag)
    } else {
        None
    };
    Ok(Frame {
        cluster_id: u.arbitrary()?,
        generation: u.arbitrary()?,
        sender: node_id(u)?,
        term: term(u)?,
        message: message(u, kind)?,
        tag,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(original) = frame(&mut u) else {
        return;
    };
    let Ok(key) = u.arbitrary::<[u8; KEY_BYTES]>() else {
        return;
    };
    signed(&original, Keyring::new(key), &mut u);
    let encoded = match original.to_bytes(FRAME_BYTES_MAX) {
        Ok(encoded) => encoded,
        Err(EncodeError::TooLarge { .. }) => return,
        Err(e) => panic!("valid frame {original:?} refused: {e}"),
    };
    assert_eq!(encoded.len(), original.encoded_len());
    let limits = DecodeLimits {
        cluster_id: Some(original.cluster_id),
        frame_bytes_max: FRAME_BYTES_MAX,
    };

    let decoded = decode_frame(&encoded, &limits)
        .unwrap_or_else(|e| panic!("valid frame {original:?} not decoded: {e}"));
    assert_eq!(decoded, original);
    assert_eq!(decoded.to_bytes(FRAME_BYTES_MAX).unwrap(), encoded);

    let mut stream = BytesMut::new();
    encode_stream_frame(&original, &mut stream, FRAME_BYTES_MAX).unwrap();
    assert_eq!(&stream[LENGTH_PREFIX_BYTES..], &encoded[..]);
    let streamed = StreamDecoder::new(limits)
        .decode(&mut stream)
        .unwrap_or_else(|e| panic!("valid stream frame {original:?} not decoded: {e}"));
    assert_eq!(streamed.as_ref(), Some(&original));
    assert!(stream.is_empty(), "stream frame not fully consumed");

    let Ok(bit) = u.int_in_range(0..=encoded.len() * 8 - 1) else {
        return;
    };
    let mut flipped = encoded.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    let body = flipped.len() - CHECKSUM_BYTES;
    let carried = u32::from_be_bytes(flipped[body..].try_into().unwrap());
    assert_ne!(
        crc32fast::hash(&flipped[..body]),
        carried,
        "crc32 missed a one-bit error"
    );
    if let Ok(frame) = decode_frame(&flipped, &limits) {
        // Reached only because fuzzing builds skip the checksum comparison.
        let reencoded = frame.to_bytes(FRAME_BYTES_MAX).unwrap();
        assert_eq!(reencoded.len(), flipped.len());
        assert_eq!(&reencoded[..body], &flipped[..body]);
        // The encoding is one-to-one: a flip outside the trailer must give
        // another frame, and a flip inside it the same one.
        assert_eq!(frame == original, bit / 8 >= body, "bit {bit} flipped");
    }
});

/// The frame signed with `keys`: verifies, re-encodes to itself, and no
/// one-bit change outside the crc32 is accepted.
fn signed(original: &Frame, keys: Keyring, u: &mut Unstructured) {
    let mut encoded = BytesMut::new();
    match original.encode_signed(&mut encoded, FRAME_BYTES_MAX, Some(&keys)) {
        Ok(len) => assert_eq!(len, original.signed_len(Some(&keys))),
        Err(EncodeError::TooLarge { .. }) => return,
        Err(e) => panic!("valid frame {original:?} refused: {e}"),
    }
    let limits = DecodeLimits {
        cluster_id: Some(original.cluster_id),
        frame_bytes_max: FRAME_BYTES_MAX,
    };
    let decoded = decode_frame_keyed(&encoded, &limits, Some(&keys))
        .unwrap_or_else(|e| panic!("signed frame {original:?} not verified: {e}"));
    assert_eq!(decoded.message, original.message);
    assert_eq!(decoded.tag.as_ref().map(Vec::len), Some(TAG_BYTES));
    assert_eq!(decoded.to_bytes(FRAME_BYTES_MAX).unwrap(), encoded);
    assert_eq!(
        decode_frame_keyed(&encoded, &limits, None),
        Err(DecodeError::BadTag { len: TAG_BYTES })
    );

    let Ok(bit) = u.int_in_range(0..=encoded.len() * 8 - 1) else {
        return;
    };
    let mut flipped = encoded.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    let body = flipped.len() - CHECKSUM_BYTES;
    let accepted = decode_frame_keyed(&flipped, &limits, Some(&keys));
    if bit / 8 < body {
        assert!(accepted.is_err(), "bit {bit} flipped and still verified");
    }
}
