//! Safety invariants, checked after every step: one leader per term, terms
//! never go back, log matching, committed changes never lost or changed,
//! every node's state at a version equals the model's.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use simple_raft::core::Core;
use simple_raft::wire::{Change, LogId};

use super::model::{members_hash, History};
use super::trace::{hash_of, pairs_hash};

/// What the checker remembers about one incarnation of one node.
#[derive(Debug, Default)]
struct Watch {
    incarnation: u64,
    term: u64,
    commit: u64,
    /// The last version applied, by events or snapshot.
    applied: u64,
    /// `mirror[v]`: the term of the entry at `v` last verified.
    mirror: Vec<u64>,
    /// The commit version whose state was last compared with the model.
    state_checked: Option<u64>,
}

/// The checker of one run.
#[derive(Debug, Default)]
pub struct Checker {
    /// Every committed change.
    pub history: History,
    /// Term -> the (address, incarnation) that led it.
    leaders: BTreeMap<u64, (SocketAddr, u64)>,
    /// (version, term) -> (term of the entry before it, hash of the change):
    /// one entry per position and term, with one predecessor, is log
    /// matching by induction.
    registry: BTreeMap<(u64, u64), (u64, u64)>,
    /// Version -> the digest the cores report for it.
    digests: BTreeMap<u64, u64>,
    watches: Vec<Watch>,
}

impl Checker {
    /// A checker with an empty history.
    pub fn new() -> Checker {
        Checker {
            history: History::new(),
            ..Checker::default()
        }
    }

    /// Forgets what was known about slot `node` (a new incarnation).
    pub fn reset(&mut self, node: usize, incarnation: u64) {
        if self.watches.len() <= node {
            self.watches.resize_with(node + 1, Watch::default);
        }
        self.watches[node] = Watch {
            incarnation,
            ..Watch::default()
        };
    }

    /// Slot `node` started incarnation `incarnation` as `core`: fresh, or
    /// restored from its disk. A restored member must have kept its term
    /// (every term change was synced before anything was sent), and its
    /// state must be one the cluster committed.
    pub fn restarted(
        &mut self,
        node: usize,
        incarnation: u64,
        core: &Core,
        restored: bool,
    ) -> Result<(), String> {
        let term_before = self.watches.get(node).map_or(0, |w| w.term);
        self.reset(node, incarnation);
        if !restored {
            return Ok(());
        }
        if core.term() < term_before {
            return Err(format!(
                "restored at term {} after running at term {term_before}: a term was not durable",
                core.term()
            ));
        }
        let watch = &mut self.watches[node];
        watch.term = core.term();
        watch.commit = core.commit();
        watch.applied = core.commit();
        let last = LogId {
            term: core.log_base().term,
            version: core.commit(),
        };
        match self.history.entries.get(&last.version) {
            Some(c) if c.term != last.term => Err(format!(
                "restored at {last:?} but version {} committed in term {}",
                last.version, c.term
            )),
            None if last.version > 0 => {
                Err(format!("restored at {last:?}, a version nobody applied"))
            }
            _ => Ok(()),
        }
    }

    /// The terms and their leaders seen so far.
    pub fn leaders(&self) -> &BTreeMap<u64, (SocketAddr, u64)> {
        &self.leaders
    }

    /// `core` (incarnation `incarnation`) is leader of `term`.
    pub fn leader(&mut self, term: u64, core: &Core, incarnation: u64) -> Result<(), String> {
        let me = (core.addr(), incarnation);
        match self.leaders.get(&term) {
            Some(known) if *known == me => return Ok(()),
            Some(known) => {
                return Err(format!(
                    "two leaders in term {term}: {} (incarnation {}) and {} (incarnation {})",
                    known.0, known.1, me.0, me.1
                ))
            }
            None => {}
        }
        self.leaders.insert(term, me);
        // Leader completeness: everything applied in an earlier term.
        if let Some((version, committed)) = self.history.committed_before_term(term) {
            let last = core.last_log_id();
            let base = core.log_base();
            if last.version < version {
                return Err(format!(
                    "leader {} of term {term} lacks committed version {version} \
                     (its last is {last:?})",
                    me.0
                ));
            }
            if version > base.version {
                let held = core.entry(version).map(|e| e.term);
                if held != Some(committed.term) {
                    return Err(format!(
                        "leader {} of term {term} holds term {held:?} at committed version \
                         {version}, which committed in term {}",
                        me.0, committed.term
                    ));
                }
            }
        }
        Ok(())
    }

    /// Slot `node` applied a committed change.
    pub fn applied(
        &mut self,
        node: usize,
        node_term: u64,
        version: u64,
        term: u64,
        change: &Change,
    ) -> Result<(), String> {
        let watch = &mut self.watches[node];
        if version != watch.applied + 1 {
            return Err(format!(
                "applied version {version} after version {} (out of order)",
                watch.applied
            ));
        }
        watch.applied = version;
        self.history.applied(version, term, change, node_term)
    }

    /// Slot `node` replaced its state with a snapshot up to `last`.
    pub fn snapshot_installed(&mut self, node: usize, last: LogId) -> Result<(), String> {
        let watch = &mut self.watches[node];
        if last.version < watch.applied {
            return Err(format!(
                "installed a snapshot at version {} below the applied version {}",
                last.version, watch.applied
            ));
        }
        watch.applied = last.version;
        watch.state_checked = None;
        match self.history.entries.get(&last.version) {
            Some(c) if c.term != last.term => Err(format!(
                "snapshot claims {last:?} but version {} committed in term {}",
                last.version, c.term
            )),
            None if last.version > 0 => {
                Err(format!("snapshot at {last:?}, a version nobody applied"))
            }
            _ => Ok(()),
        }
    }

    /// Checks one node after a step that touched it. `full` walks its
    /// whole log instead of the part that changed.
    pub fn after_step(&mut self, node: usize, core: &Core, full: bool) -> Result<(), String> {
        let watch = &mut self.watches[node];
        let term = core.term();
        if term < watch.term {
            return Err(format!("term went back from {} to {term}", watch.term));
        }
        watch.term = term;
        let commit = core.commit();
        if commit < watch.commit {
            return Err(format!(
                "commit went back from {} to {commit}",
                watch.commit
            ));
        }
        watch.commit = commit;
        if commit != watch.applied {
            return Err(format!(
                "commit is {commit} but the events applied up to {}",
                watch.applied
            ));
        }
        let incarnation = watch.incarnation;
        self.check_log(node, core, full)?;
        if core.role() == simple_raft::core::Role::Leader {
            self.leader(term, core, incarnation)?;
        }
        self.check_state(node, core)
    }

    fn check_log(&mut self, node: usize, core: &Core, full: bool) -> Result<(), String> {
        let base = core.log_base();
        let last = core.last_log_id();
        let commit = core.commit();
        if last.version < base.version || (last.version == base.version && last != base) {
            return Err(format!("last log id {last:?} below log base {base:?}"));
        }
        if commit > last.version {
            return Err(format!("commit {commit} beyond last log id {last:?}"));
        }
        let watch = &mut self.watches[node];
        if watch.mirror.len() <= last.version as usize {
            watch.mirror.resize(last.version as usize + 1, 0);
        }
        let mut v = last.version;
        while v > base.version {
            let entry = core
                .entry(v)
                .ok_or_else(|| format!("entry({v}) missing, base {base:?}, last {last:?}"))?;
            if v == last.version && entry.term != last.term {
                return Err(format!(
                    "last log id {last:?} but the entry there has term {}",
                    entry.term
                ));
            }
            if !full && watch.mirror[v as usize] == entry.term {
                break;
            }
            let prev_term = if v - 1 == base.version {
                base.term
            } else {
                core.entry(v - 1)
                    .ok_or_else(|| format!("entry({}) missing, base {base:?}", v - 1))?
                    .term
            };
            if prev_term > entry.term {
                return Err(format!(
                    "terms decrease in the log: {prev_term} at {} then {} at {v}",
                    v - 1,
                    entry.term
                ));
            }
            let shape = (prev_term, hash_of(&entry.change));
            let known = *self.registry.entry((v, entry.term)).or_insert(shape);
            if known != shape {
                return Err(format!(
                    "log matching: two different entries at version {v} term {} \
                     (predecessor terms {} and {}, or different changes); this one is {:?}",
                    entry.term, known.0, shape.0, entry.change
                ));
            }
            if v <= commit {
                if let Some(c) = self.history.entries.get(&v) {
                    if c.term != entry.term || c.change != entry.change {
                        return Err(format!(
                            "committed version {v} held as (term {}, {:?}) but committed as \
                             (term {}, {:?})",
                            entry.term, entry.change, c.term, c.change
                        ));
                    }
                }
            }
            watch.mirror[v as usize] = entry.term;
            v -= 1;
        }
        watch.mirror.truncate(last.version as usize + 1);
        Ok(())
    }

    fn check_state(&mut self, node: usize, core: &Core) -> Result<(), String> {
        let commit = core.commit();
        let watch = &mut self.watches[node];
        if watch.state_checked == Some(commit) {
            return Ok(());
        }
        watch.state_checked = Some(commit);
        let digest = core.digest();
        let known = *self.digests.entry(commit).or_insert(digest);
        if known != digest {
            return Err(format!(
                "digest at version {commit} is {digest:#x}, another node had {known:#x}"
            ));
        }
        if let Some((state, map_hash, member_hash)) = self.history.state(commit) {
            if pairs_hash(core.map().iter()) != *map_hash {
                return Err(format!(
                    "map at version {commit} is {:?}, the committed changes give {:?}",
                    core.map(),
                    state.map
                ));
            }
            let members = core.members();
            if members_hash(&members) != *member_hash {
                return Err(format!(
                    "members at version {commit} are {members:?}, the committed changes give {:?}",
                    state.members.values().collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }
}
