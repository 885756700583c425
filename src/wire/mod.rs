//! The wire format: frames, messages, limits and decode errors.
//!
//! Pure functions over byte buffers: no sockets, no clocks. The byte layout
//! is written down in `docs/WIRE.md`, with golden frames that the tests
//! check byte for byte.

mod auth;
mod error;
mod frame;
mod message;
mod payload;
mod range;
mod snapshot_chunks;
mod stream;
mod varint;

pub use auth::{
    ClusterKey, KeyEntry, Keyring, KeyringError, KEYRING_ENTRIES_MAX, KEY_BYTES, TAG_BYTES,
};
pub use error::{DecodeError, DecodeReason, EncodeError};
pub use frame::{
    decode_frame, decode_frame_keyed, encode_payload_signed, payload_len, DecodeLimits, Frame,
    FrameHead, CHECKSUM_BYTES, DATAGRAM_BYTES_MAX_DEFAULT, FIXED_HEADER_BYTES, FLAGS_KNOWN,
    FLAG_TAGGED, FRAME_BYTES_MIN, MAGIC, TAG_BYTES_MAX, TAG_BYTES_MIN, WIRE_VERSION,
};
pub use message::*;
pub use range::{
    NODE_ID_MAX, SEQ_MAX, SESSIONS_MAX_LIMIT, SESSION_REPLIES_MAX, TERM_MAX, VERSION_MAX,
};
pub use snapshot_chunks::{
    decode_snapshot, snapshot_chunk_bytes, ChunkError, EncodedSnapshot, SnapshotAssembly,
    SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX,
};
pub use stream::{
    encode_stream_frame, encode_stream_frame_signed, stream_frame_len, StreamDecoder,
    LENGTH_PREFIX_BYTES, STREAM_FRAME_BYTES_MAX_DEFAULT,
};
