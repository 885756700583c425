//! Large committed changes applied a slice at a time.
//!
//! Applying a change of many pairs to the map costs time in proportion to
//! its size (100 000 inserts take over a tenth of a second), and a node
//! that spends it in one call answers no heartbeat and no vote meanwhile:
//! its followers, or its leader, start an election. So a committed change
//! of more than [`CoreConfig::apply_slice_pairs_max`] pairs is built on a
//! copy of the map (a pointer copy: the map is persistent), a slice of
//! pairs per [`Core::handle_timeout`], while every other input is handled
//! as usual. The committed state, what readers and snapshots see, stays at
//! the version before until the whole change is in: then the built map
//! replaces it, and the change is reported applied and answered, in log
//! order. Changes committed after it wait behind it.
//!
//! [`CoreConfig::apply_slice_pairs_max`]: super::CoreConfig::apply_slice_pairs_max

use std::sync::Arc;

use super::sessions::SessionOutcome;
use super::state::{write_pairs, State};
use super::{Core, Millis};
use crate::wire::{Change, Entry};

/// A committed change being applied, with the map it is built on.
#[derive(Debug)]
pub(super) struct StagedApply {
    /// Its version: the committed state's plus one.
    pub version: u64,
    pub entry: Arc<Entry>,
    /// The map, digest and byte count so far (see [`State::map_only`]).
    built: State,
    /// The pair the next slice starts at.
    next_pair: usize,
}

impl StagedApply {
    /// Stages `entry`, committed at `version` on top of `state`, if it is
    /// a write of more than `slice_pairs_max` pairs that applies (a
    /// session write that applies as nothing is cheap at once).
    pub fn start(
        state: &State,
        version: u64,
        entry: &Arc<Entry>,
        slice_pairs_max: usize,
    ) -> Option<StagedApply> {
        let write = entry.change.write()?;
        if write_pairs(write) <= slice_pairs_max {
            return None;
        }
        if let Change::SessionWrite { tag, .. } = &entry.change {
            if state.sessions.outcome(tag) != SessionOutcome::Fresh {
                return None;
            }
        }
        Some(StagedApply {
            version,
            entry: entry.clone(),
            built: state.map_only(),
            next_pair: 0,
        })
    }

    /// Applies the next slice; true once every pair is in.
    fn step(&mut self, slice_pairs_max: usize) -> bool {
        let Some(write) = self.entry.change.write() else {
            return true;
        };
        self.next_pair = self
            .built
            .write_slice(write, self.next_pair, slice_pairs_max);
        self.next_pair >= write_pairs(write)
    }
}

impl Core {
    /// Applies one slice of the staged change, and, once it is whole,
    /// makes it the committed state and goes on with what committed after
    /// it.
    pub(super) fn advance_staged_apply(&mut self, now: Millis) {
        let slice_pairs_max = self.cfg.apply_slice_pairs_max;
        let Some(staged) = &mut self.staged_apply else {
            return;
        };
        if !staged.step(slice_pairs_max) {
            return;
        }
        let Some(staged) = self.staged_apply.take() else {
            return;
        };
        let StagedApply {
            version,
            entry,
            built,
            ..
        } = staged;
        let outcome = self.state.apply_built(version, &entry.change, built);
        self.applied(now, version, entry, outcome, None);
        self.apply_committed(now);
    }

    /// Starts applying `entry`, committed at `version`, a slice at a time
    /// if it is large; false when it should be applied at once.
    pub(super) fn stage_apply(&mut self, version: u64, entry: &Arc<Entry>) -> bool {
        let slice_pairs_max = self.cfg.apply_slice_pairs_max;
        let Some(mut staged) = StagedApply::start(&self.state, version, entry, slice_pairs_max)
        else {
            return false;
        };
        // The first slice at once; it never completes a staged change.
        staged.step(slice_pairs_max);
        self.staged_apply = Some(staged);
        true
    }

    /// Whether a large change is being applied: then
    /// [`Core::poll_timeout`] is due at once.
    pub fn applying(&self) -> bool {
        self.staged_apply.is_some()
    }

    /// Drops a staged change whose entry the log no longer holds (a
    /// snapshot replaced the state, or the log was cut at or before it).
    pub(super) fn drop_staged_apply_from(&mut self, version: u64) {
        if self
            .staged_apply
            .as_ref()
            .is_some_and(|s| s.version >= version)
        {
            self.staged_apply = None;
        }
        self.commit_known = self
            .commit_known
            .min(version.saturating_sub(1))
            .max(self.commit);
    }
}
