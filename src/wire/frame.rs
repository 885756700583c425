//! One frame: the hand-written header, the postcard payload, an optional
//! authentication tag and the crc32 trailer.
//!
//! ```text
//! magic(2) version(1) kind(1) flags(1) cluster_id(4, BE)
//! [generation(8, BE)]         -- only when flags has GENERATION
//! sender(varint) term(varint) payload_len(varint) payload
//! [tag tag_len(1)]            -- only when flags has TAGGED
//! crc32(4, BE)                -- over every byte before it
//! ```
//!
//! Only the magic and the version are looked at before the checksum: they are
//! compared, never used to size or index anything, and reading the version
//! first lets a future version change the trailer and still be reported as
//! "unsupported version" instead of "bad checksum". The tag length comes
//! after the tag, so a keyed decoder finds the tag from the end of the frame
//! and checks it before it reads any field of the header or the payload.

use bytes::{BufMut, BytesMut};

use super::auth::{ClusterKey, Keyring, TAG_BYTES};
use serde::Serialize;

use super::message::{with_payload, Kind, Message, NodeId};
use super::{varint, DecodeError, EncodeError};

/// The first two bytes of every frame: "SR".
pub const MAGIC: [u8; 2] = *b"SR";
/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 1;
/// Flags bit: an authentication tag and its length follow the payload.
pub const FLAG_TAGGED: u8 = 0x01;
/// Flags bit: the sender's cluster generation (8 bytes, big-endian)
/// follows the cluster id. Every frame a member sends carries it.
pub const FLAG_GENERATION: u8 = 0x02;
/// Flag bits this version defines; the others must be zero.
pub const FLAGS_KNOWN: u8 = FLAG_TAGGED | FLAG_GENERATION;
/// Bytes of the generation field, when the frame has one.
pub const GENERATION_BYTES: usize = 8;
/// Shortest authentication tag accepted.
pub const TAG_BYTES_MIN: usize = 16;
/// Longest authentication tag accepted.
pub const TAG_BYTES_MAX: usize = 32;
/// Bytes of the fixed part of the header (magic to cluster id).
pub const FIXED_HEADER_BYTES: usize = 9;
/// Bytes of the crc32 trailer.
pub const CHECKSUM_BYTES: usize = 4;
/// The smallest frame that can be valid: fixed header, three one-byte
/// varints, an empty payload and the checksum.
pub const FRAME_BYTES_MIN: usize = FIXED_HEADER_BYTES + 3 + CHECKSUM_BYTES;
/// Default limit of a UDP datagram: fits any LAN MTU with IP and UDP headers.
pub const DATAGRAM_BYTES_MAX_DEFAULT: usize = 1200;

/// A decoded (or to be encoded) frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The cluster the frame belongs to.
    pub cluster_id: u32,
    /// The history the sender belongs to: a random number minted when its
    /// cluster was founded, carried by every frame a member sends so that
    /// two clusters founded apart (even at the same addresses, with the
    /// same ids and terms) can never take each other's entries, votes or
    /// acknowledgements for their own. `None` from a node that is not a
    /// member yet, and from clients.
    pub generation: Option<u64>,
    /// The sending member, or [`NodeId::UNASSIGNED`] before it has joined.
    pub sender: NodeId,
    /// The sender's current term (election number).
    pub term: u64,
    /// The message.
    pub message: Message,
    /// Authentication tag over every byte before it and its length byte,
    /// when the cluster uses a key. `TAG_BYTES_MIN..=TAG_BYTES_MAX` bytes.
    pub tag: Option<Vec<u8>>,
}

impl Frame {
    /// A frame without an authentication tag.
    pub fn new(cluster_id: u32, sender: NodeId, term: u64, message: Message) -> Frame {
        Frame {
            cluster_id,
            generation: None,
            sender,
            term,
            message,
            tag: None,
        }
    }

    /// The same frame, from a member of cluster generation `generation`.
    pub fn with_generation(self, generation: Option<u64>) -> Frame {
        Frame { generation, ..self }
    }

    /// Exact size of the encoded frame in bytes.
    pub fn encoded_len(&self) -> usize {
        let payload_len = self.message.payload_len();
        self.encoded_len_with(payload_len, self.tag.as_ref().map(Vec::len))
    }

    /// Exact size of the frame encoded by [`Frame::encode_signed`] with
    /// `keys`.
    pub fn signed_len(&self, keys: Option<&Keyring>) -> usize {
        let payload_len = self.message.payload_len();
        self.encoded_len_with(payload_len, signing_key(keys).map(|_| TAG_BYTES))
    }

    fn encoded_len_with(&self, payload_len: usize, tag_len: Option<usize>) -> usize {
        frame_len(&self.head(), payload_len, tag_len)
    }

    /// The header fields, as the encoder writes them.
    fn head(&self) -> FrameHead {
        FrameHead {
            cluster_id: self.cluster_id,
            generation: self.generation,
            sender: self.sender,
            term: self.term,
        }
    }

    /// Appends the encoded frame, with the tag it carries (if any), to `out`
    /// and returns its length. Refuses (writing nothing) a frame larger than
    /// `frame_bytes_max`. Nodes use [`Frame::encode_signed`]; this one is
    /// for tools and tests that write a given tag.
    pub fn encode(&self, out: &mut BytesMut, frame_bytes_max: usize) -> Result<usize, EncodeError> {
        match &self.tag {
            Some(tag) => self.encode_with(out, frame_bytes_max, TagSource::Given(tag)),
            None => self.encode_with(out, frame_bytes_max, TagSource::None),
        }
    }

    /// Appends the frame signed with the primary key of `keys` (its tag
    /// computed, `self.tag` ignored), or without a tag when there is no
    /// keyring or its primary is `unkeyed`. Returns its length; refuses
    /// (writing nothing) a frame larger than `frame_bytes_max`.
    pub fn encode_signed(
        &self,
        out: &mut BytesMut,
        frame_bytes_max: usize,
        keys: Option<&Keyring>,
    ) -> Result<usize, EncodeError> {
        match signing_key(keys) {
            Some(key) => self.encode_with(out, frame_bytes_max, TagSource::Sign(key)),
            None => self.encode_with(out, frame_bytes_max, TagSource::None),
        }
    }

    fn encode_with(
        &self,
        out: &mut BytesMut,
        frame_bytes_max: usize,
        tag: TagSource<'_>,
    ) -> Result<usize, EncodeError> {
        let head = self.head();
        let payload_len = self.message.payload_len();
        with_payload!(&self.message, p => encode_parts(&head, self.message.kind(), p, payload_len, out, frame_bytes_max, tag))
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self, frame_bytes_max: usize) -> Result<BytesMut, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out, frame_bytes_max)?;
        Ok(out)
    }
}

/// Where the tag of a frame being encoded comes from.
#[derive(Clone, Copy)]
enum TagSource<'a> {
    None,
    Given(&'a [u8]),
    Sign(&'a ClusterKey),
}

/// The header fields of a frame other than its kind and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// The cluster the frame belongs to.
    pub cluster_id: u32,
    /// The sender's cluster generation, when it is a member.
    pub generation: Option<u64>,
    /// The sending member.
    pub sender: NodeId,
    /// The sender's current term.
    pub term: u64,
}

impl FrameHead {
    /// Exact size of a frame with a payload of `payload_len` bytes, signed
    /// with `keys` as [`encode_payload_signed`] does.
    pub fn signed_len(&self, payload_len: usize, keys: Option<&Keyring>) -> usize {
        frame_len(self, payload_len, signing_key(keys).map(|_| TAG_BYTES))
    }
}

fn frame_len(head: &FrameHead, payload_len: usize, tag_len: Option<usize>) -> usize {
    FIXED_HEADER_BYTES
        + head.generation.map_or(0, |_| GENERATION_BYTES)
        + varint::len_u64(u64::from(head.sender.0))
        + varint::len_u64(head.term)
        + varint::len_u64(payload_len as u64)
        + payload_len
        + tag_len.map_or(0, |len| len + 1)
        + CHECKSUM_BYTES
}

/// Bytes of `payload` encoded: one pass that counts, and copies nothing.
pub fn payload_len<P: Serialize + ?Sized>(payload: &P) -> usize {
    postcard::serialize_with_flavor(payload, postcard::ser_flavors::Size::default())
        .unwrap_or(usize::MAX)
}

/// Appends a frame of `kind` whose payload is `payload` (of `payload_len`
/// bytes, from [`payload_len`]), signed as [`Frame::encode_signed`] does.
/// For a sender that holds the payload's parts borrowed (a leader's log
/// entries, in [`super::AppendRef`]): the bytes are those of the owned
/// message, without building it. `payload` must serialize as the payload
/// type of `kind` does.
#[allow(clippy::too_many_arguments)]
pub fn encode_payload_signed<P: Serialize + ?Sized>(
    head: &FrameHead,
    kind: Kind,
    payload: &P,
    payload_len: usize,
    out: &mut BytesMut,
    frame_bytes_max: usize,
    keys: Option<&Keyring>,
) -> Result<usize, EncodeError> {
    let tag = match signing_key(keys) {
        Some(key) => TagSource::Sign(key),
        None => TagSource::None,
    };
    encode_parts(head, kind, payload, payload_len, out, frame_bytes_max, tag)
}

fn encode_parts<P: Serialize + ?Sized>(
    head: &FrameHead,
    kind: Kind,
    payload: &P,
    payload_len: usize,
    out: &mut BytesMut,
    frame_bytes_max: usize,
    tag: TagSource<'_>,
) -> Result<usize, EncodeError> {
    let tag_len = match tag {
        TagSource::None => None,
        TagSource::Given(tag) => {
            if !(TAG_BYTES_MIN..=TAG_BYTES_MAX).contains(&tag.len()) {
                return Err(EncodeError::BadTagLength {
                    len: tag.len(),
                    min: TAG_BYTES_MIN,
                    max: TAG_BYTES_MAX,
                });
            }
            Some(tag.len())
        }
        TagSource::Sign(_) => Some(TAG_BYTES),
    };
    let len = frame_len(head, payload_len, tag_len);
    if len > frame_bytes_max {
        return Err(EncodeError::TooLarge {
            len,
            limit: frame_bytes_max,
        });
    }
    let start = out.len();
    out.reserve(len);
    out.put_slice(&MAGIC);
    out.put_u8(WIRE_VERSION);
    out.put_u8(kind as u8);
    let mut flags = 0;
    if tag_len.is_some() {
        flags |= FLAG_TAGGED;
    }
    if head.generation.is_some() {
        flags |= FLAG_GENERATION;
    }
    out.put_u8(flags);
    out.put_u32(head.cluster_id);
    if let Some(generation) = head.generation {
        out.put_u64(generation);
    }
    varint::put_u64(out, u64::from(head.sender.0));
    varint::put_u64(out, head.term);
    varint::put_u64(out, payload_len as u64);
    let payload_start = out.len();
    let written = postcard::serialize_with_flavor(payload, super::payload::AppendTo(out));
    debug_assert!(written.is_ok(), "payload types always serialize");
    debug_assert_eq!(out.len() - payload_start, payload_len);
    match tag {
        TagSource::None => {}
        TagSource::Given(tag) => {
            out.put_slice(tag);
            out.put_u8(tag.len() as u8);
        }
        TagSource::Sign(key) => {
            let tag = super::auth::sign(key, &out[start..]);
            out.put_slice(&tag);
            out.put_u8(TAG_BYTES as u8);
        }
    }
    let crc = crc32fast::hash(&out[start..]);
    out.put_u32(crc);
    debug_assert_eq!(out.len() - start, len);
    Ok(len)
}

fn signing_key(keys: Option<&Keyring>) -> Option<&ClusterKey> {
    keys.and_then(Keyring::signing_key)
}

/// What a decoder checks a frame against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Frames of other clusters are refused with
    /// [`DecodeError::WrongCluster`]; `None` accepts any (tools only).
    pub cluster_id: Option<u32>,
    /// The largest frame accepted, in bytes.
    pub frame_bytes_max: usize,
}

impl DecodeLimits {
    /// Limits for datagrams of cluster `cluster_id`.
    pub fn datagram(cluster_id: u32) -> DecodeLimits {
        DecodeLimits {
            cluster_id: Some(cluster_id),
            frame_bytes_max: DATAGRAM_BYTES_MAX_DEFAULT,
        }
    }
}

/// Decodes one complete frame (a whole datagram, or the body of a stream
/// frame) **without checking its tag**: for tools that show a captured
/// frame, and for tests. Nodes and clients use [`decode_frame_keyed`].
/// Never panics, never reads outside `input`, and allocates only for fields
/// actually present in it.
pub fn decode_frame(input: &[u8], limits: &DecodeLimits) -> Result<Frame, DecodeError> {
    decode(input, limits, Auth::Parse)
}

/// Decodes one complete frame as a node does: after the checksum and
/// before any other field is looked at, the tag must be valid under one of
/// the keys of `keys`. A frame without a tag is refused with
/// [`DecodeError::MissingTag`] unless there is no keyring or it lists
/// `unkeyed`; a frame with a tag that none of the keys gives (or any tag,
/// without a keyring) with [`DecodeError::BadTag`].
pub fn decode_frame_keyed(
    input: &[u8],
    limits: &DecodeLimits,
    keys: Option<&Keyring>,
) -> Result<Frame, DecodeError> {
    decode(input, limits, Auth::Verify(keys))
}

/// What the decoder does with the tag.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// Reads it without checking it.
    Parse,
    /// Checks it against the keyring (none: no tag allowed).
    Verify(Option<&'a Keyring>),
}

fn decode(input: &[u8], limits: &DecodeLimits, auth: Auth<'_>) -> Result<Frame, DecodeError> {
    if input.len() > limits.frame_bytes_max {
        return Err(DecodeError::TooLarge {
            len: input.len() as u64,
            limit: limits.frame_bytes_max,
        });
    }
    if input.len() < FRAME_BYTES_MIN {
        return Err(DecodeError::TooShort {
            field: "frame",
            needed: FRAME_BYTES_MIN,
            available: input.len(),
        });
    }
    let magic = [input[0], input[1]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic {
            found: magic,
            expected: MAGIC,
        });
    }
    if input[2] != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: input[2],
            supported: WIRE_VERSION,
        });
    }
    let (covered, trailer) = input.split_at(input.len() - CHECKSUM_BYTES);
    let carried = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(covered);
    // Fuzzing builds skip the comparison (not the computation) so that the
    // fuzzer reaches the payload decoder; the `frame_valid` target fuzzes
    // frames with correct checksums. The tag is checked in every build.
    if carried != computed && !cfg!(fuzzing) {
        return Err(DecodeError::BadChecksum { carried, computed });
    }

    // Authentication, before any field is trusted: only the TAGGED bit and
    // the tag length byte (the last before the checksum) are read, to find
    // the tag; both are covered by the tag.
    let (signed, tag) = split_tag(covered)?;
    if let Auth::Verify(keys) = auth {
        match tag {
            None if keys.is_some_and(|k| !k.accepts_untagged()) => {
                return Err(DecodeError::MissingTag)
            }
            None => {}
            Some(tag) if !keys.is_some_and(|k| k.verify(signed, tag)) => {
                return Err(DecodeError::BadTag { len: tag.len() })
            }
            Some(_) => {}
        }
    }

    let kind = Kind::from_u8(signed[3]).ok_or(DecodeError::UnknownKind { found: signed[3] })?;
    let flags = signed[4];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::ReservedFlags { found: flags });
    }
    let cluster_id = u32::from_be_bytes([signed[5], signed[6], signed[7], signed[8]]);
    if let Some(expected) = limits.cluster_id {
        if cluster_id != expected {
            return Err(DecodeError::WrongCluster {
                found: cluster_id,
                expected,
            });
        }
    }
    let mut rest = &signed[FIXED_HEADER_BYTES..];
    let generation = if flags & FLAG_GENERATION != 0 {
        if rest.len() < GENERATION_BYTES {
            return Err(DecodeError::TooShort {
                field: "generation",
                needed: GENERATION_BYTES,
                available: rest.len(),
            });
        }
        let (bytes, after) = rest.split_at(GENERATION_BYTES);
        rest = after;
        let mut be = [0u8; GENERATION_BYTES];
        be.copy_from_slice(bytes);
        Some(u64::from_be_bytes(be))
    } else {
        None
    };
    let (sender, used) = varint::get_u32(rest, "sender")?;
    rest = &rest[used..];
    let (term, used) = varint::get_u64(rest, "term")?;
    rest = &rest[used..];
    super::range::check_header(sender, term)?;
    let (declared, used) = varint::get_u64(rest, "payload length")?;
    rest = &rest[used..];
    if declared > rest.len() as u64 {
        return Err(DecodeError::LengthMismatch {
            declared,
            available: rest.len(),
        });
    }
    let (payload, after) = rest.split_at(declared as usize);
    if !after.is_empty() {
        return Err(DecodeError::TrailingBytes {
            count: after.len(),
            after: "payload",
        });
    }
    let message = super::payload::decode(kind, payload)?;
    super::range::check_message(&message)?;
    Ok(Frame {
        cluster_id,
        generation,
        sender: NodeId(sender),
        term,
        message,
        tag: tag.map(<[u8]>::to_vec),
    })
}

/// Splits the bytes before the checksum into the signed part (header and
/// payload) and the tag, when the TAGGED flag says there is one. The signed
/// part is at least a fixed header and three one-byte varints long.
fn split_tag(covered: &[u8]) -> Result<(&[u8], Option<&[u8]>), DecodeError> {
    const HEADER_BYTES_MIN: usize = FIXED_HEADER_BYTES + 3;
    if covered[4] & FLAG_TAGGED == 0 {
        return Ok((covered, None));
    }
    let Some((&tag_len, before)) = covered.split_last() else {
        return Err(DecodeError::TooShort {
            field: "tag length",
            needed: 1,
            available: 0,
        });
    };
    let tag_len = usize::from(tag_len);
    if !(TAG_BYTES_MIN..=TAG_BYTES_MAX).contains(&tag_len) {
        return Err(DecodeError::BadTagLength {
            len: tag_len,
            min: TAG_BYTES_MIN,
            max: TAG_BYTES_MAX,
        });
    }
    if before.len() < HEADER_BYTES_MIN + tag_len {
        return Err(DecodeError::TooShort {
            field: "tag",
            needed: tag_len,
            available: before.len().saturating_sub(HEADER_BYTES_MIN),
        });
    }
    let (signed, tag) = before.split_at(before.len() - tag_len);
    Ok((signed, Some(tag)))
}
