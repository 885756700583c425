//! Cluster keys on the wire: signed frames of every kind verify under any
//! key of a keyring and under no other; the tag is checked before any field
//! of the frame is trusted; an altered frame is never accepted; key files
//! parse or say which line is wrong, never showing a key.

#[path = "support/frames.rs"]
mod frames;

use bytes::BytesMut;
use frames::{frame, golden, roomy, CLUSTER};
use proptest::prelude::*;
use simple_raft::wire::*;

const KEY_A: [u8; 32] = [0xa1; 32];
const KEY_B: [u8; 32] = [0xb2; 32];

fn signed_bytes(frame: &Frame, keys: Option<&Keyring>) -> Vec<u8> {
    let mut out = BytesMut::new();
    let len = frame
        .encode_signed(&mut out, 1 << 20, keys)
        .expect("encodes");
    assert_eq!(len, out.len());
    assert_eq!(len, frame.signed_len(keys));
    out.to_vec()
}

fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - CHECKSUM_BYTES;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn heartbeat() -> Frame {
    golden().into_iter().find(|g| g.0 == "heartbeat").unwrap().1
}

fn keyed(bytes: &[u8], keys: Option<&Keyring>) -> Result<Frame, DecodeError> {
    decode_frame_keyed(bytes, &roomy(CLUSTER), keys)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_frames_verify_under_any_key_of_the_ring_and_no_other(mut f in frame()) {
        f.cluster_id = CLUSTER;
        f.tag = None;
        let a = Keyring::new(KEY_A);
        let bytes = signed_bytes(&f, Some(&a));
        let decoded = keyed(&bytes, Some(&a)).expect("verifies under its key");
        prop_assert_eq!(decoded.tag.as_ref().map(Vec::len), Some(TAG_BYTES));
        let mut expected = f.clone();
        expected.tag = decoded.tag.clone();
        prop_assert_eq!(&decoded, &expected);
        // One encoding: the decoded frame (with its tag) re-encodes to the
        // same bytes.
        prop_assert_eq!(decoded.to_bytes(1 << 20).unwrap().to_vec(), bytes.clone());

        let rotating = Keyring::new(KEY_B).with_accepted(KEY_A);
        prop_assert!(keyed(&bytes, Some(&rotating)).is_ok());
        let other = Keyring::new(KEY_B);
        prop_assert_eq!(keyed(&bytes, Some(&other)), Err(DecodeError::BadTag { len: TAG_BYTES }));
        prop_assert_eq!(keyed(&bytes, None), Err(DecodeError::BadTag { len: TAG_BYTES }));

        let plain = signed_bytes(&f, None);
        prop_assert_eq!(keyed(&plain, Some(&a)), Err(DecodeError::MissingTag));
        prop_assert_eq!(keyed(&plain, None), Ok(f.clone()));
    }

    #[test]
    fn any_bit_flip_of_a_signed_frame_is_refused_even_with_the_crc_resealed(
        mut f in frame(),
        bit in any::<prop::sample::Index>(),
    ) {
        f.cluster_id = CLUSTER;
        let keys = Keyring::new(KEY_A);
        let bytes = signed_bytes(&f, Some(&keys));
        let body = bytes.len() - CHECKSUM_BYTES;
        let bit = bit.index(body * 8);
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let flipped = reseal(flipped);
        let refused = keyed(&flipped, Some(&keys));
        prop_assert!(
            matches!(
                refused,
                Err(DecodeError::BadTag { .. }
                    | DecodeError::MissingTag
                    | DecodeError::BadTagLength { .. }
                    | DecodeError::TooShort { .. }
                    | DecodeError::BadMagic { .. }
                    | DecodeError::UnsupportedVersion { .. })
            ),
            "bit {} flipped: {:?}", bit, refused
        );
    }
}

#[test]
fn the_tag_is_checked_before_any_field_is_trusted() {
    let keys = Keyring::new(KEY_A);
    let wrong = Keyring::new(KEY_B);
    // A frame that is wrong in every way the header can be, signed with a
    // key this node does not have: refused for the tag, not for the rest.
    let mut f = heartbeat();
    f.cluster_id = CLUSTER + 1;
    let mut bytes = signed_bytes(&f, Some(&wrong));
    bytes[3] = 0xEE; // unknown kind
    bytes[4] |= 0x80; // reserved flag
    let bytes = reseal(bytes);
    assert_eq!(
        keyed(&bytes, Some(&keys)),
        Err(DecodeError::BadTag { len: TAG_BYTES })
    );
    // Untagged: missing before anything else.
    let mut plain = signed_bytes(&f, None);
    plain[3] = 0xEE;
    let plain = reseal(plain);
    assert_eq!(keyed(&plain, Some(&keys)), Err(DecodeError::MissingTag));
    // With the right key, the header's faults are found after the tag.
    let right = signed_bytes(&f, Some(&keys));
    assert!(matches!(
        keyed(&right, Some(&keys)),
        Err(DecodeError::WrongCluster { .. })
    ));
    // The checksum still comes first.
    let mut corrupt = right.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        keyed(&corrupt, Some(&keys)),
        Err(DecodeError::BadChecksum { .. })
    ));
}

#[test]
fn tag_lengths_outside_the_wire_range_are_refused() {
    let keys = Keyring::new(KEY_A);
    let bytes = signed_bytes(&heartbeat(), Some(&keys));
    let len_at = bytes.len() - CHECKSUM_BYTES - 1;
    for len in [0u8, 1, 15, 33, 255] {
        let mut bad = bytes.clone();
        bad[len_at] = len;
        assert_eq!(
            keyed(&reseal(bad), Some(&keys)),
            Err(DecodeError::BadTagLength {
                len: len.into(),
                min: TAG_BYTES_MIN,
                max: TAG_BYTES_MAX
            }),
            "tag length {len}"
        );
    }
    // A tag length that fits the range but not the frame.
    let mut short = signed_bytes(&heartbeat(), None);
    short[4] |= FLAG_TAGGED;
    let at = short.len() - CHECKSUM_BYTES - 1;
    short[at] = 16;
    assert!(matches!(
        keyed(&reseal(short), Some(&keys)),
        Err(DecodeError::TooShort { field: "tag", .. })
    ));
}

#[test]
fn a_keyring_listing_unkeyed_bridges_a_move_to_keys() {
    let f = heartbeat();
    let plain = signed_bytes(&f, None);
    let tagged = signed_bytes(&f, Some(&Keyring::new(KEY_A)));
    let step1 = Keyring::parse(&format!("unkeyed\n{}\n", hex::encode(KEY_A))).unwrap();
    let step2 = Keyring::parse(&format!("{}\nunkeyed\n", hex::encode(KEY_A))).unwrap();
    let done = Keyring::parse(&hex::encode(KEY_A)).unwrap();
    // Step 1 sends untagged, steps 2 and 3 tagged with the key.
    assert_eq!(signed_bytes(&f, Some(&step1)), plain);
    assert_eq!(signed_bytes(&f, Some(&step2)), tagged);
    assert_eq!(signed_bytes(&f, Some(&done)), tagged);
    for ring in [&step1, &step2] {
        assert!(keyed(&plain, Some(ring)).is_ok());
        assert!(keyed(&tagged, Some(ring)).is_ok());
    }
    assert_eq!(keyed(&plain, Some(&done)), Err(DecodeError::MissingTag));
    assert!(keyed(&tagged, Some(&done)).is_ok());
}

#[test]
fn signed_stream_frames_round_trip() {
    let keys = Keyring::new(KEY_A);
    let f = heartbeat();
    let mut out = BytesMut::new();
    let written = encode_stream_frame_signed(&f, &mut out, 1 << 20, Some(&keys)).unwrap();
    assert_eq!(written, LENGTH_PREFIX_BYTES + f.signed_len(Some(&keys)));
    let body = &out[LENGTH_PREFIX_BYTES..];
    let decoded = keyed(body, Some(&keys)).unwrap();
    assert_eq!(decoded.message, f.message);
    // Too large: nothing written.
    let mut kept = BytesMut::from(&b"kept"[..]);
    assert!(encode_stream_frame_signed(&f, &mut kept, 20, Some(&keys)).is_err());
    assert_eq!(&kept[..], b"kept");
}

#[test]
fn key_files_parse_with_comments_and_say_which_line_is_wrong() {
    let a = hex::encode(KEY_A);
    let b = hex::encode(KEY_B).to_uppercase();
    let text = format!("# the cluster's keys\n\n{a}  # primary\n  {b}\n");
    let ring = Keyring::parse(&text).unwrap();
    assert_eq!(ring.entries().len(), 2);
    assert_eq!(
        ring.entries()[0],
        KeyEntry::Key(ClusterKey::new(KEY_A)),
        "the first line is the primary"
    );
    assert_eq!(ring, Keyring::new(KEY_A).with_accepted(KEY_B));
    assert!(!ring.accepts_untagged());

    let secret_ish = "6a1f0c8e9b2d4f7a8c3e5b1d9f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4";
    let bad = format!("{a}\n{secret_ish}\n");
    let error = Keyring::parse(&bad).unwrap_err();
    assert_eq!(error, KeyringError::Malformed { line: 2, chars: 63 });
    let message = error.to_string();
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains(secret_ish), "{message}");

    assert_eq!(Keyring::parse("# nothing\n\n"), Err(KeyringError::Empty));
    assert_eq!(
        Keyring::parse(&format!("{a}\n{a}\n")),
        Err(KeyringError::Duplicate { line: 2 })
    );
    assert!(matches!(
        Keyring::parse("zz".repeat(32).as_str()),
        Err(KeyringError::Malformed { line: 1, .. })
    ));
    let many: String = (0..=KEYRING_ENTRIES_MAX as u8)
        .map(|i| format!("{}\n", hex::encode([i; 32])))
        .collect();
    assert!(matches!(
        Keyring::parse(&many),
        Err(KeyringError::TooMany { .. })
    ));
}

#[test]
fn keys_never_show_in_debug_output() {
    let ring = Keyring::new(KEY_A).with_accepted(KEY_B);
    let shown = format!("{ring:?} {}", ring.describe());
    for key in [KEY_A, KEY_B] {
        assert!(!shown.contains(&hex::encode(key)), "{shown}");
        assert!(!shown.contains(&hex::encode(&key[..4])), "{shown}");
    }
    let fingerprint = ClusterKey::new(KEY_A).fingerprint();
    assert_eq!(fingerprint.len(), 8);
    assert!(shown.contains(&fingerprint), "{shown}");
    assert_ne!(fingerprint, ClusterKey::new(KEY_B).fingerprint());
}

#[test]
fn new_decode_reasons_have_names() {
    assert_eq!(DecodeError::MissingTag.reason().name(), "missing_tag");
    assert_eq!(DecodeError::BadTag { len: 16 }.reason().name(), "bad_tag");
    // Reasons are append-only: these keep their counter positions.
    assert_eq!(DecodeReason::ALL[13], DecodeReason::MissingTag);
    assert_eq!(DecodeReason::ALL[14], DecodeReason::BadTag);
}
