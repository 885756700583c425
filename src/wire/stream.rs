//! Stream (TCP) framing: a 4-byte big-endian length, then one frame exactly
//! as in a datagram (header, payload, optional tag, crc32).
//!
//! The length is checked against the limit before a byte of the frame is
//! buffered, so a peer cannot make a node allocate by announcing a huge
//! frame.

use bytes::{Buf, BufMut, BytesMut};

use super::frame::{decode_frame, DecodeLimits, Frame, FRAME_BYTES_MIN};
use super::Keyring;
use super::{DecodeError, EncodeError};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Default limit of one stream frame (one change of a large map; snapshots
/// travel in chunks of at most [`super::SNAPSHOT_CHUNK_BYTES_MAX`]): 64 MiB.
pub const STREAM_FRAME_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Appends `frame` with its length prefix to `out`; returns the bytes
/// written. Writes nothing on error.
pub fn encode_stream_frame(
    frame: &Frame,
    out: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<usize, EncodeError> {
    encode_stream(frame, out, frame_bytes_max, None)
}

/// [`encode_stream_frame`] for a frame signed as by
/// [`Frame::encode_signed`] with `keys`.
pub fn encode_stream_frame_signed(
    frame: &Frame,
    out: &mut BytesMut,
    frame_bytes_max: usize,
    keys: Option<&Keyring>,
) -> Result<usize, EncodeError> {
    encode_stream(frame, out, frame_bytes_max, Some(keys))
}

/// `signed`: `None` writes the frame's own tag, `Some(keys)` signs.
fn encode_stream(
    frame: &Frame,
    out: &mut BytesMut,
    frame_bytes_max: usize,
    signed: Option<Option<&Keyring>>,
) -> Result<usize, EncodeError> {
    let len = match signed {
        None => frame.encoded_len(),
        Some(keys) => frame.signed_len(keys),
    };
    if len > frame_bytes_max || len > u32::MAX as usize {
        return Err(EncodeError::TooLarge {
            len,
            limit: frame_bytes_max,
        });
    }
    let start = out.len();
    out.reserve(LENGTH_PREFIX_BYTES + len);
    out.put_u32(len as u32);
    let encoded = match signed {
        None => frame.encode(out, frame_bytes_max),
        Some(keys) => frame.encode_signed(out, frame_bytes_max, keys),
    };
    match encoded {
        Ok(written) => Ok(LENGTH_PREFIX_BYTES + written),
        Err(error) => {
            out.truncate(start);
            Err(error)
        }
    }
}

/// Checks a length prefix against the limits; returns the frame length to
/// read next. For readers that read the prefix and the body separately.
pub fn stream_frame_len(
    prefix: [u8; LENGTH_PREFIX_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > frame_bytes_max {
        return Err(DecodeError::TooLarge {
            len: len as u64,
            limit: frame_bytes_max,
        });
    }
    if len < FRAME_BYTES_MIN {
        return Err(DecodeError::TooShort {
            field: "stream frame",
            needed: FRAME_BYTES_MIN,
            available: len,
        });
    }
    Ok(len)
}

/// Takes complete frames off the front of a receive buffer. Like
/// [`decode_frame`], it reads the tag without checking it: for tools.
#[derive(Debug, Clone, Copy)]
pub struct StreamDecoder {
    limits: DecodeLimits,
}

impl StreamDecoder {
    /// A decoder that refuses frames outside `limits`.
    pub fn new(limits: DecodeLimits) -> StreamDecoder {
        StreamDecoder { limits }
    }

    /// Decodes the next frame in `buf`, consuming its bytes. `Ok(None)`
    /// means more bytes are needed. After an error the stream cannot be
    /// resynchronised and should be closed; `buf` is left as it was.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
            return Ok(None);
        };
        let prefix = [prefix[0], prefix[1], prefix[2], prefix[3]];
        let len = stream_frame_len(prefix, self.limits.frame_bytes_max)?;
        let total = LENGTH_PREFIX_BYTES + len;
        if buf.len() < total {
            // The length is within the limit, so reserving for it is bounded.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let frame = decode_frame(&buf[LENGTH_PREFIX_BYTES..total], &self.limits)?;
        buf.advance(total);
        Ok(Some(frame))
    }

    /// Decodes a byte string that must hold exactly one stream frame.
    pub fn decode_exact(&self, input: &[u8]) -> Result<Frame, DecodeError> {
        let Some(prefix) = input.get(..LENGTH_PREFIX_BYTES) else {
            return Err(DecodeError::TooShort {
                field: "length prefix",
                needed: LENGTH_PREFIX_BYTES,
                available: input.len(),
            });
        };
        let len = stream_frame_len(
            [prefix[0], prefix[1], prefix[2], prefix[3]],
            self.limits.frame_bytes_max,
        )?;
        let body = &input[LENGTH_PREFIX_BYTES..];
        if body.len() < len {
            return Err(DecodeError::TooShort {
                field: "stream frame",
                needed: len,
                available: body.len(),
            });
        }
        if body.len() > len {
            return Err(DecodeError::TrailingBytes {
                count: body.len() - len,
                after: "stream frame",
            });
        }
        decode_frame(body, &self.limits)
    }
}
