//! The golden frames written in docs/WIRE.md, checked byte for byte in both
//! directions, so the document and the code cannot drift apart.

#[path = "support/frames.rs"]
mod frames;

use bytes::BytesMut;
use frames::{golden, roomy, CLUSTER};
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
