//! Client sessions: what makes a retried write apply at most once.
//!
//! A write whose answer was lost (the leader changed, the connection broke,
//! the time ran out) may have committed or not, and its client cannot tell.
//! Sending it again is the only way to learn, but a plain resend commits it
//! a second time, possibly after another client's newer write to the same
//! key: readers would see 1, 2, 1. So a client opens a session (a committed
//! [`Change::OpenSession`](crate::wire::Change::OpenSession) with an id it
//! chose at random), numbers its writes, and resends a write with the same
//! number; every node keeps, in the replicated state, the version each
//! of a session's recent requests was applied at, and applies a request it
//! has seen as nothing (the Raft dissertation, §6.3).
//!
//! The table is part of the state machine, so every rule here depends on
//! the committed log alone: each node evicts the same session, forgets the
//! same requests, and answers a retry the same way.
//!
//! Bounds, and what a client gets past them:
//! - at most `sessions_max` sessions (carried by each `OpenSession`): opening
//!   one more closes the session whose last write is oldest. A write of a
//!   closed session is applied as nothing and answered "session expired":
//!   the client cannot know whether an earlier attempt applied, and opens a
//!   new session for its next write.
//! - at most [`SESSION_REPLIES_MAX`] remembered requests per session, and
//!   none below the floor the client sends (it has had their answers). A
//!   request below the floor, arriving late or resent, is applied as
//!   nothing and answered "session expired".

use std::collections::BTreeMap;

use crate::wire::{SessionRecord, WriteTag, SESSION_REPLIES_MAX};

/// One open session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Session {
    /// Requests below this number are forgotten.
    floor: u64,
    /// The version each remembered request was applied at, by number.
    replies: BTreeMap<u64, u64>,
    /// The version of the session's last write, or of its opening.
    last_version: u64,
}

/// What a session write comes to when it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome {
    /// First time: it applies, and is remembered.
    Fresh,
    /// Applied before, at `version`: it applies as nothing, and its answer
    /// is that version.
    Duplicate {
        /// Where it was applied first.
        version: u64,
    },
    /// The session is closed or the request forgotten: it applies as
    /// nothing, and whether an earlier copy applied is not known.
    Expired,
}

/// The open sessions, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    open: BTreeMap<u64, Session>,
}

impl Sessions {
    /// How many are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Opens session `id` by an `OpenSession` committed at `version`, first
    /// closing the least recently used ones so that at most
    /// `sessions_max` are open after. A session already open (the same
    /// change sent again) keeps what it remembers and is marked used.
    pub fn open(&mut self, id: u64, version: u64, sessions_max: u32) {
        if let Some(session) = self.open.get_mut(&id) {
            session.last_version = version;
            return;
        }
        let max = (sessions_max as usize).max(1);
        while self.open.len() >= max {
            // Versions are unique, so there are no ties; the id breaks them
            // anyway, so the choice never depends on map order.
            let oldest = self
                .open
                .iter()
                .min_by_key(|(id, s)| (s.last_version, **id))
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.open.remove(&id),
                None => break,
            };
        }
        self.open.insert(
            id,
            Session {
                last_version: version,
                ..Session::default()
            },
        );
    }

    /// Decides a session write committed at `version`, and records it.
    pub fn admit(&mut self, tag: &WriteTag, version: u64) -> SessionOutcome {
        let Some(session) = self.open.get_mut(&tag.session) else {
            return SessionOutcome::Expired;
        };
        session.last_version = version;
        let outcome = if let Some(&first) = session.replies.get(&tag.seq) {
            SessionOutcome::Duplicate { version: first }
        } else if tag.seq < session.floor {
            SessionOutcome::Expired
        } else {
            session.replies.insert(tag.seq, version);
            SessionOutcome::Fresh
        };
        // The decoder keeps `floor <= seq`; the `min` keeps a request's own
        // reply even for a tag that did not come through it.
        let floor = tag.floor.min(tag.seq);
        if floor > session.floor {
            session.floor = floor;
            session.replies = session.replies.split_off(&floor);
        }
        while session.replies.len() > SESSION_REPLIES_MAX {
            let Some((seq, _)) = session.replies.pop_first() else {
                break;
            };
            session.floor = seq + 1;
        }
        outcome
    }

    /// What [`Sessions::admit`] would decide for `tag` now, recording
    /// nothing: a large write is applied a slice at a time only if it
    /// applies at all.
    pub fn outcome(&self, tag: &WriteTag) -> SessionOutcome {
        let Some(session) = self.open.get(&tag.session) else {
            return SessionOutcome::Expired;
        };
        if let Some(&first) = session.replies.get(&tag.seq) {
            SessionOutcome::Duplicate { version: first }
        } else if tag.seq < session.floor {
            SessionOutcome::Expired
        } else {
            SessionOutcome::Fresh
        }
    }

    /// The version a request was applied at, if it was and is remembered.
    pub fn reply(&self, tag: &WriteTag) -> Option<u64> {
        self.open.get(&tag.session)?.replies.get(&tag.seq).copied()
    }

    /// Whether `id` is open.
    #[cfg(test)]
    pub fn is_open(&self, id: u64) -> bool {
        self.open.contains_key(&id)
    }

    /// The table as a snapshot carries it, by id.
    pub fn to_records(&self) -> Vec<SessionRecord> {
        self.open
            .iter()
            .map(|(&id, s)| SessionRecord {
                id,
                floor: s.floor,
                last_version: s.last_version,
                replies: s.replies.iter().map(|(&q, &v)| (q, v)).collect(),
            })
            .collect()
    }

    /// The table a snapshot carries (checked by the decoder: sorted,
    /// bounded, no reply below its floor).
    pub fn from_records(records: Vec<SessionRecord>) -> Sessions {
        Sessions {
            open: records
                .into_iter()
                .map(|r| {
                    let session = Session {
                        floor: r.floor,
                        replies: r.replies.into_iter().collect(),
                        last_version: r.last_version,
                    };
                    (r.id, session)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(session: u64, seq: u64, floor: u64) -> WriteTag {
        WriteTag {
            session,
            seq,
            floor,
        }
    }

    #[test]
    fn outcome_predicts_what_admit_decides_without_recording_it() {
        let mut sessions = Sessions::default();
        sessions.open(3, 3, 8);
        // Fresh, duplicate, below the floor, of a closed session, and a
        // request whose floor drops the older ones.
        let tags = [
            tag(3, 1, 1),
            tag(3, 1, 1),
            tag(3, 5, 4),
            tag(3, 2, 1),
            tag(4, 1, 1),
            tag(3, 6, 6),
            tag(3, 5, 4),
        ];
        for (version, tag) in (10..).zip(tags) {
            let predicted = sessions.outcome(&tag);
            let before = sessions.clone();
            assert_eq!(before, sessions, "outcome records nothing");
            assert_eq!(sessions.admit(&tag, version), predicted, "{tag:?}");
        }
    }

    #[test]
    fn a_resent_request_applies_once_and_answers_with_its_first_version() {
        let mut sessions = Sessions::default();
        sessions.open(3, 3, 8);
        assert_eq!(sessions.admit(&tag(3, 1, 1), 5), SessionOutcome::Fresh);
        assert_eq!(
            sessions.admit(&tag(3, 1, 1), 9),
            SessionOutcome::Duplicate { version: 5 }
        );
        assert_eq!(sessions.reply(&tag(3, 1, 1)), Some(5));
        // Requests of a session may arrive out of order (concurrent writes).
        assert_eq!(sessions.admit(&tag(3, 3, 1), 10), SessionOutcome::Fresh);
        assert_eq!(sessions.admit(&tag(3, 2, 1), 11), SessionOutcome::Fresh);
    }

    #[test]
    fn requests_below_the_floor_are_forgotten_and_expire() {
        let mut sessions = Sessions::default();
        sessions.open(1, 1, 8);
        assert_eq!(sessions.admit(&tag(1, 1, 1), 2), SessionOutcome::Fresh);
        assert_eq!(sessions.admit(&tag(1, 2, 1), 3), SessionOutcome::Fresh);
        // The client has had the answers of 1 and 2.
        assert_eq!(sessions.admit(&tag(1, 3, 3), 4), SessionOutcome::Fresh);
        assert_eq!(sessions.reply(&tag(1, 1, 1)), None);
        assert_eq!(sessions.admit(&tag(1, 1, 1), 5), SessionOutcome::Expired);
        assert_eq!(sessions.admit(&tag(1, 2, 1), 6), SessionOutcome::Expired);
    }

    #[test]
    fn a_full_table_closes_the_least_recently_used_session() {
        let mut sessions = Sessions::default();
        sessions.open(1, 1, 2);
        sessions.open(2, 2, 2);
        // Session 1 wrote last, so session 2 is the least recent.
        assert_eq!(sessions.admit(&tag(1, 1, 1), 3), SessionOutcome::Fresh);
        sessions.open(4, 4, 2);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.is_open(1) && sessions.is_open(4) && !sessions.is_open(2));
        assert_eq!(sessions.admit(&tag(2, 1, 1), 5), SessionOutcome::Expired);
        // Opening an open session again forgets nothing.
        sessions.open(1, 6, 2);
        assert_eq!(sessions.reply(&tag(1, 1, 1)), Some(3));
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn a_session_remembers_at_most_its_bound_of_replies() {
        let mut sessions = Sessions::default();
        sessions.open(1, 1, 1);
        let n = SESSION_REPLIES_MAX as u64 + 10;
        for seq in 1..=n {
            // The client never advances its floor: all in flight at once.
            assert_eq!(
                sessions.admit(&tag(1, seq, 1), 1 + seq),
                SessionOutcome::Fresh
            );
        }
        let records = sessions.to_records();
        assert_eq!(records[0].replies.len(), SESSION_REPLIES_MAX);
        assert_eq!(records[0].floor, 11);
        assert_eq!(
            sessions.admit(&tag(1, 10, 1), 1000),
            SessionOutcome::Expired
        );
        assert_eq!(
            sessions.admit(&tag(1, 11, 1), 1001),
            SessionOutcome::Duplicate { version: 12 }
        );
    }

    #[test]
    fn the_table_survives_its_snapshot_form() {
        let mut sessions = Sessions::default();
        sessions.open(1, 1, 4);
        sessions.open(2, 2, 4);
        sessions.admit(&tag(2, 4, 2), 7);
        let back = Sessions::from_records(sessions.to_records());
        assert_eq!(back, sessions);
        assert_eq!(back.reply(&tag(2, 4, 2)), Some(7));
    }
}
