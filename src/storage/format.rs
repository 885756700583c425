//! The bytes of a data directory, without any file I/O: file headers, log
//! records, the image, and recovery from whatever a crash left. The
//! simulator runs recovery on byte buffers it tears at random; the data
//! directory runs it on the files.
//!
//! Two files:
//!
//! - `image`: everything durable at one moment ([`DurableImage`]: identity,
//!   term and vote, the committed state, the log after it), replaced
//!   atomically. Its header carries a generation number.
//! - `log`: records appended since the image of the same generation, each
//!   `length u32 LE | crc32 u32 LE | postcard(Record)`. A log of an older
//!   generation than the image predates it and is ignored; that is what
//!   makes replacing both files safe against a crash between the two.
//!
//! Both headers are `magic (6) | format version (1) | 0 (1) | cluster id
//! u32 LE | generation u64 LE | crc32 of the preceding 20 bytes u32 LE`.

use super::error::FormatError;
use crate::core::DurableImage;
pub use crate::core::Record;

/// The file of records since the last image.
pub const LOG_FILE: &str = "log";
/// The file with the last image.
pub const IMAGE_FILE: &str = "image";
/// Bytes of a file header.
pub const HEADER_BYTES: usize = 24;
/// Bytes before each log record's content: length and checksum.
pub const RECORD_HEADER_BYTES: usize = 8;
/// The format this version writes and reads.
pub const FORMAT_VERSION: u8 = 3;
/// Longest record content a log may hold: 1 GiB. Fixed by the format, not
/// by any setting, so that every record a node could write is read back
/// whatever the node is configured with when it restarts (lowering
/// `stream_frame_bytes_max` must not cut valid records off).
pub const RECORD_BYTES_MAX: usize = 1 << 30;

const LOG_MAGIC: [u8; 6] = *b"srlog\0";
const IMAGE_MAGIC: [u8; 6] = *b"srimg\0";

/// What a file header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The cluster the directory belongs to.
    pub cluster_id: u32,
    /// Which image the file belongs to.
    pub generation: u64,
}

fn encode_header(magic: [u8; 6], header: FileHeader) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..6].copy_from_slice(&magic);
    out[6] = FORMAT_VERSION;
    out[8..12].copy_from_slice(&header.cluster_id.to_le_bytes());
    out[12..20].copy_from_slice(&header.generation.to_le_bytes());
    let crc = crc32fast::hash(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_header(bytes: &[u8], magic: [u8; 6]) -> Result<FileHeader, FormatError> {
    if bytes.len() < HEADER_BYTES {
        return Err(FormatError::Truncated {
            missing: HEADER_BYTES - bytes.len(),
        });
    }
    if bytes[..6] != magic {
        return Err(FormatError::BadMagic);
    }
    if bytes[6] != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(bytes[6]));
    }
    if !checksum_ok(&bytes[..20], u32_at(bytes, 20)) || bytes[7] != 0 {
        return Err(FormatError::BadChecksum);
    }
    Ok(FileHeader {
        cluster_id: u32_at(bytes, 8),
        generation: u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")),
    })
}

/// Whether `bytes` hash to `carried`. Fuzzing builds accept any checksum,
/// so the fuzzer reaches the decoding behind it.
fn checksum_ok(bytes: &[u8], carried: u32) -> bool {
    crc32fast::hash(bytes) == carried || cfg!(fuzzing)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The header a new log file starts with.
pub fn log_header(header: FileHeader) -> [u8; HEADER_BYTES] {
    encode_header(LOG_MAGIC, header)
}

/// Appends one record (length, checksum, content) to `out`.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let mut out_vec = std::mem::take(out);
    out_vec = postcard::to_extend(record, out_vec).expect("a Vec grows as needed");
    *out = out_vec;
    let body = &out[start + RECORD_HEADER_BYTES..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A whole image file: header, content length u64 LE, content crc32 u32 LE,
/// postcard(image).
pub fn encode_image(image: &DurableImage, header: FileHeader) -> Vec<u8> {
    let mut out = encode_header(IMAGE_MAGIC, header).to_vec();
    out.extend_from_slice(&[0; 12]);
    let mut out = postcard::to_extend(image, out).expect("a Vec grows as needed");
    let body_at = HEADER_BYTES + 12;
    let len = (out.len() - body_at) as u64;
    let crc = crc32fast::hash(&out[body_at..]);
    out[HEADER_BYTES..HEADER_BYTES + 8].copy_from_slice(&len.to_le_bytes());
    out[HEADER_BYTES + 8..body_at].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads an image file. Any damage is an error: images are replaced
/// atomically, so a bad one is not a torn write but lost data.
pub fn decode_image(
    bytes: &[u8],
    image_bytes_max: usize,
) -> Result<(FileHeader, DurableImage), FormatError> {
    let header = decode_header(bytes, IMAGE_MAGIC)?;
    let body_at = HEADER_BYTES + 12;
    if bytes.len() < body_at {
        return Err(FormatError::Truncated {
            missing: body_at - bytes.len(),
        });
    }
    let len = u64::from_le_bytes(bytes[HEADER_BYTES..HEADER_BYTES + 8].try_into().expect("8"));
    if len > image_bytes_max as u64 {
        return Err(FormatError::TooLarge {
            bytes: len,
            limit: image_bytes_max,
        });
    }
    let body = &bytes[body_at..];
    if (body.len() as u64) < len {
        return Err(FormatError::Truncated {
            missing: (len - body.len() as u64) as usize,
        });
    }
    if body.len() as u64 > len || !checksum_ok(body, u32_at(bytes, HEADER_BYTES + 8)) {
        return Err(FormatError::BadChecksum);
    }
    let image = postcard::from_bytes(body).map_err(|_| FormatError::BadRecord)?;
    Ok((header, image))
}

/// A log file read up to its first damaged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogScan {
    /// What its header says.
    pub header: FileHeader,
    /// The whole records, with the offset each starts at.
    pub records: Vec<(usize, Record)>,
    /// Bytes up to the end of the last whole record.
    pub valid_bytes: usize,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<FormatError>,
}

/// Reads a log file's records until the end or the first record that is
/// short, too large, fails its checksum or does not decode. That record
/// may only be the torn last one: its declared extent reaches the end of
/// the file, or everything from it on is zeros (a tail the file system
/// extended but never wrote). Damage with bytes after it is
/// [`FormatError::Damaged`]: a crash tears only what was being appended,
/// so whatever follows the damaged record was written after it and may
/// have been acknowledged, and cutting it off would silently lose it. A
/// bad header is an error too.
pub fn scan_log(bytes: &[u8]) -> Result<LogScan, FormatError> {
    let header = decode_header(bytes, LOG_MAGIC)?;
    let mut at = HEADER_BYTES;
    let mut records = Vec::new();
    // Where the damaged record's declared extent ends (`usize::MAX`: its
    // length is not even there).
    let mut declared_end;
    let damage = loop {
        declared_end = usize::MAX;
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < RECORD_HEADER_BYTES {
            break Some(FormatError::Truncated {
                missing: RECORD_HEADER_BYTES - rest.len(),
            });
        }
        let len = u32_at(rest, 0) as usize;
        declared_end = at.saturating_add(RECORD_HEADER_BYTES).saturating_add(len);
        if len > RECORD_BYTES_MAX {
            break Some(FormatError::TooLarge {
                bytes: len as u64,
                limit: RECORD_BYTES_MAX,
            });
        }
        let Some(body) = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len) else {
            break Some(FormatError::Truncated {
                missing: RECORD_HEADER_BYTES + len - rest.len(),
            });
        };
        if !checksum_ok(body, u32_at(rest, 4)) {
            break Some(FormatError::BadChecksum);
        }
        match postcard::from_bytes::<Record>(body) {
            Ok(record) => records.push((at, record)),
            Err(_) => break Some(FormatError::BadRecord),
        }
        at += RECORD_HEADER_BYTES + len;
    };
    if let Some(reason) = &damage {
        let torn = declared_end >= bytes.len() || bytes[at..].iter().all(|b| *b == 0);
        if !torn {
            return Err(FormatError::Damaged {
                offset: at,
                bytes_after: bytes.len() - declared_end,
                reason: Box::new(reason.clone()),
            });
        }
    }
    Ok(LogScan {
        header,
        records,
        valid_bytes: at,
        damage,
    })
}

/// Damage found at the end of a log and cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailDamage {
    /// Where the first bad record starts.
    pub offset: usize,
    /// Bytes cut off from there to the end.
    pub bytes_dropped: usize,
    /// What was wrong with it.
    pub reason: FormatError,
}

/// What a data directory's files say, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The durable state to restore.
    pub image: DurableImage,
    /// The image's generation (0 when there is none).
    pub generation: u64,
    /// How many bytes of the log to keep and append after; `None`: start a
    /// new log (none, a torn header, or one older than the image).
    pub log_keep_bytes: Option<usize>,
    /// Log records replayed onto the image.
    pub records: usize,
    /// A torn or damaged tail that was cut off.
    pub damage: Option<TailDamage>,
}

/// Which file a [`FormatError`] is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryError {
    /// [`IMAGE_FILE`] or [`LOG_FILE`].
    pub file: &'static str,
    /// What is wrong.
    pub reason: FormatError,
}

/// Recovers the durable state from the contents of the image and log files
/// (`None`: the file does not exist). A torn last record of the log is cut
/// off and reported: it can only hold writes that were not yet synced, so
/// nothing that depended on them was sent. Anything else wrong, damage
/// inside the log included (see [`scan_log`]), is an error.
pub fn recover(
    image_file: Option<&[u8]>,
    log_file: Option<&[u8]>,
    cluster_id: u32,
) -> Result<Recovery, RecoveryError> {
    let image_error = |reason| RecoveryError {
        file: IMAGE_FILE,
        reason,
    };
    let log_error = |reason| RecoveryError {
        file: LOG_FILE,
        reason,
    };
    let check_cluster = |header: &FileHeader| {
        if header.cluster_id == cluster_id {
            Ok(())
        } else {
            Err(FormatError::OtherCluster {
                found: header.cluster_id,
                expected: cluster_id,
            })
        }
    };
    let (generation, image) = match image_file {
        Some(bytes) => {
            let (header, image) = decode_image(bytes, usize::MAX).map_err(image_error)?;
            check_cluster(&header).map_err(image_error)?;
            (header.generation, image)
        }
        None => (0, DurableImage::default()),
    };
    let mut recovery = Recovery {
        image,
        generation,
        log_keep_bytes: None,
        records: 0,
        damage: None,
    };
    let Some(bytes) = log_file else {
        return Ok(recovery);
    };
    let scan = match scan_log(bytes) {
        Ok(scan) => scan,
        // A log is created whole (written, synced, renamed), so a short
        // header is a file damaged since: nothing in it can be read.
        Err(reason @ FormatError::Truncated { .. }) => {
            recovery.damage = Some(TailDamage {
                offset: 0,
                bytes_dropped: bytes.len(),
                reason,
            });
            return Ok(recovery);
        }
        Err(reason) => return Err(log_error(reason)),
    };
    check_cluster(&scan.header).map_err(log_error)?;
    if scan.header.generation < generation {
        // Crashed after the image was replaced, before the log was.
        return Ok(recovery);
    }
    if scan.header.generation > generation {
        return Err(log_error(FormatError::NewerLog {
            log: scan.header.generation,
            image: generation,
        }));
    }
    let mut valid_bytes = scan.valid_bytes;
    let mut damage = scan.damage;
    for (offset, record) in scan.records {
        if let Err(reason) = replay(&mut recovery.image, record) {
            valid_bytes = offset;
            damage = Some(reason);
            break;
        }
        recovery.records += 1;
    }
    if let Some(reason) = damage {
        recovery.damage = Some(TailDamage {
            offset: valid_bytes,
            bytes_dropped: bytes.len() - valid_bytes,
            reason,
        });
    }
    recovery.log_keep_bytes = Some(valid_bytes);
    Ok(recovery)
}

/// Applies one record to an image. A version gap means the record cannot
/// belong after the ones before it.
pub fn replay(image: &mut DurableImage, record: Record) -> Result<(), FormatError> {
    match record {
        Record::HardState(hard_state) => image.hard_state = hard_state,
        Record::Identity(identity) => image.identity = identity,
        Record::Entry { version, entry } => {
            let base = image.snapshot.last.version;
            if version <= base {
                // Compacted into the image already.
                return Ok(());
            }
            let index = (version - base - 1) as usize;
            if index > image.entries.len() {
                return Err(FormatError::Gap {
                    version,
                    last: base + image.entries.len() as u64,
                });
            }
            image.entries.truncate(index);
            image.entries.push(entry);
        }
        Record::Truncate { from } => {
            let base = image.snapshot.last.version;
            if from > base {
                image.entries.truncate((from - base - 1) as usize);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{HardState, Identity};
    use crate::wire::{Change, Entry, LogId, NodeId, Snapshot};

    const CLUSTER: u32 = 7;

    fn set(term: u64, key: &str) -> Entry {
        Entry {
            term,
            change: Change::Set {
                key: key.into(),
                value: "v".into(),
            },
        }
    }

    fn header(generation: u64) -> FileHeader {
        FileHeader {
            cluster_id: CLUSTER,
            generation,
        }
    }

    /// A log of identity, votes and entries, with a conflicting suffix
    /// replaced, and the image it must recover to.
    fn sample_log() -> (Vec<u8>, DurableImage) {
        let identity = Identity {
            id: NodeId(2),
            incarnation: 9,
            addr: "127.0.0.1:1".into(),
            generation: 7,
        };
        let records = vec![
            Record::Identity(Some(identity.clone())),
            Record::HardState(HardState {
                term: 1,
                voted_for: Some(NodeId(1)),
            }),
            Record::Entry {
                version: 1,
                entry: set(1, "a"),
            },
            Record::Entry {
                version: 2,
                entry: set(1, "b"),
            },
            Record::Entry {
                version: 3,
                entry: set(1, "c"),
            },
            Record::HardState(HardState {
                term: 2,
                voted_for: None,
            }),
            // A new leader's entry replaces 2 and 3.
            Record::Entry {
                version: 2,
                entry: set(2, "d"),
            },
        ];
        let mut bytes = log_header(header(0)).to_vec();
        for record in &records {
            encode_record(record, &mut bytes);
        }
        let image = DurableImage {
            identity: Some(identity),
            hard_state: HardState {
                term: 2,
                voted_for: None,
            },
            snapshot: Snapshot::default(),
            entries: vec![set(1, "a"), set(2, "d")],
        };
        (bytes, image)
    }

    #[test]
    fn an_image_larger_than_a_stream_frame_is_written_and_recovered() {
        let value = "v".repeat(1 << 20);
        let map = (0..72)
            .map(|i| (format!("k{i:02}"), value.clone()))
            .collect();
        let image = DurableImage {
            snapshot: Snapshot {
                map,
                ..Snapshot::default()
            },
            ..DurableImage::default()
        };
        let bytes = encode_image(&image, header(3));
        assert!(bytes.len() > crate::wire::STREAM_FRAME_BYTES_MAX_DEFAULT);
        let recovery = recover(Some(&bytes), None, CLUSTER).expect("recovers");
        assert_eq!(recovery.image, image);
        assert_eq!(recovery.generation, 3);
    }

    #[test]
    fn a_log_replays_to_the_state_it_recorded() {
        let (log, image) = sample_log();
        let recovery = recover(None, Some(&log), CLUSTER).expect("recovers");
        assert_eq!(recovery.image, image);
        assert_eq!(recovery.records, 7);
        assert_eq!(recovery.damage, None);
        assert_eq!(recovery.log_keep_bytes, Some(log.len()));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_at_every_length() {
        let (mut log, _) = sample_log();
        let whole = log.len();
        encode_record(
            &Record::Entry {
                version: 3,
                entry: set(2, "e"),
            },
            &mut log,
        );
        for cut in whole + 1..log.len() {
            let recovery = recover(None, Some(&log[..cut]), CLUSTER).expect("recovers");
            let damage = recovery.damage.expect("damage reported");
            assert_eq!(damage.offset, whole, "cut at {cut}");
            assert_eq!(damage.bytes_dropped, cut - whole);
            assert_eq!(recovery.log_keep_bytes, Some(whole));
            assert_eq!(recovery.image.entries.len(), 2);
        }
    }

    #[test]
    fn damage_before_the_last_record_refuses_to_recover_and_names_the_offset() {
        let (log, _) = sample_log();
        let starts: Vec<usize> = scan_log(&log)
            .unwrap()
            .records
            .iter()
            .map(|(at, _)| *at)
            .collect();
        let last = *starts.last().unwrap();
        for at in HEADER_BYTES..last {
            let mut bad = log.clone();
            bad[at] ^= 0x10;
            match recover(None, Some(&bad), CLUSTER) {
                Err(RecoveryError {
                    file: LOG_FILE,
                    reason: FormatError::Damaged { offset, .. },
                }) => {
                    let record = starts.iter().rev().find(|s| **s <= at).unwrap();
                    assert_eq!(offset, *record, "flip at {at}");
                }
                // A flipped length may make the record reach the end.
                Ok(recovery) => {
                    let damage = recovery.damage.expect("damage reported");
                    assert!(damage.offset <= at, "flip at {at}");
                }
                Err(other) => panic!("flip at {at}: {other:?}"),
            }
        }
        // Damage in the last record is a torn tail: cut off.
        for at in last + RECORD_HEADER_BYTES..log.len() {
            let mut bad = log.clone();
            bad[at] ^= 0x10;
            let recovery = recover(None, Some(&bad), CLUSTER).expect("recovers");
            let damage = recovery.damage.expect("damage reported");
            assert_eq!(damage.offset, last, "flip at {at}");
            assert_eq!(recovery.log_keep_bytes, Some(last));
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn_but_zeros_before_records_are_damage() {
        let (log, _) = sample_log();
        let mut zeros = log.clone();
        zeros.extend_from_slice(&[0; 100]);
        let recovery = recover(None, Some(&zeros), CLUSTER).expect("recovers");
        assert_eq!(recovery.log_keep_bytes, Some(log.len()));
        assert_eq!(recovery.damage.map(|d| d.bytes_dropped), Some(100));

        let mut hole = log_header(header(0)).to_vec();
        hole.extend_from_slice(&[0; 16]);
        hole.extend_from_slice(&log[HEADER_BYTES..]);
        let error = recover(None, Some(&hole), CLUSTER).unwrap_err();
        assert!(
            matches!(error.reason, FormatError::Damaged { offset, .. } if offset == HEADER_BYTES),
            "{error:?}"
        );
    }

    #[test]
    fn a_log_older_than_the_image_is_ignored_and_a_newer_one_refused() {
        let (log, recorded) = sample_log();
        let mut image = recorded.clone();
        image.snapshot.last = LogId {
            term: 2,
            version: 2,
        };
        image.entries.clear();
        let image_file = encode_image(&image, header(1));
        let recovery = recover(Some(&image_file), Some(&log), CLUSTER).expect("recovers");
        assert_eq!(recovery.image, image);
        assert_eq!(recovery.generation, 1);
        assert_eq!(recovery.log_keep_bytes, None);

        let old_image = encode_image(&DurableImage::default(), header(0));
        let mut newer_log = log_header(header(1)).to_vec();
        newer_log.extend_from_slice(&log[HEADER_BYTES..]);
        let error = recover(Some(&old_image), Some(&newer_log), CLUSTER).unwrap_err();
        assert_eq!(error.file, LOG_FILE);
        assert!(matches!(
            error.reason,
            FormatError::NewerLog { log: 1, image: 0 }
        ));
    }

    #[test]
    fn records_after_an_image_apply_on_top_of_it() {
        let (_, recorded) = sample_log();
        let mut image = recorded;
        image.snapshot.last = LogId {
            term: 1,
            version: 1,
        };
        image.entries = vec![set(2, "d")];
        let image_file = encode_image(&image, header(3));
        let mut log = log_header(header(3)).to_vec();
        // Already in the image: skipped.
        encode_record(
            &Record::Entry {
                version: 1,
                entry: set(1, "a"),
            },
            &mut log,
        );
        encode_record(
            &Record::Entry {
                version: 3,
                entry: set(2, "f"),
            },
            &mut log,
        );
        let recovery = recover(Some(&image_file), Some(&log), CLUSTER).expect("recovers");
        assert_eq!(recovery.image.entries, vec![set(2, "d"), set(2, "f")]);
        // A record that skips a version cannot follow: cut there.
        encode_record(
            &Record::Entry {
                version: 9,
                entry: set(2, "g"),
            },
            &mut log,
        );
        let recovery = recover(Some(&image_file), Some(&log), CLUSTER).expect("recovers");
        assert!(matches!(
            recovery.damage.map(|d| d.reason),
            Some(FormatError::Gap { version: 9, .. })
        ));
        assert_eq!(recovery.image.entries.len(), 2);
    }

    #[test]
    fn a_damaged_image_or_another_clusters_files_are_refused() {
        let image = encode_image(&DurableImage::default(), header(1));
        for at in 0..image.len() {
            let mut bad = image.clone();
            bad[at] ^= 0x01;
            assert!(recover(Some(&bad), None, CLUSTER).is_err(), "flip at {at}");
        }
        for cut in 0..image.len() {
            assert!(recover(Some(&image[..cut]), None, CLUSTER).is_err());
        }
        let error = recover(Some(&image), None, CLUSTER + 1).unwrap_err();
        assert!(matches!(error.reason, FormatError::OtherCluster { .. }));
        let (log, _) = sample_log();
        let error = recover(None, Some(&log), CLUSTER + 1).unwrap_err();
        assert_eq!(error.file, LOG_FILE);
    }

    #[test]
    fn a_record_longer_than_the_limit_is_damage_not_an_allocation() {
        let mut log = log_header(header(0)).to_vec();
        log.extend_from_slice(&u32::MAX.to_le_bytes());
        log.extend_from_slice(&[1; 4]);
        let recovery = recover(None, Some(&log), CLUSTER).expect("recovers");
        assert!(matches!(
            recovery.damage.map(|d| d.reason),
            Some(FormatError::TooLarge { .. })
        ));
    }
}
