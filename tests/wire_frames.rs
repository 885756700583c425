//! Properties of the frame layer: round trips, canonical encoding, and the
//! rejection of every kind of damaged or foreign frame.

#[path = "support/frames.rs"]
mod frames;

use bytes::{BufMut, BytesMut};
use frames::{frame, golden, roomy, CLUSTER};
use proptest::prelude::*;
use simple_raft::wire::*;

fn encode(frame: &Frame) -> Vec<u8> {
    frame.to_bytes(1 << 20).expect("encodes").to_vec()
}

/// Re-computes the crc32 trailer, so a test can change a header field and
/// still get past the checksum to the check it means to exercise.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - CHECKSUM_BYTES;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn heartbeat() -> Frame {
    golden().into_iter().find(|g| g.0 == "heartbeat").unwrap().1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_kind_round_trips_and_reencodes_identically(frame in frame()) {
        let bytes = encode(&frame);
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        let decoded = decode_frame(&bytes, &roomy(frame.cluster_id)).expect("decodes");
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(encode(&decoded), bytes);
    }

    #[test]
    fn stream_frames_round_trip_back_to_back(a in frame(), b in frame()) {
        let mut buf = BytesMut::new();
        encode_stream_frame(&a, &mut buf, 1 << 20).unwrap();
        let b = Frame { cluster_id: a.cluster_id, ..b };
        encode_stream_frame(&b, &mut buf, 1 << 20).unwrap();
        let decoder = StreamDecoder::new(roomy(a.cluster_id));
        prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(a));
        prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(b));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn random_bytes_never_panic_and_decode_only_canonically(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(frame) = decode_frame(&bytes, &roomy(0).with_any_cluster()) {
            prop_assert_eq!(encode(&frame), bytes);
        }
    }
}

trait AnyCluster {
    fn with_any_cluster(self) -> Self;
}
impl AnyCluster for DecodeLimits {
    fn with_any_cluster(mut self) -> Self {
        self.cluster_id = None;
        self
    }
}

#[test]
fn heartbeat_and_ack_fit_in_32_bytes_at_realistic_sizes() {
    // A cluster that has run for weeks: term 1000, a million changes, a
    // million heartbeat rounds, member ids past 127.
    let heartbeat = Frame::new(
        0xDEAD_BEEF,
        NodeId(200),
        1000,
        Message::Heartbeat(Heartbeat {
            last: LogId {
                term: 1000,
                version: 1_000_000,
            },
            commit: 1_000_000,
            seq: 1_000_000,
        }),
    );
    let ack = Frame::new(
        0xDEAD_BEEF,
        NodeId(201),
        1000,
        Message::HeartbeatAck(HeartbeatAck {
            seq: 1_000_000,
            matched: true,
            version: 1_000_000,
        }),
    );
    let heartbeat_len = encode(&heartbeat).len();
    let ack_len = encode(&ack).len();
    assert!(heartbeat_len <= 32, "heartbeat is {heartbeat_len} bytes");
    assert!(ack_len <= 32, "heartbeat ack is {ack_len} bytes");
}

#[test]
fn every_single_bit_flip_is_rejected() {
    for (name, frame, _) in golden() {
        let bytes = encode(&frame);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let result = decode_frame(&damaged, &roomy(CLUSTER));
            assert!(result.is_err(), "{name}: flip of bit {bit} was accepted");
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    for (name, frame, _) in golden() {
        let bytes = encode(&frame);
        for len in 0..bytes.len() {
            assert!(
                decode_frame(&bytes[..len], &roomy(CLUSTER)).is_err(),
                "{name}: truncation to {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_rejected_even_with_a_valid_checksum() {
    let bytes = encode(&heartbeat());
    // Garbage after the trailer: the checksum no longer matches.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode_frame(&longer, &roomy(CLUSTER)),
        Err(DecodeError::BadChecksum { .. })
    ));
    // A byte slipped in after the payload, and the checksum recomputed.
    let body = bytes.len() - CHECKSUM_BYTES;
    let mut slipped = bytes[..body].to_vec();
    slipped.push(0xAA);
    slipped.extend_from_slice(&[0; 4]);
    assert_eq!(
        decode_frame(&reseal(slipped), &roomy(CLUSTER)),
        Err(DecodeError::TrailingBytes {
            count: 1,
            after: "payload"
        })
    );
    // A payload whose declared length is longer than its body.
    let ack = Frame::new(
        CLUSTER,
        NodeId(1),
        1,
        Message::VoteResponse(VoteResponse { granted: true }),
    );
    let mut bytes = encode(&ack);
    let len_at = FIXED_HEADER_BYTES + 2; // sender and term are one byte each
    assert_eq!(bytes[len_at], 1);
    bytes[len_at] = 2;
    bytes.insert(len_at + 2, 0);
    assert_eq!(
        decode_frame(&reseal(bytes), &roomy(CLUSTER)),
        Err(DecodeError::TrailingBytes {
            count: 1,
            after: "payload body"
        })
    );
}

#[test]
fn wrong_magic_gives_bad_magic() {
    let mut bytes = encode(&heartbeat());
    bytes[0] = b'X';
    assert_eq!(
        decode_frame(&reseal(bytes), &roomy(CLUSTER)),
        Err(DecodeError::BadMagic {
            found: *b"XR",
            expected: MAGIC
        })
    );
}

#[test]
fn wrong_version_gives_unsupported_version_before_the_checksum() {
    let mut bytes = encode(&heartbeat());
    bytes[2] = 2;
    // Not resealed: a future version may place its checksum differently.
    assert_eq!(
        decode_frame(&bytes, &roomy(CLUSTER)),
        Err(DecodeError::UnsupportedVersion {
            found: 2,
            supported: WIRE_VERSION
        })
    );
}

#[test]
fn wrong_cluster_gives_wrong_cluster() {
    let frame = Frame {
        cluster_id: 7,
        ..heartbeat()
    };
    assert_eq!(
        decode_frame(&encode(&frame), &roomy(CLUSTER)),
        Err(DecodeError::WrongCluster {
            found: 7,
            expected: CLUSTER
        })
    );
}

#[test]
fn unknown_kind_gives_unknown_kind() {
    for kind in [0u8, 24, 200, 255] {
        let mut bytes = encode(&heartbeat());
        bytes[3] = kind;
        assert_eq!(
            decode_frame(&reseal(bytes), &roomy(CLUSTER)),
            Err(DecodeError::UnknownKind { found: kind })
        );
    }
}

#[test]
fn kinds_keep_their_numbers() {
    // Append-only: these numbers are on the wire and must never change.
    let numbers: Vec<(u8, &str)> = Kind::ALL.iter().map(|k| (*k as u8, k.name())).collect();
    assert_eq!(
        numbers,
        [
            (1, "heartbeat"),
            (2, "heartbeat_ack"),
            (3, "pre_vote_request"),
            (4, "pre_vote_response"),
            (5, "vote_request"),
            (6, "vote_response"),
            (7, "append"),
            (8, "append_ack"),
            (9, "introduce"),
            (10, "redirect"),
            (11, "leave"),
            (12, "timeout_now"),
            (13, "read_index_request"),
            (14, "read_index_response"),
            (15, "welcome"),
            (16, "snapshot_request"),
            (17, "snapshot"),
            (18, "fetch_snapshot"),
            (19, "client_request"),
            (20, "client_response"),
            (21, "join_challenge"),
            (22, "join_proof"),
            (23, "snapshot_chunk"),
        ]
    );
    for kind in Kind::ALL {
        assert_eq!(Kind::from_u8(kind as u8), Some(kind));
    }
}

#[test]
fn reserved_flags_are_rejected() {
    let mut bytes = encode(&heartbeat());
    bytes[4] = 0x80;
    assert_eq!(
        decode_frame(&reseal(bytes), &roomy(CLUSTER)),
        Err(DecodeError::ReservedFlags { found: 0x80 })
    );
}

#[test]
fn non_canonical_varints_are_rejected_in_header_and_payload() {
    // Header: the sender id 3 written as two bytes.
    let bytes = encode(&heartbeat());
    let mut padded = bytes[..FIXED_HEADER_BYTES].to_vec();
    padded.extend_from_slice(&[0x83, 0x00]);
    padded.extend_from_slice(&bytes[FIXED_HEADER_BYTES + 1..]);
    assert_eq!(
        decode_frame(&reseal(padded), &roomy(CLUSTER)),
        Err(DecodeError::NonCanonical { field: "sender" })
    );
    // Payload: a vote response's bool is fine, but a heartbeat's seq 9 as
    // two bytes is not, even though postcard would read it.
    let frame = heartbeat();
    let bytes = encode(&frame);
    let payload_len = frame.message.payload_len();
    let payload_at = bytes.len() - CHECKSUM_BYTES - payload_len;
    let mut long = bytes[..payload_at - 1].to_vec();
    long.push(payload_len as u8 + 1);
    long.extend_from_slice(&bytes[payload_at..bytes.len() - CHECKSUM_BYTES - 1]);
    long.extend_from_slice(&[0x89, 0x00]);
    long.extend_from_slice(&[0; 4]);
    assert_eq!(
        decode_frame(&reseal(long), &roomy(CLUSTER)),
        Err(DecodeError::NonCanonical { field: "payload" })
    );
}

#[test]
fn unsorted_snapshot_maps_are_rejected() {
    let frame = Frame::new(
        CLUSTER,
        NodeId(1),
        1,
        Message::Snapshot(Snapshot {
            map: vec![("b".into(), "1".into()), ("a".into(), "2".into())],
            ..Snapshot::default()
        }),
    );
    assert!(matches!(
        decode_frame(&encode(&frame), &roomy(CLUSTER)),
        Err(DecodeError::NonCanonical { .. })
    ));
}

#[test]
fn frames_over_the_limit_are_refused_both_ways() {
    let frame = Frame::new(
        CLUSTER,
        NodeId(1),
        1,
        Message::Append(Append {
            entries: vec![
                Entry {
                    term: 1,
                    change: Change::Set {
                        key: "k".into(),
                        value: "v".repeat(2000)
                    }
                };
                1
            ],
            ..Append::default()
        }),
    );
    assert!(matches!(
        frame.to_bytes(DATAGRAM_BYTES_MAX_DEFAULT),
        Err(EncodeError::TooLarge { .. })
    ));
    let bytes = encode(&frame);
    assert!(matches!(
        decode_frame(&bytes, &DecodeLimits::datagram(CLUSTER)),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn stream_length_is_checked_before_buffering() {
    let decoder = StreamDecoder::new(DecodeLimits {
        cluster_id: Some(CLUSTER),
        frame_bytes_max: 4096,
    });
    let mut buf = BytesMut::new();
    buf.put_u32(u32::MAX);
    let capacity_before = buf.capacity();
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::TooLarge {
            len: u32::MAX as u64,
            limit: 4096
        })
    );
    assert_eq!(
        buf.capacity(),
        capacity_before,
        "nothing was reserved for the frame"
    );
    assert!(matches!(
        stream_frame_len([0, 0, 0, 3], 4096),
        Err(DecodeError::TooShort { .. })
    ));
}

#[test]
fn stream_frames_arriving_byte_by_byte_decode_once_complete() {
    let frame = heartbeat();
    let mut wire = BytesMut::new();
    encode_stream_frame(&frame, &mut wire, 4096).unwrap();
    let decoder = StreamDecoder::new(roomy(CLUSTER));
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        buf.put_u8(*byte);
        let got = decoder.decode(&mut buf).unwrap();
        if i + 1 < wire.len() {
            assert_eq!(got, None, "decoded early at byte {i}");
        } else {
            assert_eq!(got, Some(frame.clone()));
        }
    }
}

#[test]
fn stream_truncations_and_trailing_bytes_are_rejected() {
    let mut wire = BytesMut::new();
    encode_stream_frame(&heartbeat(), &mut wire, 4096).unwrap();
    let decoder = StreamDecoder::new(roomy(CLUSTER));
    for len in 0..wire.len() {
        assert!(
            decoder.decode_exact(&wire[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    let mut longer = wire.to_vec();
    longer.push(0);
    assert!(matches!(
        decoder.decode_exact(&longer),
        Err(DecodeError::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn a_huge_declared_sequence_in_a_small_frame_is_malformed_not_an_allocation() {
    // An Introduce whose seed list claims 2^32-1 entries in a 40-byte frame.
    let mut payload = vec![0u8, 0]; // empty addr, incarnation 0
    payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let mut bytes = vec![];
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&[WIRE_VERSION, Kind::Introduce as u8, 0]);
    bytes.extend_from_slice(&CLUSTER.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, payload.len() as u8]);
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&[0; 4]);
    assert!(matches!(
        decode_frame(&reseal(bytes), &roomy(CLUSTER)),
        Err(DecodeError::MalformedPayload {
            kind: "introduce",
            ..
        })
    ));
}

#[test]
fn every_decode_reason_has_a_distinct_counter_slot() {
    for (i, reason) in DecodeReason::ALL.iter().enumerate() {
        assert_eq!(reason.index(), i);
    }
    let names: std::collections::BTreeSet<_> = DecodeReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), DecodeReason::ALL.len());
}

#[test]
fn a_refused_stream_frame_leaves_the_buffer_as_it_was() {
    let mut frame = Frame::new(CLUSTER, NodeId(1), 1, Message::Leave(Leave));
    frame.tag = Some(vec![0; 3]);
    let mut out = BytesMut::from(&b"kept"[..]);
    assert!(matches!(
        encode_stream_frame(&frame, &mut out, 1 << 20),
        Err(EncodeError::BadTagLength { len: 3, .. })
    ));
    assert_eq!(&out[..], b"kept");
}
