//! Range limits on the numbers a frame carries: terms, versions and member
//! ids.
//!
//! A receiver adds to these numbers (`term + 1` to stand for election,
//! `prev.version + entries` to find where an append ends, `id + 1` for the
//! next member id). With the full `u64` range a single well-formed frame
//! could carry a term of `2^64 - 1`: every node that hears it adopts that
//! term, and the next election overflows (a panic in a debug build, a
//! wrapped term in a release build). Bounding every such field at decode
//! leaves room for every sum the protocol makes, so a value that made it
//! past the decoder can be added to without a check.
//!
//! The maxima are far beyond what a cluster can reach honestly: at one
//! election or one change a millisecond, `2^48` lasts almost nine thousand
//! years.

use super::message::*;
use super::DecodeError;

/// Largest term a frame may carry (and a node may reach): `2^48`.
pub const TERM_MAX: u64 = 1 << 48;
/// Largest version (log index) a frame may carry or imply: `2^48`.
pub const VERSION_MAX: u64 = 1 << 48;
/// Largest member id a frame may carry, leaving `id + 1` room in a `u32`.
pub const NODE_ID_MAX: u32 = u32::MAX - 1;

/// Largest number a session request may carry: `2^48`.
pub const SEQ_MAX: u64 = 1 << 48;
/// Most client sessions a cluster may be told to keep open
/// ([`Change::OpenSession`]'s `sessions_max`, and a snapshot's sessions).
pub const SESSIONS_MAX_LIMIT: u32 = 1 << 16;
/// Most requests a session remembers the outcome of: a client with more
/// writes in flight at once has its oldest forgotten (a retry of one then
/// gets "session expired").
pub const SESSION_REPLIES_MAX: usize = 256;

fn check(field: &'static str, value: u64, max: u64) -> Result<(), DecodeError> {
    if value > max {
        return Err(DecodeError::OutOfRange { field, value, max });
    }
    Ok(())
}

/// Checks a frame header's sender and term.
pub(super) fn check_header(sender: u32, term: u64) -> Result<(), DecodeError> {
    check("sender", u64::from(sender), u64::from(NODE_ID_MAX))?;
    check("term", term, TERM_MAX)
}

fn log_id(field: &'static str, id: LogId) -> Result<(), DecodeError> {
    check(field, id.term, TERM_MAX)?;
    check(field, id.version, VERSION_MAX)
}

fn version(field: &'static str, value: u64) -> Result<(), DecodeError> {
    check(field, value, VERSION_MAX)
}

fn node_id(field: &'static str, id: NodeId) -> Result<(), DecodeError> {
    check(field, u64::from(id.0), u64::from(NODE_ID_MAX))
}

fn member(member: &Member) -> Result<(), DecodeError> {
    node_id("member id", member.id)
}

fn change(change: &Change) -> Result<(), DecodeError> {
    match change {
        Change::AddMember(m) => member(m),
        Change::PromoteMember(id) | Change::RemoveMember(id) => node_id("member id", *id),
        Change::ReplaceMember { old, new } => {
            node_id("member id", *old)?;
            member(new)
        }
        Change::OpenSession { sessions_max, .. } => {
            if *sessions_max == 0 {
                return Err(DecodeError::OutOfRange {
                    field: "open_session sessions_max",
                    value: 0,
                    max: u64::from(SESSIONS_MAX_LIMIT),
                });
            }
            check(
                "open_session sessions_max",
                u64::from(*sessions_max),
                u64::from(SESSIONS_MAX_LIMIT),
            )
        }
        Change::SessionWrite { tag, .. } => write_tag(tag),
        Change::Noop | Change::Set { .. } | Change::Remove { .. } | Change::Replace { .. } => {
            Ok(())
        }
    }
}

fn write_tag(tag: &WriteTag) -> Result<(), DecodeError> {
    check("write tag seq", tag.seq, SEQ_MAX)?;
    check("write tag floor", tag.floor, tag.seq)
}

/// A snapshot's sessions: at most [`SESSIONS_MAX_LIMIT`], by id without
/// duplicates, each with at most [`SESSION_REPLIES_MAX`] replies sorted by
/// request number, none below its floor. The core relies on all of it.
fn sessions(sessions: &[SessionRecord]) -> Result<(), DecodeError> {
    if sessions.len() > SESSIONS_MAX_LIMIT as usize {
        return Err(DecodeError::OutOfRange {
            field: "snapshot sessions",
            value: sessions.len() as u64,
            max: u64::from(SESSIONS_MAX_LIMIT),
        });
    }
    if sessions.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err(DecodeError::NonCanonical {
            field: "snapshot sessions (ids must be sorted and unique)",
        });
    }
    for session in sessions {
        version("session last_version", session.last_version)?;
        check("session floor", session.floor, SEQ_MAX)?;
        if session.replies.len() > SESSION_REPLIES_MAX {
            return Err(DecodeError::OutOfRange {
                field: "session replies",
                value: session.replies.len() as u64,
                max: SESSION_REPLIES_MAX as u64,
            });
        }
        if session.replies.windows(2).any(|w| w[0].0 >= w[1].0)
            || session.replies.first().is_some_and(|r| r.0 < session.floor)
        {
            return Err(DecodeError::NonCanonical {
                field: "session replies (sorted, unique, none below the floor)",
            });
        }
        for &(seq, at) in &session.replies {
            check("session reply seq", seq, SEQ_MAX)?;
            version("session reply version", at)?;
        }
    }
    Ok(())
}

/// Checks every term, version and member id a decoded message carries,
/// including the versions it implies (an append's last entry).
pub(super) fn check_message(message: &Message) -> Result<(), DecodeError> {
    match message {
        Message::Heartbeat(m) => {
            log_id("heartbeat last", m.last)?;
            version("heartbeat commit", m.commit)
        }
        Message::HeartbeatAck(m) => version("heartbeat_ack version", m.version),
        Message::PreVoteRequest(m) => log_id("pre_vote_request last", m.last),
        Message::VoteRequest(m) => log_id("vote_request last", m.last),
        Message::Append(m) => {
            log_id("append prev", m.prev)?;
            version("append commit", m.commit)?;
            // `entries.len()` is bounded by the frame size, so the sum
            // cannot overflow before the check.
            let last = m.prev.version.saturating_add(m.entries.len() as u64);
            version("append last version", last)?;
            for entry in &m.entries {
                check("entry term", entry.term, TERM_MAX)?;
                change(&entry.change)?;
            }
            Ok(())
        }
        Message::AppendAck(m) => version("append_ack version", m.version),
        Message::ReadIndexResponse(m) => match m.index {
            Some(index) => version("read_index_response index", index),
            None => Ok(()),
        },
        Message::Welcome(m) => node_id("welcome id", m.id),
        Message::Snapshot(m) => {
            log_id("snapshot last", m.last)?;
            m.members.iter().try_for_each(member)?;
            sessions(&m.sessions)?;
            check(
                "snapshot next_member_id",
                u64::from(m.next_member_id),
                u64::from(NODE_ID_MAX) + 1,
            )
        }
        Message::ClientRequest(m) => match &m.tag {
            Some(tag) => write_tag(tag),
            None => Ok(()),
        },
        Message::FetchSnapshot(m) => log_id("fetch_snapshot base", m.base),
        Message::ClientResponse(m) => match &m.reply {
            ClientReply::Status(status) => {
                check("status term", status.term, TERM_MAX)?;
                version("status version", status.version)?;
                if let Some(id) = status.id {
                    node_id("status id", id)?;
                }
                status.members.iter().try_for_each(member)
            }
            ClientReply::Map { version: v, .. }
            | ClientReply::Value { version: v, .. }
            | ClientReply::Written { version: v } => version("client reply version", *v),
            ClientReply::Failed { .. } => Ok(()),
        },
        Message::PreVoteResponse(_)
        | Message::VoteResponse(_)
        | Message::Introduce(_)
        | Message::Redirect(_)
        | Message::Leave(_)
        | Message::TimeoutNow(_)
        | Message::ReadIndexRequest(_)
        | Message::SnapshotRequest(_)
        | Message::JoinChallenge(_)
        | Message::JoinProof(_)
        // Offsets and lengths are checked by the reassembly, against the
        // limit its receiver chose.
        | Message::SnapshotChunk(_) => Ok(()),
    }
}
