//! The change log: a bounded tail of numbered changes after a base.
//!
//! Entries up to `base` are compacted away (they are committed and in the
//! state); entries after it are held so that followers a little behind can
//! be sent them, and so that uncommitted changes can be replaced.

use std::collections::VecDeque;
use std::sync::Arc;

use postcard::ser_flavors::Size;
use serde::Serialize;

use crate::wire::{Change, Entry, LogId};

/// Numbered changes `(base.version, last.version]`.
#[derive(Debug, Clone, Default)]
pub struct Log {
    base: LogId,
    entries: VecDeque<Stored>,
    /// Encoded bytes of every entry held, so that bounding the tail in
    /// bytes costs no walk over it.
    bytes: usize,
}

/// One entry, shared (applying it, or sending it to several peers, copies
/// nothing), with its encoded size (sizing a batch is a sum).
#[derive(Debug, Clone)]
struct Stored {
    entry: Arc<Entry>,
    bytes: usize,
}

/// An [`Entry`] made of borrowed parts: encodes to the same bytes.
#[derive(Serialize)]
struct EntryRef<'a> {
    term: u64,
    change: &'a Change,
}

/// Bytes of `change` encoded as an entry of `term`, counted without
/// encoding or copying it.
pub fn entry_bytes(term: u64, change: &Change) -> usize {
    postcard::serialize_with_flavor(&EntryRef { term, change }, Size::default())
        .unwrap_or(usize::MAX)
}

impl Log {
    /// The change everything before (and at) which is compacted away.
    pub fn base(&self) -> LogId {
        self.base
    }

    /// The last change held (the base when empty).
    pub fn last(&self) -> LogId {
        match self.entries.back() {
            Some(e) => LogId {
                term: e.entry.term,
                version: self.base.version + self.entries.len() as u64,
            },
            None => self.base,
        }
    }

    /// The term of the change at `version`, if known (the base counts).
    pub fn term_at(&self, version: u64) -> Option<u64> {
        if version == self.base.version {
            return Some(self.base.term);
        }
        self.entry(version).map(|e| e.term)
    }

    /// The entry at `version`, if held.
    pub fn entry(&self, version: u64) -> Option<&Entry> {
        self.shared(version).map(|e| &**e)
    }

    /// The entry at `version`, shared, if held.
    pub fn shared(&self, version: u64) -> Option<&Arc<Entry>> {
        let offset = version.checked_sub(self.base.version + 1)?;
        self.entries
            .get(usize::try_from(offset).ok()?)
            .map(|s| &s.entry)
    }

    /// Appends one entry at `last().version + 1`.
    pub fn push(&mut self, entry: Entry) {
        let bytes = entry_bytes(entry.term, &entry.change);
        self.push_sized(Arc::new(entry), bytes);
    }

    /// Appends one entry whose encoded size, `bytes`, is known.
    pub fn push_sized(&mut self, entry: Arc<Entry>, bytes: usize) {
        debug_assert!(
            entry.term >= self.last().term,
            "Raft §5.3: the terms of a log never decrease ({:?} then term {})",
            self.last(),
            entry.term
        );
        self.bytes = self.bytes.saturating_add(bytes);
        self.entries.push_back(Stored { entry, bytes });
    }

    /// Drops every entry at `version` and after.
    pub fn truncate_from(&mut self, version: u64) {
        let keep = version.saturating_sub(self.base.version + 1) as usize;
        for dropped in self.entries.iter().skip(keep) {
            self.bytes -= dropped.bytes;
        }
        self.entries.truncate(keep);
    }

    /// Encoded bytes of every entry held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Compacts the committed entries (those up to `commit`) down to at
    /// most `entries_max` of them and at most `bytes_max` bytes, dropping
    /// the oldest first. Uncommitted entries are never dropped. When the
    /// last committed entry alone is larger than `bytes_max`, none is kept:
    /// a follower that lacks it fetches a snapshot.
    pub fn compact_committed(&mut self, commit: u64, entries_max: usize, bytes_max: usize) {
        let committed = commit.saturating_sub(self.base.version) as usize;
        let committed = committed.min(self.entries.len());
        let uncommitted_bytes: usize = self.entries.iter().skip(committed).map(|s| s.bytes).sum();
        let mut kept_bytes = self.bytes - uncommitted_bytes;
        let mut drop = committed.saturating_sub(entries_max);
        for dropped in self.entries.iter().take(drop) {
            kept_bytes -= dropped.bytes;
        }
        while drop < committed && kept_bytes > bytes_max {
            kept_bytes -= self.entries[drop].bytes;
            drop += 1;
        }
        if drop > 0 {
            self.compact_to(self.base.version + drop as u64);
        }
    }

    /// Drops entries up to and including `version` (which must be held or
    /// be the base), making it the new base.
    pub fn compact_to(&mut self, version: u64) {
        if version <= self.base.version {
            return;
        }
        let Some(term) = self.term_at(version) else {
            return;
        };
        let drop = (version - self.base.version) as usize;
        for dropped in self.entries.drain(..drop.min(self.entries.len())) {
            self.bytes -= dropped.bytes;
        }
        self.base = LogId { term, version };
    }

    /// Forgets every entry and starts again after `base` (snapshot install).
    pub fn reset(&mut self, base: LogId) {
        self.entries.clear();
        self.bytes = 0;
        self.base = base;
    }

    /// Entries from `from` on, in order, each with its encoded size.
    pub fn sized_from(&self, from: u64) -> impl Iterator<Item = (&Entry, usize)> {
        let skip = from.saturating_sub(self.base.version + 1) as usize;
        self.entries.iter().skip(skip).map(|s| (&*s.entry, s.bytes))
    }

    /// Entries after `version`, with their versions.
    pub fn after(&self, version: u64) -> impl Iterator<Item = (u64, &Entry)> {
        let start = self.base.version + 1;
        self.entries
            .iter()
            .enumerate()
            .map(move |(i, s)| (start + i as u64, &*s.entry))
            .filter(move |(v, _)| *v > version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Change;

    fn entry(term: u64) -> Entry {
        Entry {
            term,
            change: Change::Noop,
        }
    }

    #[test]
    fn compaction_keeps_terms_and_positions() {
        let mut log = Log::default();
        for term in [1, 1, 2, 3] {
            log.push(entry(term));
        }
        assert_eq!(
            log.last(),
            LogId {
                term: 3,
                version: 4
            }
        );
        log.compact_to(2);
        assert_eq!(
            log.base(),
            LogId {
                term: 1,
                version: 2
            }
        );
        assert_eq!(log.term_at(2), Some(1));
        assert_eq!(log.term_at(3), Some(2));
        assert_eq!(log.term_at(1), None);
        assert_eq!(log.sized_from(4).count(), 1);
        log.truncate_from(4);
        assert_eq!(
            log.last(),
            LogId {
                term: 2,
                version: 3
            }
        );
        log.truncate_from(1);
        assert_eq!(log.last(), log.base());
        assert_eq!(log.bytes(), 0);
    }

    fn set_entry(value_bytes: usize) -> Entry {
        Entry {
            term: 1,
            change: Change::Set {
                key: "k".into(),
                value: "v".repeat(value_bytes),
            },
        }
    }

    #[test]
    fn the_committed_tail_is_bounded_in_bytes_and_keeps_uncommitted_entries() {
        let mut log = Log::default();
        for _ in 0..10 {
            log.push(set_entry(1000));
        }
        let entry_bytes = log.bytes() / 10;
        // Eight committed entries, at most three entries' bytes kept: the
        // five oldest go, the two uncommitted stay whatever their size.
        log.compact_committed(8, 1024, 3 * entry_bytes);
        assert_eq!(log.base().version, 5);
        assert_eq!(log.sized_from(6).count(), 5);
        assert_eq!(log.bytes(), 5 * entry_bytes);
        // The count limit still applies when the bytes allow more.
        log.compact_committed(8, 1, usize::MAX);
        assert_eq!(log.base().version, 7);
        // A committed entry larger than the byte limit is not kept at all.
        log.compact_committed(9, 1024, entry_bytes - 1);
        assert_eq!(log.base().version, 9);
        assert_eq!(log.bytes(), entry_bytes);
        assert_eq!(log.last().version, 10);
    }
}
