//! Arbitrary bytes as what a TCP peer sent.
//!
//! Two ways in: the incremental [`StreamDecoder::decode`] over a receive
//! buffer, and [`StreamDecoder::decode_exact`] over the whole input. Every
//! frame either accepts must re-encode to the bytes it consumed (apart from
//! the crc32 trailer, whose comparison fuzzing builds skip). The snapshot
//! chunks among the frames go into a [`SnapshotAssembly`], as a fetching
//! node's would: it must refuse or take each without panicking, never hold
//! more than its limit, and hand out only a whole of the announced size.
//!
//! Run it with `-use_value_profile=1`, as CI does: the frame magic is a
//! two-byte comparison, which libFuzzer only learns from with value
//! profiling, and without it this target can spend minutes in front of it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use simple_raft::wire::{
    decode_snapshot, encode_stream_frame, DecodeLimits, Frame, Message, SnapshotAssembly,
    StreamDecoder, CHECKSUM_BYTES,
};

/// Above the inputs libFuzzer makes by default, so the limit is rarely what
/// refuses a frame, yet small enough that reserving for an announced length
/// stays cheap.
const FRAME_BYTES_MAX: usize = 1 << 16;
/// A stream frame is at least 20 bytes, so a fuzz input never holds more
/// than a few thousand; the bound only guards against a decoder that
/// returns frames without consuming bytes.
const FRAMES_MAX: usize = 4096;
/// The reassembly's limit: small, so that fuzz inputs reach it.
const SNAPSHOT_BYTES_MAX: usize = 4096;

/// Asserts that `frame`, encoded as a stream frame, is `consumed` apart from
/// the crc32 trailer.
fn assert_reencodes(frame: &Frame, consumed: &[u8]) {
    let mut out = BytesMut::new();
    let written = encode_stream_frame(frame, &mut out, FRAME_BYTES_MAX)
        .expect("a decoded frame re-encodes within the limit it was decoded with");
    assert_eq!(written, out.len());
    assert_eq!(out.len(), consumed.len(), "re-encoded length of {frame:?}");
    let body = consumed.len() - CHECKSUM_BYTES;
    assert_eq!(&out[..body], &consumed[..body], "re-encoding of {frame:?}");
}

fuzz_target!(|data: &[u8]| {
    let decoder = StreamDecoder::new(DecodeLimits {
        cluster_id: None,
        frame_bytes_max: FRAME_BYTES_MAX,
    });

    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    let mut assembly = SnapshotAssembly::new(SNAPSHOT_BYTES_MAX);
    for _ in 0..FRAMES_MAX {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let used = before - buf.len();
                assert!(used > 0, "a frame was decoded from no bytes");
                assert_reencodes(&frame, &data[offset..offset + used]);
                offset += used;
                if let Message::SnapshotChunk(chunk) = &frame.message {
                    if let Ok(Some(whole)) = assembly.push(chunk) {
                        assert_eq!(whole.len() as u64, chunk.total_bytes);
                        assert!(whole.len() <= SNAPSHOT_BYTES_MAX);
                        let _ = decode_snapshot(&whole);
                    }
                    assert!(assembly.received_bytes() <= SNAPSHOT_BYTES_MAX);
                }
            }
            Ok(None) => break,
            Err(_) => {
                assert_eq!(buf.len(), before, "a refused frame consumed bytes");
                break;
            }
        }
    }
    assert_eq!(
        &buf[..],
        &data[offset..],
        "the buffer lost unconsumed bytes"
    );

    if let Ok(frame) = decoder.decode_exact(data) {
        assert_reencodes(&frame, data);
    }
});
