//! Reading and writing length-prefixed frames on a TCP stream, with the
//! size limit checked before the body is read, and the body's buffer grown
//! with the bytes that arrive rather than the length announced.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::wire::{
    decode_frame_keyed, encode_stream_frame_signed, stream_frame_len, DecodeError, DecodeLimits,
    Frame, Keyring, LENGTH_PREFIX_BYTES,
};

/// Bytes read (and taken from the budget) at a time for a frame body.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Takes `bytes` from `budget`, or `None` if it is spent.
pub(crate) fn take_budget(budget: &Arc<Semaphore>, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let bytes = u32::try_from(bytes).ok()?;
    budget.clone().try_acquire_many_owned(bytes).ok()
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the stream between frames.
    #[error("closed")]
    Closed,
    /// The stream failed or closed inside a frame.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The frame was refused.
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    /// The bytes every connection may be reading at once are spent; the
    /// connection is closed, nothing was taken from it.
    #[error("read budget spent")]
    Budget,
    /// A step of the read (the length prefix, or one chunk of the body)
    /// took longer than allowed; the connection is closed, nothing was
    /// taken from it.
    #[error("stalled")]
    Stalled,
}

/// Reads one frame body (without the prefix); checks the length first.
pub async fn read_frame_bytes<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
) -> Result<Vec<u8>, ReadError> {
    read_frame_bytes_within(reader, frame_bytes_max, None, None).await
}

/// `read_exact`, within `step` when given.
async fn read_step<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    step: Option<Duration>,
) -> Result<(), ReadError> {
    match step {
        None => reader
            .read_exact(buf)
            .await
            .map(drop)
            .map_err(ReadError::from),
        Some(step) => match tokio::time::timeout(step, reader.read_exact(buf)).await {
            Ok(read) => read.map(drop).map_err(ReadError::from),
            Err(_) => Err(ReadError::Stalled),
        },
    }
}

/// [`read_frame_bytes`], taking each chunk of the body from `budget` (when
/// given) while it is read, and, with `step`, giving up when the length
/// prefix or any chunk takes longer than that. The buffer grows a chunk at
/// a time as bytes arrive: a peer that announces 64 MiB and stalls costs
/// one chunk, not 64 MiB, and holds on only while it keeps sending.
pub async fn read_frame_bytes_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
    budget: Option<&Arc<Semaphore>>,
    step: Option<Duration>,
) -> Result<Vec<u8>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match read_step(reader, &mut prefix, step).await {
        Ok(()) => {}
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ReadError::Closed)
        }
        Err(e) => return Err(e),
    }
    let len = stream_frame_len(prefix, frame_bytes_max)?;
    let mut body = Vec::new();
    // Held until the whole body is read: the budget bounds bytes in reading.
    let mut held = Vec::new();
    while body.len() < len {
        let chunk = (len - body.len()).min(READ_CHUNK_BYTES);
        if let Some(budget) = budget {
            held.push(take_budget(budget, chunk).ok_or(ReadError::Budget)?);
        }
        let start = body.len();
        body.resize(start + chunk, 0);
        read_step(reader, &mut body[start..], step).await?;
    }
    drop(held);
    Ok(body)
}

/// Reads and decodes one frame, checking its tag against `keys`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &DecodeLimits,
    keys: Option<&Keyring>,
) -> Result<Frame, ReadError> {
    let body = read_frame_bytes(reader, limits.frame_bytes_max).await?;
    Ok(decode_frame_keyed(&body, limits, keys)?)
}

/// Encodes (signed with the primary of `keys`) and writes one frame with
/// its length prefix.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
    frame_bytes_max: usize,
    keys: Option<&Keyring>,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    encode_stream_frame_signed(frame, &mut out, frame_bytes_max, keys)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    writer.write_all(&out).await
}

/// Writes an already encoded frame body with its length prefix.
pub async fn write_frame_bytes<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    writer.write_all(&(body.len() as u32).to_be_bytes()).await?;
    writer.write_all(body).await
}
