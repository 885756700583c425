//! Payload bodies: postcard, checked to be canonical.
//!
//! postcard accepts some encodings it would never produce (a varint with
//! redundant continuation bytes, for one). Re-serializing the decoded value
//! into a comparing sink, without allocating, refuses those, so a frame that
//! decodes always re-encodes to the bytes it came from.

use postcard::ser_flavors::Flavor;
use serde::{Deserialize, Serialize};

use super::message::*;
use super::DecodeError;

/// A postcard sink that appends to a `BytesMut` (the frame being built).
pub(super) struct AppendTo<'a>(pub &'a mut bytes::BytesMut);

impl Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.extend_from_slice(&[byte]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A postcard sink that checks each byte against the expected encoding.
struct Compare<'a> {
    expected: &'a [u8],
    at: usize,
}

impl Flavor for Compare<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.expected.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.at + data.len();
        if self.expected.get(self.at..end) == Some(data) {
            self.at = end;
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.at == self.expected.len() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

fn reason(error: postcard::Error) -> &'static str {
    use postcard::Error as E;
    match error {
        E::DeserializeUnexpectedEnd => "unexpected end of payload",
        E::DeserializeBadVarint => "bad varint",
        E::DeserializeBadBool => "bad bool",
        E::DeserializeBadChar => "bad char",
        E::DeserializeBadUtf8 => "bad utf-8 in string",
        E::DeserializeBadOption => "bad option tag",
        E::DeserializeBadEnum => "bad enum tag",
        E::DeserializeBadEncoding => "bad encoding",
        E::DeserializeBadCrc => "bad crc",
        _ => "undecodable payload",
    }
}

fn body<'a, T>(kind: Kind, payload: &'a [u8]) -> Result<T, DecodeError>
where
    T: Deserialize<'a> + Serialize,
{
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|e| DecodeError::MalformedPayload {
            kind: kind.name(),
            reason: reason(e),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            count: rest.len(),
            after: "payload body",
        });
    }
    let canonical = postcard::serialize_with_flavor(
        &value,
        Compare {
            expected: payload,
            at: 0,
        },
    );
    if canonical.is_err() {
        return Err(DecodeError::NonCanonical { field: "payload" });
    }
    Ok(value)
}

/// Decodes the payload of a frame of kind `kind`.
pub fn decode(kind: Kind, payload: &[u8]) -> Result<Message, DecodeError> {
    Ok(match kind {
        Kind::Heartbeat => Message::Heartbeat(body(kind, payload)?),
        Kind::HeartbeatAck => Message::HeartbeatAck(body(kind, payload)?),
        Kind::PreVoteRequest => Message::PreVoteRequest(body(kind, payload)?),
        Kind::PreVoteResponse => Message::PreVoteResponse(body(kind, payload)?),
        Kind::VoteRequest => Message::VoteRequest(body(kind, payload)?),
        Kind::VoteResponse => Message::VoteResponse(body(kind, payload)?),
        Kind::Append => Message::Append(body(kind, payload)?),
        Kind::AppendAck => Message::AppendAck(body(kind, payload)?),
        Kind::Introduce => Message::Introduce(body(kind, payload)?),
        Kind::Redirect => Message::Redirect(body(kind, payload)?),
        Kind::Leave => Message::Leave(body(kind, payload)?),
        Kind::TimeoutNow => Message::TimeoutNow(body(kind, payload)?),
        Kind::ReadIndexRequest => Message::ReadIndexRequest(body(kind, payload)?),
        Kind::ReadIndexResponse => Message::ReadIndexResponse(body(kind, payload)?),
        Kind::Welcome => Message::Welcome(body(kind, payload)?),
        Kind::SnapshotRequest => Message::SnapshotRequest(body(kind, payload)?),
        Kind::Snapshot => {
            let snapshot: Snapshot = body(kind, payload)?;
            if snapshot.map.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(DecodeError::NonCanonical {
                    field: "snapshot map (keys must be sorted and unique)",
                });
            }
            Message::Snapshot(snapshot)
        }
        Kind::FetchSnapshot => Message::FetchSnapshot(body(kind, payload)?),
        Kind::ClientRequest => Message::ClientRequest(body(kind, payload)?),
        Kind::ClientResponse => Message::ClientResponse(body(kind, payload)?),
        Kind::JoinChallenge => Message::JoinChallenge(body(kind, payload)?),
        Kind::JoinProof => Message::JoinProof(body(kind, payload)?),
        Kind::SnapshotChunk => Message::SnapshotChunk(body(kind, payload)?),
    })
}
