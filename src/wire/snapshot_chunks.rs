//! Snapshots larger than one stream frame: the encoded snapshot (the
//! payload of a kind 17 frame) is cut into [`SnapshotChunk`]s, each sent
//! in a frame of its own, and put back together by a [`SnapshotAssembly`]
//! that takes them only in order, only up to a limit its owner chose, and
//! checks the whole against its digest before it is decoded.
//!
//! What is chunked is the encoded bytes, not the snapshot's fields: the
//! chunking knows nothing of what a snapshot holds, and a snapshot decoded
//! from reassembled chunks is checked exactly as one from a single frame.

use bytes::{Bytes, BytesMut};

use super::frame::{encode_payload_signed, payload_len, FrameHead};
use super::message::{Kind, Message, Snapshot, SnapshotChunk, SnapshotChunkRef};
use super::payload::{decode, AppendTo};
use super::{DecodeError, EncodeError, Keyring};

/// Largest chunk of snapshot bytes in one frame: 1 MiB. Smaller than a
/// stream frame may be, so that neither side holds more than this of a
/// frame at once on top of the snapshot itself.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// Bytes of a chunk frame other than the chunk's bytes, at most: the
/// header (with a generation, the largest sender and term), the total,
/// offset, digest and length fields, the tag and the checksum.
pub const SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX: usize = 192;

/// The chunk size for frames of at most `frame_bytes_max` bytes.
pub fn snapshot_chunk_bytes(frame_bytes_max: usize) -> usize {
    frame_bytes_max
        .saturating_sub(SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX)
        .clamp(1, SNAPSHOT_CHUNK_BYTES_MAX)
}

/// A snapshot encoded once (by whoever serves it), with the digest every
/// chunk of it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSnapshot {
    bytes: Bytes,
    digest: [u8; 32],
}

impl EncodedSnapshot {
    /// Encodes `snapshot` as the payload of a snapshot frame.
    pub fn new(snapshot: &Snapshot) -> EncodedSnapshot {
        let mut out = BytesMut::with_capacity(payload_len(snapshot));
        // Serializing into a growing buffer cannot fail for this type.
        let _ = postcard::serialize_with_flavor(snapshot, AppendTo(&mut out));
        let bytes = out.freeze();
        let digest = *blake3::hash(&bytes).as_bytes();
        EncodedSnapshot { bytes, digest }
    }

    /// The encoded snapshot.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Its chunks of at most `chunk_bytes` bytes (at least one byte each),
    /// in order. An empty encoding (never a snapshot's) is one empty chunk.
    pub fn chunks(&self, chunk_bytes: usize) -> impl Iterator<Item = SnapshotChunkRef<'_>> {
        let chunk_bytes = chunk_bytes.max(1);
        let total_bytes = self.bytes.len() as u64;
        let count = self.bytes.len().div_ceil(chunk_bytes).max(1);
        (0..count).map(move |i| {
            let start = i * chunk_bytes;
            let end = (start + chunk_bytes).min(self.bytes.len());
            SnapshotChunkRef {
                total_bytes,
                offset: start as u64,
                digest: &self.digest,
                bytes: &self.bytes[start..end],
            }
        })
    }

    /// Every chunk as a frame body from `head` (without the stream length
    /// prefix), signed with the primary of `keys`, each at most
    /// `frame_bytes_max` bytes.
    pub fn chunk_frames(
        &self,
        head: &FrameHead,
        frame_bytes_max: usize,
        keys: Option<&Keyring>,
    ) -> Result<Vec<Bytes>, EncodeError> {
        let chunk_bytes = snapshot_chunk_bytes(frame_bytes_max);
        self.chunks(chunk_bytes)
            .map(|chunk| {
                let len = payload_len(&chunk);
                let mut out = BytesMut::with_capacity(head.signed_len(len, keys));
                encode_payload_signed(
                    head,
                    Kind::SnapshotChunk,
                    &chunk,
                    len,
                    &mut out,
                    frame_bytes_max,
                    keys,
                )?;
                Ok(out.freeze())
            })
            .collect()
    }
}

/// Decodes an encoded snapshot, with every check a snapshot frame's
/// payload gets (canonical encoding, a sorted map).
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    match decode(Kind::Snapshot, bytes)? {
        Message::Snapshot(snapshot) => Ok(snapshot),
        other => Err(DecodeError::MalformedPayload {
            kind: other.kind().name(),
            reason: "not a snapshot",
        }),
    }
}

/// Why a chunk was refused. The assembly is then spoiled: nothing of it is
/// installed, and the fetch is abandoned (it is retried from the start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The snapshot is larger than the assembly accepts.
    #[error("snapshot of {total_bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its announced size.
        total_bytes: u64,
        /// The assembly's limit.
        limit: usize,
    },
    /// A chunk announces another total or digest than the first one: it
    /// belongs to another snapshot.
    #[error("chunk of another snapshot: its {field} differs from the first chunk's")]
    Inconsistent {
        /// `total_bytes` or `digest`.
        field: &'static str,
    },
    /// A chunk does not start where the previous one ended (a gap, an
    /// overlap, or one out of order).
    #[error("chunk at offset {offset}, expected {expected}")]
    OutOfOrder {
        /// Where the next chunk must start.
        expected: u64,
        /// Where this one starts.
        offset: u64,
    },
    /// A chunk without bytes before the end: it would make no progress.
    #[error("empty chunk at offset {offset}")]
    Empty {
        /// Where it starts.
        offset: u64,
    },
    /// A chunk reaches beyond the announced total.
    #[error("chunk ends at {end}, beyond the total of {total_bytes} bytes")]
    BeyondTotal {
        /// Where it ends.
        end: u64,
        /// The announced total.
        total_bytes: u64,
    },
    /// The whole does not hash to the announced digest.
    #[error("reassembled snapshot does not match its digest")]
    DigestMismatch,
    /// A chunk came after the snapshot was complete.
    #[error("chunk after the snapshot was complete")]
    AfterEnd,
}

/// Puts the chunks of one snapshot back together.
///
/// Its buffer grows with the bytes that arrive (at most doubling, never
/// beyond the announced total), not with the total announced: a peer that
/// announces a gigabyte and sends a kilobyte costs a kilobyte or two.
#[derive(Debug)]
pub struct SnapshotAssembly {
    bytes_max: usize,
    /// Total and digest, from the first chunk.
    expected: Option<(u64, [u8; 32])>,
    buf: Vec<u8>,
    done: bool,
}

impl SnapshotAssembly {
    /// An assembly that takes snapshots of at most `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> SnapshotAssembly {
        SnapshotAssembly {
            bytes_max,
            expected: None,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Bytes received so far.
    pub fn received_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next chunk. `Ok(Some(bytes))` once the snapshot is
    /// complete and matches its digest: the encoded snapshot, for
    /// [`decode_snapshot`]. After an error the assembly takes nothing more.
    pub fn push(&mut self, chunk: &SnapshotChunk) -> Result<Option<Vec<u8>>, ChunkError> {
        if self.done {
            return Err(ChunkError::AfterEnd);
        }
        let result = self.take(chunk);
        if !matches!(result, Ok(None)) {
            self.done = true;
        }
        result
    }

    fn take(&mut self, chunk: &SnapshotChunk) -> Result<Option<Vec<u8>>, ChunkError> {
        let (total_bytes, digest) = match self.expected {
            None => {
                if chunk.total_bytes > self.bytes_max as u64 {
                    return Err(ChunkError::TooLarge {
                        total_bytes: chunk.total_bytes,
                        limit: self.bytes_max,
                    });
                }
                *self.expected.insert((chunk.total_bytes, chunk.digest))
            }
            Some(expected) => expected,
        };
        if chunk.total_bytes != total_bytes {
            return Err(ChunkError::Inconsistent {
                field: "total_bytes",
            });
        }
        if chunk.digest != digest {
            return Err(ChunkError::Inconsistent { field: "digest" });
        }
        let expected = self.buf.len() as u64;
        if chunk.offset != expected {
            return Err(ChunkError::OutOfOrder {
                expected,
                offset: chunk.offset,
            });
        }
        if chunk.bytes.is_empty() && expected < total_bytes {
            return Err(ChunkError::Empty {
                offset: chunk.offset,
            });
        }
        let end = expected.saturating_add(chunk.bytes.len() as u64);
        if end > total_bytes {
            return Err(ChunkError::BeyondTotal { end, total_bytes });
        }
        // `end <= total_bytes <= bytes_max`: every size below fits a usize.
        let needed = end as usize;
        if needed > self.buf.capacity() {
            let grown = self.buf.capacity().saturating_mul(2).max(needed);
            let capacity = grown.min(total_bytes as usize);
            self.buf.reserve_exact(capacity - self.buf.len());
        }
        self.buf.extend_from_slice(&chunk.bytes);
        if end < total_bytes {
            return Ok(None);
        }
        if *blake3::hash(&self.buf).as_bytes() != digest {
            return Err(ChunkError::DigestMismatch);
        }
        Ok(Some(std::mem::take(&mut self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{LogId, Member, NodeId};

    fn snapshot(pairs: usize, value_bytes: usize) -> Snapshot {
        Snapshot {
            generation: 7,
            last: LogId {
                term: 3,
                version: 99,
            },
            members: vec![Member {
                id: NodeId(1),
                addr: "127.0.0.1:7001".into(),
                voter: true,
                incarnation: 1,
            }],
            next_member_id: 2,
            map: (0..pairs)
                .map(|i| (format!("k{i:05}"), "v".repeat(value_bytes)))
                .collect(),
            sessions: Vec::new(),
        }
    }

    fn owned(chunk: SnapshotChunkRef<'_>) -> SnapshotChunk {
        SnapshotChunk {
            total_bytes: chunk.total_bytes,
            offset: chunk.offset,
            digest: *chunk.digest,
            bytes: chunk.bytes.to_vec(),
        }
    }

    fn chunks_of(encoded: &EncodedSnapshot, chunk_bytes: usize) -> Vec<SnapshotChunk> {
        encoded.chunks(chunk_bytes).map(owned).collect()
    }

    #[test]
    fn chunks_reassemble_into_the_snapshot_they_were_cut_from() {
        let original = snapshot(50, 100);
        let encoded = EncodedSnapshot::new(&original);
        for chunk_bytes in [1, 7, 1000, encoded.bytes().len(), 1 << 20] {
            let mut assembly = SnapshotAssembly::new(1 << 20);
            let chunks = chunks_of(&encoded, chunk_bytes);
            let (last, rest) = chunks.split_last().unwrap();
            for chunk in rest {
                assert_eq!(assembly.push(chunk), Ok(None));
            }
            let bytes = assembly.push(last).unwrap().expect("complete");
            assert_eq!(decode_snapshot(&bytes).unwrap(), original, "{chunk_bytes}");
        }
    }

    #[test]
    fn chunk_frames_stay_within_the_frame_limit_and_decode_as_chunks() {
        let encoded = EncodedSnapshot::new(&snapshot(20, 1000));
        let head = FrameHead {
            cluster_id: 9,
            generation: Some(u64::MAX),
            sender: NodeId(crate::wire::NODE_ID_MAX),
            term: crate::wire::TERM_MAX,
        };
        let keys = Keyring::new([3; 32]);
        let frame_bytes_max = 4096;
        let frames = encoded
            .chunk_frames(&head, frame_bytes_max, Some(&keys))
            .unwrap();
        assert!(frames.len() >= 5);
        let limits = crate::wire::DecodeLimits {
            cluster_id: Some(9),
            frame_bytes_max,
        };
        let mut assembly = SnapshotAssembly::new(1 << 20);
        let mut complete = None;
        for body in &frames {
            assert!(body.len() <= frame_bytes_max);
            let frame = crate::wire::decode_frame_keyed(body, &limits, Some(&keys)).unwrap();
            let Message::SnapshotChunk(chunk) = frame.message else {
                panic!("not a chunk");
            };
            complete = assembly.push(&chunk).unwrap();
        }
        assert_eq!(complete.as_deref(), Some(&encoded.bytes()[..]));
    }

    #[test]
    fn reassembly_refuses_out_of_order_overlapping_oversized_and_inconsistent_chunks() {
        let encoded = EncodedSnapshot::new(&snapshot(10, 100));
        let total = encoded.bytes().len();
        let chunks = chunks_of(&encoded, 100);
        let pushed = |sequence: &[SnapshotChunk], bytes_max: usize| {
            let mut assembly = SnapshotAssembly::new(bytes_max);
            let mut last = Ok(None);
            for chunk in sequence {
                last = assembly.push(chunk);
                if last.is_err() {
                    break;
                }
            }
            last
        };
        // Out of order: the second chunk first.
        assert_eq!(
            pushed(&[chunks[1].clone()], 1 << 20),
            Err(ChunkError::OutOfOrder {
                expected: 0,
                offset: 100
            })
        );
        // A gap.
        assert_eq!(
            pushed(&[chunks[0].clone(), chunks[2].clone()], 1 << 20),
            Err(ChunkError::OutOfOrder {
                expected: 100,
                offset: 200
            })
        );
        // An overlap: the first chunk again.
        assert_eq!(
            pushed(&[chunks[0].clone(), chunks[0].clone()], 1 << 20),
            Err(ChunkError::OutOfOrder {
                expected: 100,
                offset: 0
            })
        );
        // Larger than the assembly takes, refused at the first chunk.
        assert_eq!(
            pushed(&chunks[..1], total - 1),
            Err(ChunkError::TooLarge {
                total_bytes: total as u64,
                limit: total - 1
            })
        );
        // Another total, or another digest, in a later chunk.
        let mut other_total = chunks[1].clone();
        other_total.total_bytes += 1;
        assert_eq!(
            pushed(&[chunks[0].clone(), other_total], 1 << 20),
            Err(ChunkError::Inconsistent {
                field: "total_bytes"
            })
        );
        let mut other_digest = chunks[1].clone();
        other_digest.digest[0] ^= 1;
        assert_eq!(
            pushed(&[chunks[0].clone(), other_digest], 1 << 20),
            Err(ChunkError::Inconsistent { field: "digest" })
        );
        // An empty chunk before the end makes no progress.
        let mut empty = chunks[1].clone();
        empty.bytes.clear();
        assert_eq!(
            pushed(&[chunks[0].clone(), empty], 1 << 20),
            Err(ChunkError::Empty { offset: 100 })
        );
        // A chunk beyond the total.
        let mut long = chunks.last().unwrap().clone();
        long.bytes.push(0);
        let mut sequence = chunks[..chunks.len() - 1].to_vec();
        sequence.push(long);
        assert!(matches!(
            pushed(&sequence, 1 << 20),
            Err(ChunkError::BeyondTotal { .. })
        ));
        // Bytes changed on the way (the digest is of the original).
        let mut flipped = chunks.clone();
        flipped[3].bytes[5] ^= 0x40;
        assert_eq!(pushed(&flipped, 1 << 20), Err(ChunkError::DigestMismatch));
        // Nothing after the end, nor after an error.
        let mut assembly = SnapshotAssembly::new(1 << 20);
        for chunk in &chunks {
            let _ = assembly.push(chunk);
        }
        assert_eq!(assembly.push(&chunks[0]), Err(ChunkError::AfterEnd));
        let mut assembly = SnapshotAssembly::new(1 << 20);
        assert!(assembly.push(&chunks[1]).is_err());
        assert_eq!(assembly.push(&chunks[0]), Err(ChunkError::AfterEnd));
    }

    #[test]
    fn the_buffer_grows_with_bytes_received_not_the_total_announced() {
        let mut assembly = SnapshotAssembly::new(1 << 30);
        let chunk = SnapshotChunk {
            total_bytes: 1 << 30,
            offset: 0,
            digest: [0; 32],
            bytes: vec![1; 1000],
        };
        assert_eq!(assembly.push(&chunk), Ok(None));
        assert_eq!(assembly.received_bytes(), 1000);
        assert!(
            assembly.buf.capacity() < 4096,
            "{}",
            assembly.buf.capacity()
        );
    }
}
