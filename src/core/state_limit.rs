//! The limit on the map's size (`state_bytes_max`), checked by a leader
//! before a write enters the log.
//!
//! The check is against the map as the log will leave it: the committed
//! state plus every uncommitted change, then the write. Counting only the
//! committed state would let a burst of writes, each fine on its own, pass
//! the limit together before any of them commits.

use std::collections::BTreeMap;

use super::state::pair_bytes;
use super::{Core, RequestError};
use crate::wire::{Change, WriteRef};

/// What `change` does to the map, in the order it applies: each key with
/// its new value, or `None` where the key is removed.
/// A session write counts as if it applies (a resend may apply as
/// nothing, which only leaves the map smaller than counted).
fn map_effects(change: &Change) -> Vec<(&str, Option<&str>)> {
    match change.write() {
        Some(WriteRef::Set { key, value }) => vec![(key, Some(value))],
        Some(WriteRef::Remove { key }) => vec![(key, None)],
        Some(WriteRef::Replace { set, remove }) => remove
            .iter()
            .map(|key| (key.as_str(), None))
            .chain(set.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))))
            .collect(),
        None => Vec::new(),
    }
}

/// The most bytes `change` can add to the map: the pairs it sets, as if
/// every key were new. Cheap, and enough to pass a write far from the
/// limit without looking anything up.
fn growth_bytes_max(change: &Change) -> usize {
    match change.write() {
        Some(WriteRef::Set { key, value }) => pair_bytes(key, value),
        Some(WriteRef::Replace { set, .. }) => set
            .iter()
            .fold(0usize, |sum, (k, v)| sum.saturating_add(pair_bytes(k, v))),
        Some(WriteRef::Remove { .. }) | None => 0,
    }
}

impl Core {
    /// Refuses `change` if it would take the map above `state_bytes_max`.
    /// A change that leaves the map no larger than it is passes even above
    /// the limit (the limit may have been lowered): removing keys and
    /// shrinking values must stay possible.
    pub(super) fn check_state_bytes(&self, change: &Change) -> Result<(), RequestError> {
        let limit = self.cfg.state_bytes_max;
        let growth = growth_bytes_max(change);
        if growth == 0 {
            return Ok(());
        }
        let uncommitted: Vec<&Change> = self
            .log
            .after(self.commit)
            .map(|(_, entry)| &entry.change)
            .collect();
        let bound = uncommitted
            .iter()
            .fold(self.state.map_bytes.saturating_add(growth), |sum, c| {
                sum.saturating_add(growth_bytes_max(c))
            });
        if bound <= limit {
            return Ok(());
        }
        // Near the limit: the exact sizes, before and after the change.
        let mut tail: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for change in &uncommitted {
            tail.extend(map_effects(change));
        }
        let before = self.map_bytes_with(&tail);
        let mut after_tail = tail;
        after_tail.extend(map_effects(change));
        let after = self.map_bytes_with(&after_tail);
        if after > limit && after > before {
            return Err(RequestError::StateFull {
                bytes: after,
                limit,
            });
        }
        Ok(())
    }

    /// Bytes of the committed map with `overlay` (keys set to a value, or
    /// removed) applied.
    fn map_bytes_with(&self, overlay: &BTreeMap<&str, Option<&str>>) -> usize {
        let mut added = 0usize;
        let mut dropped = 0usize;
        for (key, value) in overlay {
            if let Some(old) = self.state.map.get(*key) {
                dropped += pair_bytes(key, old);
            }
            if let Some(value) = value {
                added = added.saturating_add(pair_bytes(key, value));
            }
        }
        // `dropped` counts pairs of the committed map, so it is within it.
        self.state
            .map_bytes
            .saturating_add(added)
            .saturating_sub(dropped)
    }
}
