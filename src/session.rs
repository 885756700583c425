//! The client side of a write session: the id, the numbering of writes,
//! and the floor below which every write has had its outcome.
//!
//! A [`crate::Node`] has one session for every write made through it (its
//! own and those of the TCP clients it serves without a session of their
//! own); a [`crate::Client`] has one for the writes it sends. The session
//! is opened lazily by the first write, with an id chosen at random, and a
//! new one is opened when the cluster says the old one expired (see
//! `core/sessions.rs` for the rules a cluster applies).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::wire::WriteTag;

#[derive(Debug, Default)]
struct Numbering {
    /// The open session, once one is.
    id: Option<u64>,
    /// The cluster generation it was opened in, if known.
    generation: Option<u64>,
    /// The last number given.
    last_seq: u64,
    /// Numbers of the writes without an outcome yet.
    in_flight: BTreeSet<u64>,
}

/// A write session as its client keeps it. Shared by clones.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientSession {
    numbering: Arc<Mutex<Numbering>>,
    /// Held while a session is being opened, so concurrent first writes
    /// open one session, not one each.
    opening: Arc<tokio::sync::Mutex<()>>,
}

/// One write's place in the session: its tag, and its number kept in
/// flight (lowering the floor later writes carry) until it is dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    numbering: Arc<Mutex<Numbering>>,
    /// What the write carries, every time it is sent.
    pub(crate) tag: WriteTag,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut numbering = lock(&self.numbering);
        // A write of an earlier session: its number means nothing now.
        if numbering.id == Some(self.tag.session) {
            numbering.in_flight.remove(&self.tag.seq);
        }
    }
}

fn lock(numbering: &Mutex<Numbering>) -> std::sync::MutexGuard<'_, Numbering> {
    numbering.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientSession {
    /// The tag of a new write, opening a session first if there is none,
    /// or if the one there is belongs to another cluster generation than
    /// `generation` (`open(id)` must commit the opening of session `id`).
    pub(crate) async fn begin<F, Fut>(
        &self,
        generation: Option<u64>,
        open: F,
    ) -> Result<InFlight, Error>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<u64, Error>>,
    {
        let usable = |n: &Numbering| n.id.is_some() && n.generation == generation;
        if !usable(&lock(&self.numbering)) {
            let _opening = self.opening.lock().await;
            if !usable(&lock(&self.numbering)) {
                let id = rand::random::<u64>();
                open(id).await?;
                let mut numbering = lock(&self.numbering);
                *numbering = Numbering {
                    id: Some(id),
                    generation,
                    ..Numbering::default()
                };
            }
        }
        let mut numbering = lock(&self.numbering);
        let Some(session) = numbering.id else {
            // Expired by a concurrent write since it was opened.
            return Err(Error::SessionExpired);
        };
        numbering.last_seq += 1;
        let seq = numbering.last_seq;
        numbering.in_flight.insert(seq);
        let floor = numbering.in_flight.first().copied().unwrap_or(seq);
        Ok(InFlight {
            numbering: self.numbering.clone(),
            tag: WriteTag {
                session,
                seq,
                floor,
            },
        })
    }

    /// The cluster said `write`'s session expired: the next write opens a
    /// new one (unless that happened already).
    pub(crate) fn expired(&self, write: &InFlight) {
        let mut numbering = lock(&self.numbering);
        if numbering.id == Some(write.tag.session) {
            numbering.id = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_numbered_and_the_floor_is_the_oldest_in_flight() {
        let session = ClientSession::default();
        let mut opened = 0;
        let first = session
            .begin(None, |_| {
                opened += 1;
                async { Ok(1) }
            })
            .await
            .unwrap();
        let second = session.begin(None, |_| async { Ok(1) }).await.unwrap();
        assert_eq!(opened, 1);
        assert_eq!(first.tag.session, second.tag.session);
        assert_eq!((first.tag.seq, first.tag.floor), (1, 1));
        assert_eq!((second.tag.seq, second.tag.floor), (2, 1));
        drop(first);
        let third = session.begin(None, |_| async { Ok(1) }).await.unwrap();
        assert_eq!((third.tag.seq, third.tag.floor), (3, 2));
        session.expired(&third);
        let fourth = session.begin(None, |_| async { Ok(1) }).await.unwrap();
        assert_ne!(fourth.tag.session, third.tag.session);
        assert_eq!((fourth.tag.seq, fourth.tag.floor), (1, 1));
    }

    #[tokio::test]
    async fn a_session_that_fails_to_open_gives_no_tag() {
        let session = ClientSession::default();
        let failed = session
            .begin(None, |_| async { Err(Error::NoLeader) })
            .await;
        assert!(matches!(failed, Err(Error::NoLeader)));
        let ok = session.begin(None, |_| async { Ok(1) }).await.unwrap();
        assert_eq!(ok.tag.seq, 1);
    }
}
