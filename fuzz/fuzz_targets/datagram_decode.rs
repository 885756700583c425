//! Arbitrary bytes as one datagram.
//!
//! Beyond "never panics": whatever the decoder accepts must re-encode to the
//! very bytes it came from, so there is exactly one encoding of every frame
//! and a relay or a log can never alter a frame by decoding and re-encoding
//! it. Fuzzing builds skip the checksum comparison, so the trailer is the one
//! part that may differ. The same bytes go through the keyed decoder too,
//! which must never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simple_raft::wire::{decode_frame, decode_frame_keyed, DecodeLimits, Keyring, CHECKSUM_BYTES};

/// The largest datagram UDP can carry, so the size limit is never what
/// stops the fuzzer.
const FRAME_BYTES_MAX: usize = 65_535;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        cluster_id: None,
        frame_bytes_max: FRAME_BYTES_MAX,
    };
    let keys = Keyring::new([0x42; 32]).with_accepted([0x24; 32]);
    if let Ok(frame) = decode_frame_keyed(data, &limits, Some(&keys)) {
        // Untagged frames are refused with these keys, and no fuzzer forges
        // a tag.
        panic!("unsigned or forged frame verified: {frame:?}");
    }
    let _ = decode_frame_keyed(data, &limits, None);
    let Ok(frame) = decode_frame(data, &limits) else {
        return;
    };
    assert_eq!(frame.encoded_len(), data.len(), "encoded_len of {frame:?}");
    let encoded = frame
        .to_bytes(FRAME_BYTES_MAX)
        .expect("a decoded frame re-encodes within the limit it was decoded with");
    let body = data.len() - CHECKSUM_BYTES;
    assert_eq!(encoded.len(), data.len(), "re-encoded length of {frame:?}");
    assert_eq!(&encoded[..body], &data[..body], "re-encoding of {frame:?}");
});
