//! The reference history: every committed change, in version order, as the
//! nodes reported applying them, and the state each version leads to,
//! computed here independently of the core.

use std::collections::BTreeMap;

use simple_raft::wire::{Change, Member, NodeId, Write, WriteTag, SESSION_REPLIES_MAX};

use super::trace::{hash_of, pairs_hash};

/// The replicated state after a version, as this model computes it.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The map.
    pub map: BTreeMap<String, String>,
    /// The members, by id.
    pub members: BTreeMap<NodeId, Member>,
    /// The open client sessions, by id.
    pub sessions: BTreeMap<u64, Session>,
}

/// A client session as this model keeps it (the rules written down again,
/// apart from the core's).
#[derive(Debug, Clone, Default)]
pub struct Session {
    floor: u64,
    replies: BTreeMap<u64, u64>,
    last_used: u64,
}

/// What a committed session write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It applied at its own version.
    Applied,
    /// It applied as nothing: the same request applied at this version.
    Duplicate(u64),
    /// It applied as nothing: its session is closed or it was forgotten.
    Expired,
}

impl State {
    /// Applies the change committed at `version`.
    pub fn apply(&mut self, version: u64, change: &Change) -> Outcome {
        match change {
            Change::OpenSession { id, sessions_max } => {
                if let Some(open) = self.sessions.get_mut(id) {
                    open.last_used = version;
                } else {
                    while self.sessions.len() >= (*sessions_max as usize).max(1) {
                        let lru = self
                            .sessions
                            .iter()
                            .map(|(id, s)| (s.last_used, *id))
                            .min()
                            .map(|(_, id)| id)
                            .expect("not empty");
                        self.sessions.remove(&lru);
                    }
                    self.sessions.insert(
                        *id,
                        Session {
                            last_used: version,
                            ..Session::default()
                        },
                    );
                }
            }
            Change::SessionWrite { tag, write } => return self.session_write(version, tag, write),
            Change::Noop => {}
            Change::Set { key, value } => {
                self.map.insert(key.clone(), value.clone());
            }
            Change::Remove { key } => {
                self.map.remove(key);
            }
            Change::Replace { set, remove } => {
                for key in remove {
                    self.map.remove(key);
                }
                for (key, value) in set {
                    self.map.insert(key.clone(), value.clone());
                }
            }
            Change::AddMember(m) => {
                self.members.insert(m.id, m.clone());
            }
            Change::PromoteMember(id) => {
                if let Some(m) = self.members.get_mut(id) {
                    m.voter = true;
                }
            }
            Change::RemoveMember(id) => {
                self.members.remove(id);
            }
            Change::ReplaceMember { old, new } => {
                self.members.remove(old);
                self.members.insert(new.id, new.clone());
            }
        }
        Outcome::Applied
    }

    fn session_write(&mut self, version: u64, tag: &WriteTag, write: &Write) -> Outcome {
        let Some(session) = self.sessions.get_mut(&tag.session) else {
            return Outcome::Expired;
        };
        session.last_used = version;
        let outcome = match session.replies.get(&tag.seq) {
            Some(first) => Outcome::Duplicate(*first),
            None if tag.seq < session.floor => Outcome::Expired,
            None => {
                session.replies.insert(tag.seq, version);
                Outcome::Applied
            }
        };
        if tag.floor > session.floor {
            session.floor = tag.floor;
            session.replies.retain(|seq, _| *seq >= tag.floor);
        }
        while session.replies.len() > SESSION_REPLIES_MAX {
            let oldest = *session.replies.keys().next().expect("not empty");
            session.replies.remove(&oldest);
            session.floor = oldest + 1;
        }
        if outcome == Outcome::Applied {
            let change = match write.clone() {
                Write::Set { key, value } => Change::Set { key, value },
                Write::Remove { key } => Change::Remove { key },
                Write::Replace { set, remove } => Change::Replace { set, remove },
            };
            self.apply(version, &change);
        }
        outcome
    }

    /// Hash of the map (the core's digest uses its own function).
    pub fn map_hash(&self) -> u64 {
        pairs_hash(self.map.iter())
    }
}

/// Hash of a member list, in id order.
pub fn members_hash(members: &[Member]) -> u64 {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by_key(|m| m.id);
    hash_of(&sorted)
}

/// One committed change, with what is known about when it committed.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The term of the entry.
    pub term: u64,
    /// The change.
    pub change: Change,
    /// The lowest term in which a node was seen to apply it: every leader
    /// of a later term must hold it.
    pub seen_in_term: u64,
}

/// Every committed change and the states they lead to.
#[derive(Debug, Default)]
pub struct History {
    /// By version.
    pub entries: BTreeMap<u64, Committed>,
    /// `states[v]`: the state after version `v` (`states[0]` is empty),
    /// known for versions with no gap below them.
    states: Vec<(State, u64, u64)>,
    head: State,
    /// What each session write came to, by version.
    pub outcomes: BTreeMap<u64, Outcome>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        let head = State::default();
        let hashes = (head.map_hash(), members_hash(&[]));
        History {
            entries: BTreeMap::new(),
            states: vec![(head.clone(), hashes.0, hashes.1)],
            head,
            outcomes: BTreeMap::new(),
        }
    }

    /// Records that a node in term `node_term` applied `(version, term,
    /// change)`; an error if that version committed differently before.
    pub fn applied(
        &mut self,
        version: u64,
        term: u64,
        change: &Change,
        node_term: u64,
    ) -> Result<(), String> {
        if version == 0 {
            return Err("applied version 0".into());
        }
        if let Some(known) = self.entries.get_mut(&version) {
            if known.term != term || &known.change != change {
                return Err(format!(
                    "committed change differs at version {version}: history has (term {}, {:?}), \
                     node applied (term {term}, {change:?})",
                    known.term, known.change
                ));
            }
            known.seen_in_term = known.seen_in_term.min(node_term);
            return Ok(());
        }
        self.entries.insert(
            version,
            Committed {
                term,
                change: change.clone(),
                seen_in_term: node_term,
            },
        );
        while let Some(next) = self.entries.get(&(self.states.len() as u64)) {
            let at = self.states.len() as u64;
            let outcome = self.head.apply(at, &next.change);
            if matches!(next.change, Change::SessionWrite { .. }) {
                self.outcomes.insert(at, outcome);
            }
            let members: Vec<Member> = self.head.members.values().cloned().collect();
            let hashes = (self.head.map_hash(), members_hash(&members));
            self.states.push((self.head.clone(), hashes.0, hashes.1));
        }
        Ok(())
    }

    /// The model's state after `version`, with its map and member hashes.
    pub fn state(&self, version: u64) -> Option<&(State, u64, u64)> {
        self.states.get(version as usize)
    }

    /// The highest version with a known state.
    pub fn known_upto(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    /// The highest version a node applied while its term was below
    /// `term`: a leader of `term` must hold it.
    pub fn committed_before_term(&self, term: u64) -> Option<(u64, &Committed)> {
        self.entries
            .iter()
            .rev()
            .find(|(_, c)| c.seen_in_term < term)
            .map(|(&v, c)| (v, c))
    }

    /// The highest committed version.
    pub fn last(&self) -> u64 {
        self.entries.keys().next_back().copied().unwrap_or(0)
    }
}
