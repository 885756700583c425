//! Log replication and commitment (Raft §5.3, §5.4.2), snapshots for
//! followers too far behind, and client writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use imbl::ordmap::DiffItem;

use super::sessions::SessionOutcome;
use super::{
    AppendKey, Core, Event, Map, Millis, PreparedSnapshot, PreparedUpdate, Progress, RequestError,
    RequestId, RoleState, SharedChange, Transmit,
};
use crate::wire::{
    Append, AppendAck, AppendRef, Change, Entry, FetchSnapshot, Heartbeat, HeartbeatAck, Kind,
    LogId, Message, NodeId, WriteRef,
};

/// Bytes of an append frame other than its entries, at most: header,
/// checksum, tag, and the `prev`, `commit`, `seq` and count fields.
const APPEND_OVERHEAD_BYTES_MAX: usize = 128;

impl Core {
    /// Heartbeat interval: a new round to every member, then upkeep.
    pub(super) fn leader_tick(&mut self, now: Millis) {
        let due = match &self.role {
            RoleState::Leader(leader) => now >= leader.heartbeat_at,
            _ => false,
        };
        if due {
            self.broadcast(now);
            self.maintain_membership(now);
        }
        self.advance_transfer(now);
        if self.check_retired(now) {
            return;
        }
        self.check_quorum(now);
    }

    /// Starts a heartbeat round: every member gets what it is missing, or a
    /// heartbeat.
    pub(super) fn broadcast(&mut self, now: Millis) {
        let peers: Vec<NodeId> = match &mut self.role {
            RoleState::Leader(leader) => {
                leader.seq += 1;
                leader.heartbeat_at = now + self.cfg.heartbeat_ms;
                leader.progress.keys().copied().collect()
            }
            _ => return,
        };
        for peer in peers {
            self.send_to_peer(now, peer, true);
        }
    }

    /// Sends `peer` the changes it lacks, a snapshot hint if the log no
    /// longer has them, or (if `heartbeat`) a heartbeat when it lacks
    /// nothing.
    pub(super) fn send_to_peer(&mut self, now: Millis, peer: NodeId, heartbeat: bool) {
        let Some(addr) = self.addr_of(peer) else {
            return;
        };
        let base = self.log.base();
        let last = self.log.last();
        let commit = self.commit;
        let commit_term = self.log.term_at(commit).unwrap_or(0);
        let hint_every = self.cfg.election_timeout_ms;
        let budget = self
            .cfg
            .datagram_bytes_max
            .saturating_sub(APPEND_OVERHEAD_BYTES_MAX);
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let seq = leader.seq;
        let Some(progress) = leader.progress.get_mut(&peer) else {
            return;
        };
        // A member with an empty log (new, or rejoined) starts from a
        // snapshot rather than a replay of the tail.
        let empty_log = progress.matched == 0 && progress.next == 1 && commit > 0;
        if progress.next <= base.version || empty_log {
            let hint_due = progress
                .snapshot_hint_at
                .is_none_or(|at| now >= at + hint_every);
            if hint_due {
                progress.snapshot_hint_at = Some(now);
                self.metrics.snapshots_hinted += 1;
                self.send(
                    addr,
                    Message::FetchSnapshot(FetchSnapshot {
                        // A snapshot of the committed state covers both the
                        // compacted log and the new member's empty one.
                        base: LogId {
                            term: commit_term,
                            version: commit,
                        },
                        from_leader: true,
                    }),
                );
            } else if heartbeat {
                self.send(addr, Message::Heartbeat(Heartbeat { last, commit, seq }));
            }
            return;
        }
        if progress.next <= last.version {
            let from = progress.next;
            let mut bytes = 0;
            let mut count = 0;
            for (_, size) in self.log.sized_from(from) {
                if count > 0 && bytes + size > budget {
                    break;
                }
                bytes += size;
                count += 1;
            }
            progress.next = from + count as u64;
            let resend_ms = if bytes > budget {
                // Too large for a datagram: it goes over TCP, and resending
                // it early would only queue another copy behind it.
                self.cfg.election_timeout_ms
            } else {
                self.cfg.heartbeat_ms
            };
            progress.in_flight = Some(super::InFlight {
                first: from,
                last: progress.next - 1,
                resend_at: now + resend_ms,
            });
            let prev = LogId {
                term: self.log.term_at(from - 1).unwrap_or(0),
                version: from - 1,
            };
            let key = AppendKey {
                term: self.term,
                prev,
                commit,
                seq,
                last: from + count as u64 - 1,
            };
            if let Some((cached, frame)) = &self.append_cache {
                if *cached == key && addr != self.cfg.addr {
                    let bytes = frame.clone();
                    self.queue_append(Transmit {
                        to: addr,
                        bytes,
                        stream: true,
                    });
                    return;
                }
            }
            if addr == self.cfg.addr {
                return;
            }
            // The entries are encoded from the log, not copied out of it.
            let append = AppendRef {
                prev,
                commit,
                seq,
                entries: self
                    .log
                    .sized_from(from)
                    .take(count)
                    .map(|(e, _)| e)
                    .collect(),
            };
            let sender = (
                self.id.unwrap_or(NodeId::UNASSIGNED),
                self.member_generation(),
            );
            let encoded = super::encode(
                &self.cfg,
                &mut self.scratch,
                sender,
                self.term,
                Kind::Append,
                &append,
            );
            if let Some((frame, true)) = &encoded {
                self.append_cache = Some((key, frame.clone()));
            }
            match encoded {
                Some((bytes, stream)) => self.queue_append(Transmit {
                    to: addr,
                    bytes,
                    stream,
                }),
                None => self.metrics.encode_errors += 1,
            }
        } else if heartbeat {
            self.send(addr, Message::Heartbeat(Heartbeat { last, commit, seq }));
        }
    }

    /// An answer to a heartbeat or an append, in the current term.
    pub(super) fn on_ack(&mut self, now: Millis, sender: NodeId, seq: u64, ok: bool, version: u64) {
        let last = self.log.last().version;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(progress) = leader.progress.get_mut(&sender) else {
            return;
        };
        progress.last_heard = now;
        progress.acked_seq = progress.acked_seq.max(seq);
        let version = version.min(last);
        if ok {
            progress.matched = progress.matched.max(version);
            progress.next = progress.next.max(version + 1);
            if progress
                .in_flight
                .is_some_and(|f| progress.matched >= f.last)
            {
                progress.in_flight = None;
            }
        } else {
            // "Not there yet" for an append still on its way is no reason to
            // send it again; a real mismatch, or a lost append, is.
            let awaited = progress
                .in_flight
                .is_some_and(|f| version + 1 >= f.first && now < f.resend_at);
            if !awaited {
                progress.in_flight = None;
                progress.next = (version + 1).max(progress.matched + 1);
            }
        }
        let behind = progress.next <= last;
        self.maybe_commit(now);
        self.advance_reads(now);
        self.advance_transfer(now);
        if self.check_retired(now) {
            return;
        }
        if behind {
            self.send_to_peer(now, sender, false);
        }
    }

    /// Commits the highest version a majority holds, if it is of this term
    /// (§5.4.2: earlier terms commit only through it).
    pub(super) fn maybe_commit(&mut self, now: Millis) {
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        let me = self.id;
        // A durable leader counts only what its own disk holds: otherwise a
        // lone voter would commit, and show readers, a change a crash could
        // still take back.
        let last = if self.cfg.durable {
            self.log.last().version.min(self.persisted_to)
        } else {
            self.log.last().version
        };
        let mut matched: Vec<u64> = self
            .config
            .values()
            .filter(|m| m.voter)
            .map(|m| {
                if Some(m.id) == me {
                    last
                } else {
                    leader.progress.get(&m.id).map_or(0, |p| p.matched)
                }
            })
            .collect();
        if matched.is_empty() {
            return;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.quorum() - 1];
        if candidate > self.commit && self.log.term_at(candidate) == Some(self.term) {
            self.apply_to(now, candidate);
        }
    }

    /// Applies committed changes up to `version`, then completes what
    /// waited for them. A large change is applied a slice at a time (see
    /// `apply_slices.rs`): the committed state, and `commit`, stay before
    /// it until it is whole, and what committed after it waits.
    pub(super) fn apply_to(&mut self, now: Millis, version: u64) {
        self.commit_known = self.commit_known.max(version);
        self.apply_committed(now);
    }

    /// Applies what is known committed, up to the first large change.
    pub(super) fn apply_committed(&mut self, now: Millis) {
        let mut membership_changed = false;
        while self.commit < self.commit_known && self.staged_apply.is_none() {
            let next = self.commit + 1;
            // Shared with the log: applying copies only what the state
            // keeps.
            let Some(entry) = self.log.shared(next).cloned() else {
                break;
            };
            if self.stage_apply(next, &entry) {
                break;
            }
            let removed = match &entry.change {
                Change::RemoveMember(id) | Change::ReplaceMember { old: id, .. } => {
                    self.state.members.get(id).cloned()
                }
                _ => None,
            };
            let outcome = self.state.apply(next, &entry.change);
            membership_changed |= self.applied(now, next, entry, outcome, removed);
        }
        self.log.compact_committed(
            self.commit,
            self.cfg.log_tail_entries_max,
            self.cfg.log_tail_bytes_max,
        );
        if membership_changed {
            self.recompute_config();
        }
        self.advance_reads(now);
        self.complete_forwarded_reads();
    }

    /// The change at `version` is in the state: the commit moves to it,
    /// it is reported, and its write answered. True for a membership
    /// change (the configuration is then recomputed).
    pub(super) fn applied(
        &mut self,
        now: Millis,
        version: u64,
        entry: std::sync::Arc<Entry>,
        outcome: SessionOutcome,
        removed: Option<crate::wire::Member>,
    ) -> bool {
        debug_assert_eq!(
            version,
            self.commit + 1,
            "changes apply in log order, one at a time"
        );
        debug_assert!(
            version <= self.log.last().version,
            "Raft §5.3: only a change the log holds commits ({version} beyond {:?})",
            self.log.last()
        );
        self.commit = version;
        self.metrics.applied += 1;
        self.after_apply(now, version, &entry.change, removed);
        let membership = entry.change.is_membership();
        self.events.push_back(Event::Applied {
            version,
            term: entry.term,
            change: SharedChange::new(entry),
        });
        // Answered after the change is reported applied: a caller that
        // hears the answer has the state it reports.
        if let RoleState::Leader(leader) = &mut self.role {
            if let Some(request) = leader.writes.remove(&version) {
                let result = match outcome {
                    SessionOutcome::Fresh => Ok(version),
                    SessionOutcome::Duplicate { version } => Ok(version),
                    SessionOutcome::Expired => Err(RequestError::SessionExpired),
                };
                self.done(request, result);
            }
        }
        membership
    }

    /// Follows `leader` in the current term, and returns its address. The
    /// address is the member's, from the configuration, never the source of
    /// the datagram: one replayed heartbeat sent from another host would
    /// otherwise redirect this node's read-index requests, leave requests
    /// and forwarded writes there. A sender that is not a member is no
    /// leader to follow. The one exception is a node that has just joined
    /// and knows no members yet (its first snapshot is on its way): it
    /// takes the address its welcome came from, or else `from`.
    fn follow(&mut self, now: Millis, leader: NodeId, from: SocketAddr) -> Option<SocketAddr> {
        if let RoleState::Leader(_) = self.role {
            // Two leaders in one term would break election safety; a frame
            // claiming it is dropped.
            self.metrics.dropped_unexpected += 1;
            return None;
        }
        let addr = match self.addr_of(leader) {
            Some(addr) => addr,
            // A leader our configuration does not list yet: we joined a
            // moment ago, or fell behind the change that added it. Only it
            // can bring us up to date, so follow it where its frames come
            // from (its listening socket) until our log names it; from then
            // on the member list's address is used, whatever the source.
            None => self
                .leader
                .filter(|(id, _)| *id == leader)
                .map_or(from, |(_, addr)| addr),
        };
        if !matches!(self.role, RoleState::Follower) {
            self.role = RoleState::Follower;
        }
        self.voter_until = None;
        self.set_leader(Some((leader, addr)));
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        Some(addr)
    }

    /// Where a leader should resume after `prev` did not match: before the
    /// run of the conflicting term, never below the commit (committed
    /// changes always match).
    fn resume_hint(&self, prev: LogId) -> u64 {
        let last = self.log.last().version;
        if prev.version > last {
            return last;
        }
        let Some(conflict) = self.log.term_at(prev.version) else {
            return self.commit;
        };
        let mut version = prev.version;
        while version > self.commit + 1 && self.log.term_at(version - 1) == Some(conflict) {
            version -= 1;
        }
        version.saturating_sub(1).max(self.commit)
    }

    pub(super) fn on_heartbeat(
        &mut self,
        now: Millis,
        from: SocketAddr,
        sender: NodeId,
        heartbeat: Heartbeat,
    ) {
        let Some(from) = self.follow(now, sender, from) else {
            return;
        };
        let matched = heartbeat.last.version >= self.commit
            && self.log.term_at(heartbeat.last.version) == Some(heartbeat.last.term);
        let version = if matched {
            let commit = heartbeat.commit.min(heartbeat.last.version);
            if commit > self.commit {
                self.apply_to(now, commit);
            }
            heartbeat.last.version
        } else {
            self.resume_hint(heartbeat.last)
        };
        self.send(
            from,
            Message::HeartbeatAck(HeartbeatAck {
                seq: heartbeat.seq,
                matched,
                version,
            }),
        );
    }

    pub(super) fn on_append(
        &mut self,
        now: Millis,
        from: SocketAddr,
        sender: NodeId,
        append: Append,
    ) {
        let Some(from) = self.follow(now, sender, from) else {
            return;
        };
        let Append {
            mut prev,
            commit,
            seq,
            mut entries,
        } = append;
        // A leader's entries follow its log (terms never decrease, §5.3)
        // and none is of a later term than its own: an append that says
        // otherwise was not made by a leader, and would break the log's
        // order if taken.
        let mut last_term = prev.term;
        for entry in &entries {
            if entry.term < last_term || entry.term > self.term {
                self.metrics.dropped_malformed_append += 1;
                return;
            }
            last_term = entry.term;
        }
        let reply_version = prev.version + entries.len() as u64;
        if prev.version < self.commit {
            // Committed changes match the leader's: skip them.
            let skip = (self.commit - prev.version).min(entries.len() as u64) as usize;
            entries.drain(..skip);
            prev = LogId {
                term: self.log.term_at(prev.version + skip as u64).unwrap_or(0),
                version: prev.version + skip as u64,
            };
            if entries.is_empty() {
                self.send_append_ack(from, seq, true, reply_version);
                return;
            }
        }
        if self.log.term_at(prev.version) != Some(prev.term) {
            let hint = self.resume_hint(prev);
            self.send_append_ack(from, seq, false, hint);
            return;
        }
        let mut membership_touched = false;
        for (i, entry) in entries.into_iter().enumerate() {
            let version = prev.version + 1 + i as u64;
            match self.log.term_at(version) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    // Log matching (§5.3): an uncommitted conflicting suffix
                    // is replaced by the leader's.
                    self.log_truncate_from(version);
                    membership_touched = true;
                }
                None => {}
            }
            membership_touched |= is_membership(&entry.change);
            self.log_push(entry);
        }
        if membership_touched {
            self.recompute_config();
        }
        let commit = commit.min(reply_version);
        if commit > self.commit {
            self.apply_to(now, commit);
        }
        self.send_append_ack(from, seq, true, reply_version);
    }

    fn send_append_ack(&mut self, to: SocketAddr, seq: u64, success: bool, version: u64) {
        self.send(
            to,
            Message::AppendAck(AppendAck {
                seq,
                success,
                version,
            }),
        );
    }

    pub(super) fn on_fetch_snapshot(
        &mut self,
        now: Millis,
        from: SocketAddr,
        sender: NodeId,
        hint: FetchSnapshot,
    ) {
        let from = if hint.from_leader {
            match self.follow(now, sender, from) {
                Some(leader) => leader,
                None => return,
            }
        } else {
            // A member telling a removed one: its configured address if it
            // is still known here, as for a leader.
            self.addr_of(sender).unwrap_or(from)
        };
        let retry_ms = self.cfg.election_timeout_ms;
        if hint.base.version > self.commit
            && self.fetch_hint_at.is_none_or(|at| now >= at + retry_ms)
        {
            self.fetch_hint_at = Some(now);
            self.events.push_back(Event::FetchSnapshot { from });
        }
        // Keeps the leader's check-quorum count honest while we catch up.
        let version = self.log.last().version;
        self.send(
            from,
            Message::HeartbeatAck(HeartbeatAck {
                seq: 0,
                matched: false,
                version,
            }),
        );
    }

    pub(super) fn install_snapshot(&mut self, now: Millis, snapshot: PreparedSnapshot) {
        let PreparedSnapshot { last, state } = snapshot;
        if last.version <= self.commit || matches!(self.role, RoleState::Leader(_)) {
            return;
        }
        if state.generation != self.state.generation {
            // Another cluster's state: installing it would merge two
            // histories that merely share version numbers.
            self.metrics.dropped_foreign_generation += 1;
            return;
        }
        if self.log.term_at(last.version) == Some(last.term) {
            self.log.compact_to(last.version);
        } else {
            self.log.reset(last);
        }
        self.state = state;
        self.commit = last.version;
        // What was being applied is in the snapshot's state.
        self.staged_apply = None;
        self.commit_known = self.commit_known.max(self.commit);
        // Log records on disk may now contradict the state: replace all.
        self.image_pending = self.cfg.durable;
        self.fetch_hint_at = None;
        self.metrics.snapshots_installed += 1;
        self.recompute_config();
        self.discover_own_id(now);
        self.events.push_back(Event::SnapshotInstalled { last });
        self.complete_forwarded_reads();
        if let Some(id) = self.id {
            if self.was_removed(id) {
                self.removed(now, last.version);
            }
        }
    }

    /// Appends an entry made by this leader.
    pub(super) fn append_entry(&mut self, entry: Entry) {
        if self.log.last().version >= crate::wire::VERSION_MAX {
            // Peers would refuse it at decode; writes are refused before
            // (`check_proposal`), this catches a new leader's no-op.
            self.metrics.dropped_unexpected += 1;
            return;
        }
        let membership = is_membership(&entry.change);
        self.log_push(entry);
        if membership {
            self.recompute_config();
        }
    }

    /// The configuration quorums are counted in: the committed members with
    /// the uncommitted membership changes of the log applied (Raft §6: a
    /// server uses the latest configuration in its log).
    pub(super) fn recompute_config(&mut self) {
        let mut config = self.state.members.clone();
        for (_, entry) in self.log.after(self.commit) {
            match &entry.change {
                Change::AddMember(member) => {
                    config.insert(member.id, member.clone());
                }
                Change::PromoteMember(id) => {
                    if let Some(member) = config.get_mut(id) {
                        member.voter = true;
                    }
                }
                Change::RemoveMember(id) => {
                    config.remove(id);
                }
                Change::ReplaceMember { old, new } => {
                    config.remove(old);
                    config.insert(new.id, new.clone());
                }
                _ => {}
            }
        }
        self.config = config;
        let me = self.id;
        let next = self.log.last().version + 1;
        if !matches!(self.role, RoleState::Leader(_)) {
            return;
        }
        // A member new to the leader counts as heard now, or it would be
        // removed as silent at the next heartbeat.
        let now_heard = self.clock;
        let wanted: Vec<NodeId> = self
            .config
            .keys()
            .chain(self.state.members.keys())
            .copied()
            .filter(|id| Some(*id) != me)
            .collect();
        if let RoleState::Leader(leader) = &mut self.role {
            leader.progress.retain(|id, _| wanted.contains(id));
            for id in wanted {
                leader
                    .progress
                    .entry(id)
                    .or_insert_with(|| Progress::new(next, now_heard));
            }
        }
    }

    /// A client write: append, replicate, and answer once committed.
    pub(super) fn propose_write(&mut self, now: Millis, request: RequestId, change: Change) {
        if let Err(error) = self.check_proposal(&change) {
            return self.done(request, Err(error));
        }
        if let RoleState::Leader(leader) = &mut self.role {
            if leader.writes.len() >= self.cfg.pending_requests_max {
                return self.done(
                    request,
                    Err(RequestError::Busy {
                        limit: "pending_requests_max",
                    }),
                );
            }
        }
        let version = self.propose(now, change);
        if let RoleState::Leader(leader) = &mut self.role {
            leader.writes.insert(version, request);
        }
        self.maybe_commit(now);
    }

    /// Whether this node can take `change` now: leader, not handing over,
    /// within the limits.
    pub(super) fn check_proposal(&self, change: &Change) -> Result<(), RequestError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(self.not_leader());
        };
        if leader.transfer.is_some() || leader.retiring.is_some() {
            return Err(RequestError::NotLeader { leader: None });
        }
        if self.log.last().version >= crate::wire::VERSION_MAX {
            // Only a forged snapshot can bring a log here (see wire::range).
            return Err(RequestError::Busy {
                limit: "VERSION_MAX",
            });
        }
        if self.log.last().version - self.commit >= self.cfg.uncommitted_entries_max as u64 {
            return Err(RequestError::Busy {
                limit: "uncommitted_entries_max",
            });
        }
        let too_long = |text: &str, limit: usize| {
            (text.len() > limit).then_some(RequestError::TooLarge {
                bytes: text.len(),
                limit,
            })
        };
        let (key_max, value_max) = (self.cfg.key_bytes_max, self.cfg.value_bytes_max);
        let oversized = match change.write() {
            Some(WriteRef::Set { key, value }) => {
                too_long(key, key_max).or(too_long(value, value_max))
            }
            Some(WriteRef::Remove { key }) => too_long(key, key_max),
            Some(WriteRef::Replace { set, remove }) => set
                .iter()
                .find_map(|(k, v)| too_long(k, key_max).or(too_long(v, value_max)))
                .or_else(|| remove.iter().find_map(|k| too_long(k, key_max))),
            None => None,
        };
        if let Some(error) = oversized {
            return Err(error);
        }
        let bytes = super::log::entry_bytes(self.term, change);
        let limit = self
            .cfg
            .stream_frame_bytes_max
            .saturating_sub(APPEND_OVERHEAD_BYTES_MAX);
        if bytes > limit {
            return Err(RequestError::TooLarge { bytes, limit });
        }
        self.check_state_bytes(change)
    }

    /// Appends `change` in this leader's term and sends it; returns its
    /// version.
    pub(super) fn propose(&mut self, now: Millis, change: Change) -> u64 {
        self.append_entry(Entry {
            term: self.term,
            change,
        });
        // Peers with an append in flight get this change with the next
        // batch, sent when they acknowledge: concurrent writes share rounds
        // instead of costing a datagram each.
        let idle_peers: Vec<NodeId> = match &self.role {
            RoleState::Leader(leader) => leader
                .progress
                .iter()
                .filter(|(_, p)| p.in_flight.is_none_or(|f| now >= f.resend_at))
                .map(|(id, _)| *id)
                .collect(),
            _ => Vec::new(),
        };
        for peer in idle_peers {
            self.send_to_peer(now, peer, false);
        }
        self.log.last().version
    }

    /// The difference between the map as the log will leave it (committed
    /// state plus uncommitted changes) and `target`: the pairs of `target`
    /// to set and the keys to remove, each sorted by key. Where `target`
    /// shares structure with the state (a map derived from
    /// [`Core::map`]), only the parts that differ are visited; otherwise
    /// one comparison pass without allocation. Only the changed pairs are
    /// copied.
    pub(super) fn diff_to_tail(&self, target: &Map) -> (Vec<(String, String)>, Vec<String>) {
        let overlay = self.tail_overlay();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        // Keys the uncommitted changes leave alone: the committed value is
        // the tail's.
        for item in self.state.map.diff(target) {
            let (key, wanted) = match item {
                DiffItem::Add(key, value) => (key, Some(value)),
                DiffItem::Update { new, .. } => (new.0, Some(new.1)),
                DiffItem::Remove(key, _) => (key, None),
            };
            if overlay.contains_key(key.as_str()) {
                continue;
            }
            match wanted {
                Some(value) => set.push((key.clone(), value.clone())),
                None => remove.push(key.clone()),
            }
        }
        fix_up_touched(overlay, target, &mut set, &mut remove);
        (set, remove)
    }

    /// What the uncommitted tail leaves each key it touches at. A session
    /// write may yet apply as nothing (a resent request), so after one the
    /// key's value is unknown (`None`), and a difference sets or removes
    /// it whatever the tail holds.
    fn tail_overlay(&self) -> BTreeMap<&str, Option<Option<&str>>> {
        let mut overlay: BTreeMap<&str, Option<Option<&str>>> = BTreeMap::new();
        for (_, entry) in self.log.after(self.commit) {
            let certain = !matches!(entry.change, Change::SessionWrite { .. });
            match entry.change.write() {
                Some(WriteRef::Set { key, value }) => {
                    overlay.insert(key, certain.then_some(Some(value)));
                }
                Some(WriteRef::Remove { key }) => {
                    overlay.insert(key, certain.then_some(None));
                }
                Some(WriteRef::Replace { set, remove }) => {
                    for key in remove {
                        overlay.insert(key, certain.then_some(None));
                    }
                    for (key, value) in set {
                        overlay.insert(key, certain.then_some(Some(value.as_str())));
                    }
                }
                None => {}
            }
        }
        overlay
    }

    /// [`Core::diff_to_tail`] from a difference computed elsewhere against
    /// the committed map at `prepared.base` (see [`PreparedUpdate`]): the
    /// keys the log changed after that version (committed since, or
    /// uncommitted) are compared again here, the rest is taken as it is.
    /// When the log no longer holds every change after the base (a
    /// snapshot, compaction), the whole difference is computed here.
    pub(super) fn diff_prepared(
        &self,
        prepared: PreparedUpdate,
    ) -> (Vec<(String, String)>, Vec<String>, Map) {
        let PreparedUpdate {
            base,
            target,
            mut set,
            mut remove,
        } = prepared;
        if base < self.log.base().version || base > self.commit {
            let (set, remove) = self.diff_to_tail(&target);
            return (set, remove, target);
        }
        let tail = self.tail_overlay();
        let mut touched: BTreeMap<&str, Option<Option<&str>>> = BTreeMap::new();
        for (version, entry) in self.log.after(base) {
            if version > self.commit {
                break;
            }
            let keys: Vec<&str> = match entry.change.write() {
                Some(WriteRef::Set { key, .. } | WriteRef::Remove { key }) => vec![key],
                Some(WriteRef::Replace { set, remove }) => remove
                    .iter()
                    .map(String::as_str)
                    .chain(set.iter().map(|(k, _)| k.as_str()))
                    .collect(),
                None => Vec::new(),
            };
            for key in keys {
                // Committed since the base: the value is the state's now.
                touched.insert(key, Some(self.state.map.get(key).map(String::as_str)));
            }
        }
        touched.extend(tail);
        if !touched.is_empty() {
            set.retain(|(k, _)| !touched.contains_key(k.as_str()));
            remove.retain(|k| !touched.contains_key(k.as_str()));
        }
        fix_up_touched(touched, &target, &mut set, &mut remove);
        (set, remove, target)
    }
}

/// Adds to `set` and `remove` (sorted by key) what makes each key of
/// `touched`, at the value the log leaves it at (`None`: unknown), what
/// `target` holds.
fn fix_up_touched(
    touched: BTreeMap<&str, Option<Option<&str>>>,
    target: &Map,
    set: &mut Vec<(String, String)>,
    remove: &mut Vec<String>,
) {
    {
        let mut overlay_set = Vec::new();
        let mut overlay_remove = Vec::new();
        for (key, tail) in touched {
            match (tail, target.get(key)) {
                (tail, Some(value)) if tail != Some(Some(value.as_str())) => {
                    overlay_set.push((key.to_owned(), value.clone()))
                }
                (Some(Some(_)) | None, None) => overlay_remove.push(key.to_owned()),
                _ => {}
            }
        }
        if !overlay_set.is_empty() {
            set.append(&mut overlay_set);
            set.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        if !overlay_remove.is_empty() {
            remove.append(&mut overlay_remove);
            remove.sort_unstable();
        }
    }
}

pub(super) fn is_membership(change: &Change) -> bool {
    change.is_membership()
}
