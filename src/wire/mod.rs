//! The wire format: frames, messages, limits and decode errors.
//!
//! Pure functions over byte buffers: no sockets, no clocks. The byte layout
//! is written down in `docs/WIRE.md`, with golden frames that the tests
//! check byte for byte.

mod error;
mod frame;
mod message;
mod payload;
mod stream;
mod varint;

pub use error::{DecodeError, DecodeReason, EncodeError};
pub use frame::{
    decode_frame, DecodeLimits, Frame, CHECKSUM_BYTES, DATAGRAM_BYTES_MAX_DEFAULT,
    FIXED_HEADER_BYTES, FLAGS_KNOWN, FLAG_TAGGED, FRAME_BYTES_MIN, MAGIC, TAG_BYTES_MAX,
    TAG_BYTES_MIN, WIRE_VERSION,
};
pub use message::*;
pub use stream::{
    encode_stream_frame, stream_frame_len, StreamDecoder, LENGTH_PREFIX_BYTES,
    STREAM_FRAME_BYTES_MAX_DEFAULT,
};
