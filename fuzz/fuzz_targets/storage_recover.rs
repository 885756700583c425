//! Arbitrary bytes as a data directory's files after a crash.
//!
//! Recovery must never panic or allocate from a declared length, whatever
//! the disk holds; it either refuses (damage inside the log, a bad image)
//! or cuts only a torn last record, and what it keeps of a log must read
//! back the same on a second recovery, with no damage left (the cut is
//! where appending goes on). Fuzzing builds skip checksum comparisons, and the target puts valid
//! file headers in front of the fuzzer's bytes most of the time, so the
//! records behind them are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simple_raft::storage::format::{encode_image, log_header, recover, FileHeader, HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the shape: raw bytes or a valid header in
    // front of them; a log alone, or an image too (split at the second
    // byte); the generations of both.
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let raw = shape & 0x80 != 0;
    let header = |generation: u8| FileHeader {
        cluster_id: 0,
        generation: u64::from(generation),
    };
    let (image, log_body) = if shape & 1 == 1 && !rest.is_empty() {
        let at = usize::from(rest[0]).min(rest.len() - 1) + 1;
        (Some(&rest[1..at]), &rest[at..])
    } else {
        (None, rest)
    };
    let image: Option<Vec<u8>> = image.map(|body| {
        if raw {
            return body.to_vec();
        }
        // A valid header and length; the body's checksum is not compared.
        let mut file = encode_image(&Default::default(), header((shape >> 1) & 3));
        file.truncate(HEADER_BYTES);
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&[0; 4]);
        file.extend_from_slice(body);
        file
    });
    let log: Vec<u8> = if raw {
        log_body.to_vec()
    } else {
        let mut file = log_header(header((shape >> 3) & 3)).to_vec();
        file.extend_from_slice(log_body);
        file
    };
    let image = image.as_deref();
    let log = &log[..];
    let Ok(first) = recover(image, Some(log), 0) else {
        return;
    };
    let Some(keep) = first.log_keep_bytes else {
        return;
    };
    let again =
        recover(image, Some(&log[..keep]), 0).expect("a log cut where recovery cut it recovers");
    assert_eq!(again.damage, None, "damage left after the cut");
    assert_eq!(
        again.image, first.image,
        "the cut changed what is recovered"
    );
    // An image recovered re-encodes and recovers to itself.
    let header = FileHeader {
        cluster_id: 0,
        generation: first.generation,
    };
    let bytes = encode_image(&first.image, header);
    let reread = recover(Some(&bytes), None, 0).expect("own image reads");
    assert_eq!(reread.image, first.image);
});
