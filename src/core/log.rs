//! The change log: a bounded tail of numbered changes after a base.
//!
//! Entries up to `base` are compacted away (they are committed and in the
//! state); entries after it are held so that followers a little behind can
//! be sent them, and so that uncommitted changes can be replaced.

use std::collections::VecDeque;

use crate::wire::{Entry, LogId};

/// Numbered changes `(base.version, last.version]`.
#[derive(Debug, Clone, Default)]
pub struct Log {
    base: LogId,
    entries: VecDeque<Entry>,
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
                term: e.term,
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
        let offset = version.checked_sub(self.base.version + 1)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Appends one entry at `last().version + 1`.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
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

    /// Entries from `from` on (at most `max`), in order.
    pub fn entries_from(&self, from: u64, max: usize) -> impl Iterator<Item = &Entry> {
        let skip = from.saturating_sub(self.base.version + 1) as usize;
        self.entries.iter().skip(skip).take(max)
    }

    /// Entries after `version`, with their versions.
    pub fn after(&self, version: u64) -> impl Iterator<Item = (u64, &Entry)> {
        let start = self.base.version + 1;
        self.entries
            .iter()
            .enumerate()
            .map(move |(i, e)| (start + i as u64, e))
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
        assert_eq!(log.entries_from(4, 10).count(), 1);
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
