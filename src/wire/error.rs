//! Why a frame was refused.
//!
//! Decoding never changes any state, so no variant here needs to say whether
//! state changed: every one of them means "this frame was dropped, nothing
//! else happened". Each variant names what was wrong so that a counter per
//! [`DecodeReason`] and a log line are enough to tell a port scanner from a
//! misconfigured cluster id from a flaky link.

use core::fmt;

/// A frame (datagram or stream frame) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before `field` could be read.
    #[error("too short: needed {needed} bytes for {field}, had {available}")]
    TooShort {
        /// The field that did not fit.
        field: &'static str,
        /// Bytes the field needed from where it starts.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// The first two bytes are not the protocol's magic.
    #[error("bad magic {found:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// What the frame started with.
        found: [u8; 2],
        /// The magic this build speaks.
        expected: [u8; 2],
    },
    /// A wire version this build does not speak.
    #[error("unsupported wire version {found} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version byte of the frame.
        found: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// A message kind this build does not know (kinds are append-only, so
    /// this is a newer peer or garbage).
    #[error("unknown message kind {found}")]
    UnknownKind {
        /// The kind byte of the frame.
        found: u8,
    },
    /// Flag bits that this wire version reserves were set.
    #[error("reserved flag bits set: {found:#04x}")]
    ReservedFlags {
        /// The whole flags byte.
        found: u8,
    },
    /// The frame belongs to another cluster on the same network.
    #[error("wrong cluster id {found}, expected {expected}")]
    WrongCluster {
        /// Cluster id in the frame.
        found: u32,
        /// Cluster id of this node.
        expected: u32,
    },
    /// The declared payload length does not fit in the bytes that arrived.
    #[error("payload length {declared} does not fit: {available} bytes available")]
    LengthMismatch {
        /// Length written in the header.
        declared: u64,
        /// Bytes actually present for the payload.
        available: usize,
    },
    /// The crc32 over the frame does not match the one it carries.
    #[error("bad checksum: frame says {carried:#010x}, bytes give {computed:#010x}")]
    BadChecksum {
        /// The checksum carried in the frame.
        carried: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The payload is not a valid postcard body for its kind.
    #[error("malformed {kind} payload: {reason}")]
    MalformedPayload {
        /// Name of the message kind.
        kind: &'static str,
        /// What postcard (or a field check) said.
        reason: &'static str,
    },
    /// A field is valid but not in its one canonical encoding (for example a
    /// varint with redundant continuation bytes, or map keys out of order).
    /// Refused so that every accepted frame re-encodes to the same bytes.
    #[error("non-canonical encoding of {field}")]
    NonCanonical {
        /// The field that was encoded in a non-canonical way.
        field: &'static str,
    },
    /// The authentication tag has a length this wire version does not allow.
    #[error("authentication tag of {len} bytes (allowed {min}..={max})")]
    BadTagLength {
        /// The declared tag length.
        len: usize,
        /// Shortest tag allowed.
        min: usize,
        /// Longest tag allowed.
        max: usize,
    },
    /// The frame is larger than the configured limit. Checked before any
    /// buffer is allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size the frame has or declares.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Bytes follow the end of the frame or of the payload body.
    #[error("{count} trailing bytes after {after}")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
        /// What they followed.
        after: &'static str,
    },
    /// The frame has no authentication tag, and this node has a cluster key
    /// (and no `unkeyed` entry in its keyring).
    #[error("no authentication tag, and this node requires one")]
    MissingTag,
    /// The authentication tag is not the one any key of this node gives
    /// (a node without a key accepts no tag at all): a wrong or rotated-out
    /// key, or a forged or altered frame.
    #[error("authentication tag ({len} bytes) matches none of this node's keys")]
    BadTag {
        /// The tag's length.
        len: usize,
    },
    /// A term, version or member id is beyond the protocol's maximum
    /// ([`TERM_MAX`](super::TERM_MAX), [`VERSION_MAX`](super::VERSION_MAX),
    /// [`NODE_ID_MAX`](super::NODE_ID_MAX)), so that a receiver's sums on
    /// it cannot overflow.
    #[error("{field} of {value} exceeds the maximum of {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value it carries.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
}

/// The reason of a [`DecodeError`] without its details: an index for
/// counters (see [`DecodeReason::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeReason {
    /// See [`DecodeError::TooShort`].
    TooShort,
    /// See [`DecodeError::BadMagic`].
    BadMagic,
    /// See [`DecodeError::UnsupportedVersion`].
    UnsupportedVersion,
    /// See [`DecodeError::UnknownKind`].
    UnknownKind,
    /// See [`DecodeError::ReservedFlags`].
    ReservedFlags,
    /// See [`DecodeError::WrongCluster`].
    WrongCluster,
    /// See [`DecodeError::LengthMismatch`].
    LengthMismatch,
    /// See [`DecodeError::BadChecksum`].
    BadChecksum,
    /// See [`DecodeError::MalformedPayload`].
    MalformedPayload,
    /// See [`DecodeError::NonCanonical`].
    NonCanonical,
    /// See [`DecodeError::BadTagLength`].
    BadTagLength,
    /// See [`DecodeError::TooLarge`].
    TooLarge,
    /// See [`DecodeError::TrailingBytes`].
    TrailingBytes,
    /// See [`DecodeError::MissingTag`].
    MissingTag,
    /// See [`DecodeError::BadTag`].
    BadTag,
    /// See [`DecodeError::OutOfRange`].
    OutOfRange,
}

impl DecodeReason {
    /// Every reason, in counter order: `ALL[r.index()] == r`. Append-only,
    /// like message kinds: a reason keeps its position forever.
    pub const ALL: [DecodeReason; 16] = [
        DecodeReason::TooShort,
        DecodeReason::BadMagic,
        DecodeReason::UnsupportedVersion,
        DecodeReason::UnknownKind,
        DecodeReason::ReservedFlags,
        DecodeReason::WrongCluster,
        DecodeReason::LengthMismatch,
        DecodeReason::BadChecksum,
        DecodeReason::MalformedPayload,
        DecodeReason::NonCanonical,
        DecodeReason::BadTagLength,
        DecodeReason::TooLarge,
        DecodeReason::TrailingBytes,
        DecodeReason::MissingTag,
        DecodeReason::BadTag,
        DecodeReason::OutOfRange,
    ];

    /// Position of this reason in [`DecodeReason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            DecodeReason::TooShort => "too_short",
            DecodeReason::BadMagic => "bad_magic",
            DecodeReason::UnsupportedVersion => "unsupported_version",
            DecodeReason::UnknownKind => "unknown_kind",
            DecodeReason::ReservedFlags => "reserved_flags",
            DecodeReason::WrongCluster => "wrong_cluster",
            DecodeReason::LengthMismatch => "length_mismatch",
            DecodeReason::BadChecksum => "bad_checksum",
            DecodeReason::MalformedPayload => "malformed_payload",
            DecodeReason::NonCanonical => "non_canonical",
            DecodeReason::BadTagLength => "bad_tag_length",
            DecodeReason::TooLarge => "too_large",
            DecodeReason::TrailingBytes => "trailing_bytes",
            DecodeReason::MissingTag => "missing_tag",
            DecodeReason::BadTag => "bad_tag",
            DecodeReason::OutOfRange => "out_of_range",
        }
    }
}

impl fmt::Display for DecodeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl DecodeError {
    /// The reason without its details, for counting.
    pub fn reason(&self) -> DecodeReason {
        match self {
            DecodeError::TooShort { .. } => DecodeReason::TooShort,
            DecodeError::BadMagic { .. } => DecodeReason::BadMagic,
            DecodeError::UnsupportedVersion { .. } => DecodeReason::UnsupportedVersion,
            DecodeError::UnknownKind { .. } => DecodeReason::UnknownKind,
            DecodeError::ReservedFlags { .. } => DecodeReason::ReservedFlags,
            DecodeError::WrongCluster { .. } => DecodeReason::WrongCluster,
            DecodeError::LengthMismatch { .. } => DecodeReason::LengthMismatch,
            DecodeError::BadChecksum { .. } => DecodeReason::BadChecksum,
            DecodeError::MalformedPayload { .. } => DecodeReason::MalformedPayload,
            DecodeError::NonCanonical { .. } => DecodeReason::NonCanonical,
            DecodeError::BadTagLength { .. } => DecodeReason::BadTagLength,
            DecodeError::TooLarge { .. } => DecodeReason::TooLarge,
            DecodeError::TrailingBytes { .. } => DecodeReason::TrailingBytes,
            DecodeError::MissingTag => DecodeReason::MissingTag,
            DecodeError::BadTag { .. } => DecodeReason::BadTag,
            DecodeError::OutOfRange { .. } => DecodeReason::OutOfRange,
        }
    }
}

/// A frame could not be encoded. Nothing was written to the output buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded frame would exceed the limit given to the encoder.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size the frame would have.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The authentication tag has a length the wire does not allow.
    #[error("authentication tag of {len} bytes (allowed {min}..={max})")]
    BadTagLength {
        /// The tag's length.
        len: usize,
        /// Shortest tag allowed.
        min: usize,
        /// Longest tag allowed.
        max: usize,
    },
}
