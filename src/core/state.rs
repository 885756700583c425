//! The replicated state machine: the map, the members and the next member
//! id, at the committed version.

use std::collections::BTreeMap;

use super::sessions::{SessionOutcome, Sessions};
#[cfg(test)]
use crate::wire::LogId;
use crate::wire::{Change, Member, NodeId, Snapshot, WriteRef};

/// The data map: persistent, so that a snapshot of it (for readers, for a
/// peer catching up, for a diff against a map derived from it) is a
/// pointer copy, and two maps that share structure are compared in time
/// proportional to where they differ.
pub type Map = imbl::OrdMap<String, String>;

/// The committed state.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The data map.
    pub map: Map,
    /// The members, by id.
    pub members: BTreeMap<NodeId, Member>,
    /// The next id to give a joining member; ids are never reused.
    pub next_member_id: u32,
    /// The cluster generation: minted by the founder, learned by every
    /// other member from its welcome or a snapshot; 0 before either.
    pub generation: u64,
    /// The open client sessions: what makes a resent write apply once.
    pub sessions: Sessions,
    /// Order-independent hash of the map, kept up to date on every change
    /// so nodes can be compared cheaply.
    pub digest: u64,
    /// Bytes of the map's pairs as a snapshot encodes them (see
    /// [`pair_bytes`]), kept up to date on every change like the digest:
    /// what `state_bytes_max` bounds, and what a snapshot of the state
    /// costs to send, without walking the map.
    pub map_bytes: usize,
}

/// Bytes of one key/value pair in an encoded snapshot: each string's
/// length as a varint, then its bytes. The sum over the map is the map's
/// share of the snapshot, so the limit on it bounds the snapshot too.
pub fn pair_bytes(key: &str, value: &str) -> usize {
    fn varint_len(n: usize) -> usize {
        let bits = usize::BITS - n.leading_zeros();
        (bits as usize).div_ceil(7).max(1)
    }
    varint_len(key.len()) + key.len() + varint_len(value.len()) + value.len()
}

/// Pairs a write sets or removes: what a slice of its apply counts.
pub fn write_pairs(write: WriteRef<'_>) -> usize {
    match write {
        WriteRef::Set { .. } | WriteRef::Remove { .. } => 1,
        WriteRef::Replace { set, remove } => set.len().saturating_add(remove.len()),
    }
}

/// Hash of one key/value pair (FNV-1a, then a final mix), combined with
/// XOR into [`State::digest`].
fn pair_hash(key: &str, value: &str) -> u64 {
    // Plain loops over the bytes (key, 0xff, value): the same hash as one
    // chained iterator, several times faster where not optimised.
    fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
        for &byte in bytes {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
    let h = fnv(0xcbf2_9ce4_8422_2325, key.as_bytes());
    let mut h = fnv(h, &[0xff]);
    h = fnv(h, value.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

impl State {
    /// Applies the change committed at `version`; says what a session
    /// write came to (every other change is [`SessionOutcome::Fresh`]).
    pub fn apply(&mut self, version: u64, change: &Change) -> SessionOutcome {
        match change {
            Change::Noop => {}
            Change::Set { .. } | Change::Remove { .. } | Change::Replace { .. } => {
                if let Some(write) = change.write() {
                    self.write(write);
                }
            }
            Change::SessionWrite { tag, .. } => {
                let outcome = self.sessions.admit(tag, version);
                if outcome == SessionOutcome::Fresh {
                    if let Some(write) = change.write() {
                        self.write(write);
                    }
                }
                return outcome;
            }
            Change::OpenSession { id, sessions_max } => {
                self.sessions.open(*id, version, *sessions_max)
            }
            Change::AddMember(member) => {
                self.next_member_id = self.next_member_id.max(member.id.0.saturating_add(1));
                self.members.insert(member.id, member.clone());
            }
            Change::PromoteMember(id) => {
                if let Some(member) = self.members.get_mut(id) {
                    member.voter = true;
                }
            }
            Change::RemoveMember(id) => {
                self.members.remove(id);
            }
            Change::ReplaceMember { old, new } => {
                self.members.remove(old);
                self.next_member_id = self.next_member_id.max(new.id.0.saturating_add(1));
                self.members.insert(new.id, new.clone());
            }
        }
        SessionOutcome::Fresh
    }

    fn write(&mut self, write: WriteRef<'_>) {
        match write {
            WriteRef::Set { key, value } => self.set(key, value),
            WriteRef::Remove { key } => self.remove(key),
            WriteRef::Replace { set, remove } => {
                for key in remove {
                    self.remove(key);
                }
                for (key, value) in set {
                    self.set(key, value);
                }
            }
        }
    }

    /// Applies the pairs `from..` (removes first, then sets, as
    /// [`State::apply`] does) of a [`WriteRef::Replace`], at most
    /// `pairs_max` of them, to the map, digest and byte count only;
    /// returns where the next slice starts ([`write_pairs`] when done).
    /// Applying every slice in order leaves the map as one `apply` of the
    /// write would.
    pub fn write_slice(&mut self, write: WriteRef<'_>, from: usize, pairs_max: usize) -> usize {
        let end = from.saturating_add(pairs_max).min(write_pairs(write));
        match write {
            WriteRef::Set { key, value } if from < end => self.set(key, value),
            WriteRef::Remove { key } if from < end => self.remove(key),
            WriteRef::Replace { set, remove } => {
                for i in from..end {
                    match i.checked_sub(remove.len()) {
                        None => self.remove(&remove[i]),
                        Some(j) => self.set(&set[j].0, &set[j].1),
                    }
                }
            }
            _ => {}
        }
        end
    }

    /// A state to build a large change's map on, a slice at a time: the
    /// map (a pointer copy), digest and byte count of this one, and
    /// nothing else, so that the committed state stays what readers see
    /// until the whole change is in.
    pub fn map_only(&self) -> State {
        State {
            map: self.map.clone(),
            digest: self.digest,
            map_bytes: self.map_bytes,
            ..State::default()
        }
    }

    /// Ends the apply of the change committed at `version` whose writes
    /// were applied to `built` (see [`State::map_only`]): the session
    /// table decides as [`State::apply`] would, and the map, digest and
    /// byte count are taken from `built` only if the write applies.
    pub fn apply_built(&mut self, version: u64, change: &Change, built: State) -> SessionOutcome {
        let outcome = match change {
            Change::SessionWrite { tag, .. } => self.sessions.admit(tag, version),
            _ => SessionOutcome::Fresh,
        };
        if outcome == SessionOutcome::Fresh {
            self.map = built.map;
            self.digest = built.digest;
            self.map_bytes = built.map_bytes;
        }
        outcome
    }

    fn set(&mut self, key: &str, value: &str) {
        if let Some(old) = self.map.insert(key.to_owned(), value.to_owned()) {
            self.digest ^= pair_hash(key, &old);
            self.map_bytes -= pair_bytes(key, &old);
        }
        self.digest ^= pair_hash(key, value);
        self.map_bytes += pair_bytes(key, value);
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.digest ^= pair_hash(key, &old);
            self.map_bytes -= pair_bytes(key, &old);
        }
    }

    /// The state as a snapshot taken at `last`.
    #[cfg(test)]
    pub fn to_snapshot(&self, last: LogId) -> Snapshot {
        Snapshot {
            generation: self.generation,
            last,
            members: self.members.values().cloned().collect(),
            next_member_id: self.next_member_id,
            map: self
                .map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sessions: self.sessions.to_records(),
        }
    }

    /// The state a snapshot holds.
    pub fn from_snapshot(snapshot: Snapshot) -> State {
        let mut state = State {
            members: snapshot.members.into_iter().map(|m| (m.id, m)).collect(),
            next_member_id: snapshot.next_member_id,
            generation: snapshot.generation,
            sessions: Sessions::from_records(snapshot.sessions),
            ..State::default()
        };
        for (key, value) in snapshot.map {
            state.set(&key, &value);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_content_not_history() {
        let mut a = State::default();
        a.apply(
            1,
            &Change::Set {
                key: "x".into(),
                value: "1".into(),
            },
        );
        a.apply(
            2,
            &Change::Set {
                key: "y".into(),
                value: "2".into(),
            },
        );
        a.apply(
            3,
            &Change::Set {
                key: "x".into(),
                value: "3".into(),
            },
        );
        let mut b = State::default();
        b.apply(
            1,
            &Change::Replace {
                set: vec![("y".into(), "2".into()), ("x".into(), "3".into())],
                remove: vec![],
            },
        );
        assert_eq!(a.digest, b.digest);
        a.apply(4, &Change::Remove { key: "y".into() });
        assert_ne!(a.digest, b.digest);
        let c = State::from_snapshot(b.to_snapshot(LogId::default()));
        assert_eq!(c.digest, b.digest);
    }

    /// The map's bytes as the snapshot encodes them: the snapshot's map
    /// field is the pairs behind a varint count.
    fn encoded_map_bytes(state: &State) -> usize {
        let snapshot = state.to_snapshot(LogId::default());
        let encoded = postcard::to_allocvec(&snapshot.map).unwrap();
        let count = postcard::to_allocvec(&(snapshot.map.len() as u64)).unwrap();
        encoded.len() - count.len()
    }

    #[test]
    fn map_bytes_follow_sets_overwrites_and_removes_exactly() {
        let mut state = State::default();
        let long = "v".repeat(200);
        let changes = [
            Change::Set {
                key: "a".into(),
                value: "1".into(),
            },
            Change::Set {
                key: "b".into(),
                value: long.clone(),
            },
            Change::Set {
                key: "a".into(),
                value: long,
            },
            Change::Remove { key: "b".into() },
            Change::Remove {
                key: "absent".into(),
            },
            Change::Replace {
                set: vec![("c".into(), "x".repeat(20_000))],
                remove: vec!["a".into()],
            },
        ];
        for (version, change) in (1..).zip(&changes) {
            state.apply(version, change);
            assert_eq!(state.map_bytes, encoded_map_bytes(&state), "{change:?}");
        }
        let copy = State::from_snapshot(state.to_snapshot(LogId::default()));
        assert_eq!(copy.map_bytes, state.map_bytes);
        state.apply(9, &Change::Remove { key: "c".into() });
        assert_eq!(state.map_bytes, 0);
    }
}
