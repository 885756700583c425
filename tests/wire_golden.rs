//! The golden frames written in docs/WIRE.md, checked byte for byte in both
//! directions, so the document and the code cannot drift apart.

#[path = "support/frames.rs"]
mod frames;

use bytes::BytesMut;
use frames::{golden, golden_keys, roomy, CLUSTER, GOLDEN_KEY};
use simple_raft::wire::*;

/// Reads every `<!-- golden: NAME -->` marker of docs/WIRE.md and the hex
/// block that follows it.
fn vectors_in_doc() -> Vec<(String, Vec<u8>)> {
    let doc = include_str!("../docs/WIRE.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- golden: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```text",
            "golden {name}: a ```text block must follow"
        );
        let mut hex_digits = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let data = line.split('|').next().unwrap_or_default();
            hex_digits.extend(data.chars().filter(|c| !c.is_whitespace()));
        }
        let bytes = hex::decode(&hex_digits).unwrap_or_else(|e| panic!("golden {name}: {e}"));
        out.push((name.to_string(), bytes));
    }
    out
}

fn encoding_of(frame: &Frame, stream: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    if stream {
        encode_stream_frame(frame, &mut out, 1 << 20).unwrap();
    } else {
        frame.encode(&mut out, DATAGRAM_BYTES_MAX_DEFAULT).unwrap();
    }
    out.to_vec()
}

#[test]
fn golden_frames_of_wire_md_match_byte_for_byte() {
    let doc = vectors_in_doc();
    let expected = golden();
    let doc_names: Vec<&str> = doc.iter().map(|(n, _)| n.as_str()).collect();
    let code_names: Vec<&str> = expected.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        doc_names, code_names,
        "docs/WIRE.md lists other golden frames"
    );
    for ((name, doc_bytes), (_, frame, stream)) in doc.iter().zip(&expected) {
        let encoded = encoding_of(frame, *stream);
        assert_eq!(
            hex::encode(&encoded),
            hex::encode(doc_bytes),
            "golden {name}: encoding differs from docs/WIRE.md"
        );
        let decoded = if *stream {
            StreamDecoder::new(roomy(CLUSTER)).decode_exact(doc_bytes)
        } else {
            decode_frame(doc_bytes, &DecodeLimits::datagram(CLUSTER))
        };
        assert_eq!(
            decoded.as_ref(),
            Ok(frame),
            "golden {name}: decoding differs"
        );
    }
}

/// The tagged golden frame is signed with the key written next to it, by
/// the algorithm written there: recomputed here from the BLAKE3 primitives
/// alone, so the document is enough to implement the tag.
#[test]
fn the_tagged_golden_frame_verifies_with_its_documented_key() {
    let doc = vectors_in_doc();
    let (_, bytes) = doc
        .iter()
        .find(|(name, _)| name == "heartbeat_tagged")
        .expect("docs/WIRE.md has heartbeat_tagged");
    let limits = DecodeLimits::datagram(CLUSTER);
    let frame = decode_frame_keyed(bytes, &limits, Some(&golden_keys())).expect("verifies");
    assert_eq!(frame.tag.as_ref().map(Vec::len), Some(TAG_BYTES));

    let trailer = TAG_BYTES + 1 + CHECKSUM_BYTES;
    let signed = &bytes[..bytes.len() - trailer];
    let mac_key = blake3::derive_key("simple-raft wire v1 frame tag", &GOLDEN_KEY);
    let mut hasher = blake3::Hasher::new_keyed(&mac_key);
    hasher.update(signed);
    hasher.update(&[TAG_BYTES as u8]);
    let mut tag = [0u8; TAG_BYTES];
    hasher.finalize_xof().fill(&mut tag);
    assert_eq!(frame.tag.as_deref(), Some(&tag[..]));
    assert_eq!(bytes[bytes.len() - CHECKSUM_BYTES - 1], TAG_BYTES as u8);

    let other = Keyring::new([7; 32]);
    assert_eq!(
        decode_frame_keyed(bytes, &limits, Some(&other)),
        Err(DecodeError::BadTag { len: TAG_BYTES })
    );
    assert_eq!(
        decode_frame_keyed(bytes, &limits, None),
        Err(DecodeError::BadTag { len: TAG_BYTES })
    );
}
