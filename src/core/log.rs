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
        self.entries.push_back(Stored { entry, bytes });
    }

    /// Drops every entry at `version` and after.
    pub fn truncate_from(&mut self, version: u64) {
        let keep = version.saturating_sub(self.base.version + 1);
        self.entries.truncate(keep as usize);
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
        self.entries.drain(..drop.min(self.entries.len()));
        self.base = LogId { term, version };
    }

    /// Forgets every entry and starts again after `base` (snapshot install).
    pub fn reset(&mut self, base: LogId) {
        self.entries.clear();
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
    }
}
