//! Joining, bootstrap, leaving, promotion of caught-up learners and removal
//! of silent members. One membership change at a time (Raft §4.1 of the
//! thesis): a change is proposed only when none is uncommitted.

use std::net::SocketAddr;

use super::replication::is_membership;
use super::{Core, Event, JoinRefusal, JoinToken, Millis, RequestError, RequestId, RoleState};
use crate::wire::{
    Change, FetchSnapshot, Introduce, JoinChallenge, JoinProof, Leave, LogId, Member, Message,
    NodeId, Redirect, Welcome,
};

/// The answer of a node that is not a member to an introduction: as many
/// of `known` as keep it no larger than the introduction (in payload
/// bytes; both frames have the same header), in order.
fn redirect_within(
    joined: bool,
    known: impl Iterator<Item = String>,
    introduce: &Introduce,
) -> Redirect {
    let budget_bytes = crate::wire::payload_len(introduce);
    let mut redirect = Redirect {
        leader: None,
        joined,
        seeds: Vec::new(),
    };
    for seed in known {
        redirect.seeds.push(seed);
        if crate::wire::payload_len(&redirect) > budget_bytes {
            redirect.seeds.pop();
            break;
        }
    }
    redirect
}

/// Most members a cluster takes; further joins wait.
const MEMBERS_MAX: usize = 256;

/// What the leader does for an introduction (see [`Core::admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// The node is a member with this id and incarnation already.
    Member(NodeId),
    /// The node replaces this member, another incarnation at its address
    /// that stopped answering.
    Replace(NodeId),
    /// The node is added as a new member.
    Add,
    /// Nobody is added now (counted where it applies).
    None,
}

impl Core {
    /// Every `introduce_interval_ms` while not a member: introduce
    /// ourselves, or found the cluster if the bootstrap rule says so.
    pub(super) fn joining_tick(&mut self, now: Millis) {
        let interval = self.cfg.introduce_interval_ms;
        let Some(joining) = &mut self.joining else {
            return;
        };
        if now < joining.introduce_at || self.left {
            return;
        }
        joining.introduce_at = now + interval;
        if !joining.rejoin && joining.found_after > now {
            // Wake up when founding becomes possible, not an interval later.
            joining.introduce_at = joining.introduce_at.min(joining.found_after);
        }
        if self.try_found(now) {
            return;
        }
        let Some(joining) = &self.joining else {
            return;
        };
        let mut targets: Vec<SocketAddr> = joining.known.iter().copied().collect();
        targets.extend(joining.leader_hint);
        let introduce = self.introduce_message();
        for target in targets {
            self.send_in_term(target, 0, introduce.clone());
        }
    }

    /// This node's introduction: with the token of the last challenge it
    /// got, once it got one.
    fn introduce_message(&self) -> Message {
        let seeds = self
            .joining
            .as_ref()
            .map(|j| j.known.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        let addr = self.cfg.addr.to_string();
        let incarnation = self.cfg.incarnation;
        match self.joining.as_ref().and_then(|j| j.token) {
            Some(token) => Message::JoinProof(JoinProof {
                addr,
                incarnation,
                seeds,
                token,
            }),
            None => Message::Introduce(Introduce {
                addr,
                incarnation,
                seeds,
            }),
        }
    }

    /// Bootstrap rule for nodes started together, each listing the others:
    /// only the lowest address founds, and only once every other address it
    /// knows of has said it belongs to no cluster. Two nodes can then never
    /// both found within one set of seeds that know of each other.
    fn try_found(&mut self, now: Millis) -> bool {
        let Some(joining) = &self.joining else {
            return false;
        };
        if joining.rejoin || now < joining.found_after {
            return false;
        }
        if joining.designated {
            self.found(now);
            return true;
        }
        let me = self.cfg.addr;
        let lowest = joining.known.iter().next().copied() == Some(me);
        let all_unjoined = joining
            .known
            .iter()
            .filter(|a| **a != me)
            .all(|a| joining.unjoined.contains(a));
        if lowest && all_unjoined {
            self.found(now);
            return true;
        }
        false
    }

    pub(super) fn learn_seeds(&mut self, seeds: impl IntoIterator<Item = String>) {
        let seeds_max = self.cfg.seeds_max;
        let Some(joining) = &mut self.joining else {
            return;
        };
        for seed in seeds {
            if joining.known.len() >= seeds_max {
                break;
            }
            if let Ok(addr) = seed.parse() {
                joining.known.insert(addr);
            }
        }
    }

    /// An introduction, with the token of a challenge when it is a
    /// [`crate::wire::JoinProof`]. A node that is not a member answers for
    /// the bootstrap rule; a member that is not the leader redirects; the
    /// leader adds the node only with a valid token for its address and
    /// incarnation, and otherwise challenges that address. Every answer is
    /// at most as large as the introduction (see [`Core::send_answer`]).
    pub(super) fn on_introduce(
        &mut self,
        now: Millis,
        from: SocketAddr,
        introduce: Introduce,
        token: Option<JoinToken>,
    ) {
        let Ok(addr) = introduce.addr.parse::<SocketAddr>() else {
            self.metrics.dropped_unexpected += 1;
            return;
        };
        if let Some(joining) = &self.joining {
            // A node that will found (or knows that a cluster exists) says
            // it belongs to one, so that the nodes started with it as their
            // seed wait for it rather than found by the bootstrap rule.
            let joined = joining.designated || joining.rejoin;
            // The answer is no larger than the introduction: one from a
            // spoofed source is then no lever to send a larger answer to
            // someone else.
            let budget = introduce.clone();
            self.learn_seeds(introduce.seeds.into_iter().chain([introduce.addr]));
            let redirect = self
                .joining
                .as_ref()
                .map(|j| redirect_within(joined, j.known.iter().map(|a| a.to_string()), &budget));
            if let Some(redirect) = redirect {
                self.send_answer(from, 0, Message::Redirect(redirect));
            }
            return;
        }
        if self.left || self.id.is_none() {
            return;
        }
        let term = self.term;
        if !matches!(self.role, RoleState::Leader(_)) {
            // Only the leader that made a token can check it: any other
            // member points the node there.
            let leader = self.leader().map(|a| a.to_string());
            self.send_answer(
                addr,
                term,
                Message::Redirect(Redirect {
                    leader,
                    joined: true,
                    seeds: Vec::new(),
                }),
            );
            return;
        }
        let incarnation = introduce.incarnation;
        let admission = self.admission(now, addr, incarnation);
        match admission {
            Admission::Member(id) => {
                if self.state.members.contains_key(&id) {
                    self.send_answer(addr, term, Message::Welcome(Welcome { id, incarnation }));
                }
            }
            Admission::None => {}
            Admission::Add | Admission::Replace(_) => {
                let proven = token.map(|t| self.join_tokens.check(addr, incarnation, &t, now));
                match proven {
                    Some(Ok(())) => self.admit(now, addr, incarnation, admission),
                    refused => {
                        if let Some(Err(reason)) = refused {
                            self.metrics.join_refused[reason.index()] += 1;
                        }
                        // Not proven (yet): ask the claimed address, never
                        // the source, which may be spoofed.
                        let token = self.join_tokens.make(addr, incarnation, now);
                        let challenge = Message::JoinChallenge(JoinChallenge { token });
                        if self.send_answer(addr, term, challenge) {
                            self.metrics.join_challenges += 1;
                        }
                    }
                }
            }
        }
    }

    /// A joining node got a challenge: it keeps the token, which its
    /// introductions carry from then on, and answers at once if the
    /// challenge comes from a node it introduces itself to (where its
    /// introductions go anyway), at most once an introduction interval.
    /// However many challenges arrive, and from whatever source, this node
    /// sends no more than its own schedule.
    pub(super) fn on_join_challenge(
        &mut self,
        now: Millis,
        from: SocketAddr,
        challenge: JoinChallenge,
    ) {
        let interval = self.cfg.introduce_interval_ms;
        let Some(joining) = self.joining.as_mut().filter(|_| !self.left) else {
            self.metrics.dropped_unexpected += 1;
            return;
        };
        joining.token = Some(challenge.token);
        let asked = joining.known.contains(&from) || joining.leader_hint == Some(from);
        let due = joining
            .proof_sent_at
            .is_none_or(|at| now >= at.saturating_add(interval));
        if asked && due {
            joining.proof_sent_at = Some(now);
            let proof = self.introduce_message();
            self.send_in_term(from, 0, proof);
        }
    }

    /// Sends an answer to an introduction, which may come from a spoofed
    /// source, only if it is no larger than that introduction: nobody can
    /// use this node to send more to a third host than they sent
    /// themselves. Returns whether it was sent.
    fn send_answer(&mut self, to: SocketAddr, term: u64, message: Message) -> bool {
        if to == self.cfg.addr {
            return false;
        }
        match self.encode_message(term, &message) {
            Some((bytes, false)) if bytes.len() <= self.input_bytes => {
                self.queue(to, Some((bytes, false)));
                true
            }
            Some(_) => {
                self.metrics.join_refused[JoinRefusal::AnswerTooLarge.index()] += 1;
                false
            }
            None => {
                self.metrics.encode_errors += 1;
                false
            }
        }
    }

    /// What the leader would do for an introduction of `addr` with
    /// `incarnation`: welcome a member it already has, replace another
    /// incarnation at the same address once it has stopped answering, add
    /// the node as a non-voter, or nothing. Checked before the node is
    /// challenged (no challenge for a node that would not be added) and
    /// again once it proves its address.
    fn admission(&mut self, now: Millis, addr: SocketAddr, incarnation: u64) -> Admission {
        let addr_text = addr.to_string();
        let existing = self
            .config
            .values()
            .find(|m| m.addr == addr_text)
            .map(|m| (m.id, m.incarnation));
        match existing {
            Some((id, known)) if known == incarnation => Admission::Member(id),
            Some((id, _)) => {
                // Another incarnation at this address: the process restarted
                // without its data, and the old member is gone for good.
                // Incarnations are random, not ordered, so "another" is all
                // an introduction can say; a delayed or replayed one from a
                // dead incarnation must then not remove the live member at
                // that address. Hence: only once the member has stopped
                // answering (a restarted process does not answer for the
                // member it was, so a real restart waits at most this long).
                // The leader itself, at its own address, is alive.
                let answering = Some(id) == self.id
                    || match &self.role {
                        RoleState::Leader(leader) => leader
                            .progress
                            .get(&id)
                            .is_some_and(|p| now < p.last_heard + self.cfg.leader_timeout_ms),
                        _ => false,
                    };
                if answering {
                    self.metrics.dropped_unexpected += 1;
                    return Admission::None;
                }
                if self.config.len() > MEMBERS_MAX {
                    return Admission::None;
                }
                Admission::Replace(id)
            }
            None => {
                if self.config.len() >= MEMBERS_MAX {
                    return Admission::None;
                }
                if self.next_member_id() > crate::wire::NODE_ID_MAX {
                    // Every id is spent (ids are never reused): a member
                    // with this one could never be replicated or welcomed.
                    self.metrics.dropped_unexpected += 1;
                    return Admission::None;
                }
                Admission::Add
            }
        }
    }

    /// Proposes the change `admission` calls for, for a node that proved
    /// it answers at `addr`.
    fn admit(&mut self, now: Millis, addr: SocketAddr, incarnation: u64, admission: Admission) {
        let new = Member {
            id: NodeId(self.next_member_id()),
            addr: addr.to_string(),
            voter: false,
            incarnation,
        };
        match admission {
            // The new incarnation takes the old one's place in the same
            // change, so the address is never out of the list (a restart
            // in between would find no one sending to it).
            Admission::Replace(old) => {
                self.propose_membership(now, Change::ReplaceMember { old, new });
            }
            Admission::Add => {
                self.propose_membership(now, Change::AddMember(new));
            }
            Admission::Member(_) | Admission::None => {}
        }
    }

    /// Ids are never reused: past every committed and pending member.
    fn next_member_id(&self) -> u32 {
        let past_config = self
            .config
            .keys()
            .map(|id| id.0.saturating_add(1))
            .max()
            .unwrap_or(1);
        self.state.next_member_id.max(past_config).max(1)
    }

    pub(super) fn config_change_pending(&self) -> bool {
        self.log
            .after(self.commit)
            .any(|(_, e)| is_membership(&e.change))
    }

    /// Proposes a membership change if none is in flight; returns whether
    /// it was proposed.
    fn propose_membership(&mut self, now: Millis, change: Change) -> bool {
        if self.config_change_pending() || self.check_proposal(&change).is_err() {
            return false;
        }
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        // Until this term has a committed entry the leader may not know the
        // latest committed configuration.
        if self.commit < leader.term_start {
            return false;
        }
        self.propose(now, change);
        self.maybe_commit(now);
        true
    }

    pub(super) fn on_redirect(&mut self, _now: Millis, from: SocketAddr, redirect: Redirect) {
        if self.joining.is_none() {
            return;
        }
        self.learn_seeds(redirect.seeds);
        let leader = redirect.leader.and_then(|l| l.parse::<SocketAddr>().ok());
        let introduce = self.introduce_message();
        let Some(joining) = &mut self.joining else {
            return;
        };
        if redirect.joined {
            joining.unjoined.remove(&from);
        } else {
            joining.unjoined.insert(from);
        }
        if let Some(leader) = leader {
            if joining.leader_hint != Some(leader) {
                joining.leader_hint = Some(leader);
                self.send_in_term(leader, 0, introduce);
            }
        }
    }

    /// A node that is not a member got a frame from a member of a cluster
    /// (it carries a generation): a cluster that sends to this address
    /// exists, most likely one this address belonged to before a restart
    /// without its data. Never found a second one beside it: introduce
    /// ourselves to the sender (to its leader, through its redirect), and
    /// to the sender at once when it is a leader sending to its members.
    pub(super) fn heard_of_cluster(&mut self, _now: Millis, from: SocketAddr, message: &Message) {
        let from_leader = match message {
            Message::Heartbeat(_) | Message::Append(_) => true,
            Message::FetchSnapshot(hint) => hint.from_leader,
            _ => false,
        };
        let introduce = self.introduce_message();
        let seeds_max = self.cfg.seeds_max;
        let Some(joining) = &mut self.joining else {
            return;
        };
        if !joining.rejoin {
            self.metrics.founding_deferred += 1;
        }
        joining.rejoin = true;
        if joining.known.len() < seeds_max {
            joining.known.insert(from);
        }
        if from_leader && joining.leader_hint != Some(from) {
            joining.leader_hint = Some(from);
            self.send_in_term(from, 0, introduce);
        }
    }

    pub(super) fn on_welcome(
        &mut self,
        now: Millis,
        from: SocketAddr,
        sender: NodeId,
        term: u64,
        generation: Option<u64>,
        welcome: Welcome,
    ) {
        if self.id.is_some() || self.left || welcome.incarnation != self.cfg.incarnation {
            return;
        }
        // A welcome comes from a member, which names its cluster's history.
        let Some(generation) = generation.filter(|g| *g != 0) else {
            self.metrics.dropped_unexpected += 1;
            return;
        };
        self.state.generation = generation;
        self.become_member(welcome.id);
        if term > self.term {
            self.set_term(term);
        }
        self.set_leader(Some((sender, from)));
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
    }

    fn become_member(&mut self, id: NodeId) {
        self.id = Some(id);
        self.identity_changed();
        self.joining = None;
        self.events.push_back(Event::Joined { id });
    }

    /// Finds this node in the committed members (by address and
    /// incarnation), in case the welcome was lost.
    pub(super) fn discover_own_id(&mut self, _now: Millis) {
        if self.id.is_some() || self.left {
            return;
        }
        let addr = self.cfg.addr.to_string();
        let found = self
            .state
            .members
            .values()
            .find(|m| m.addr == addr && m.incarnation == self.cfg.incarnation)
            .map(|m| m.id);
        if let Some(id) = found {
            self.become_member(id);
        }
    }

    /// Called for each applied change, after the state has it. `removed`
    /// is the member a `RemoveMember` took out.
    pub(super) fn after_apply(
        &mut self,
        now: Millis,
        version: u64,
        change: &Change,
        removed: Option<Member>,
    ) {
        let leading = matches!(self.role, RoleState::Leader(_));
        match change {
            Change::ReplaceMember { old, .. } if Some(*old) == self.id => {
                // Our own address restarted under us: this process is the
                // old incarnation, which the cluster holds for dead.
                if leading {
                    self.start_retiring(now, version);
                } else {
                    self.removed(now, version);
                }
            }
            Change::AddMember(member) | Change::ReplaceMember { new: member, .. } => {
                self.discover_own_id(now);
                if leading {
                    if let Ok(addr) = member.addr.parse() {
                        self.send(
                            addr,
                            Message::Welcome(Welcome {
                                id: member.id,
                                incarnation: member.incarnation,
                            }),
                        );
                    }
                }
            }
            Change::RemoveMember(id) if Some(*id) == self.id => {
                if leading {
                    self.start_retiring(now, version);
                } else {
                    self.removed(now, version);
                }
            }
            Change::RemoveMember(_) if leading => {
                // Nothing else will reach the removed member: tell it.
                if let Some(addr) = removed.and_then(|m| m.addr.parse().ok()) {
                    self.send_removal_notice(addr);
                }
            }
            _ => {}
        }
    }

    /// Leader upkeep each heartbeat: promote a caught-up learner, or remove
    /// a member silent for `member_silence_ms` (never below
    /// `members_min` voters). At most one change at a time.
    pub(super) fn maintain_membership(&mut self, now: Millis) {
        let commit = self.commit;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let floor = std::mem::replace(&mut leader.caught_up_floor, commit).min(commit);
        if leader.transfer.is_some() || leader.retiring.is_some() || self.config_change_pending() {
            return;
        }
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        let recent = self.cfg.leader_timeout_ms;
        let promote = self
            .config
            .values()
            .filter(|m| !m.voter)
            .find(|m| {
                leader
                    .progress
                    .get(&m.id)
                    .is_some_and(|p| p.matched >= floor && p.last_heard + recent >= now)
            })
            .map(|m| m.id);
        // A leader elected while a non-voter (the most up-to-date node) is
        // caught up by definition: it promotes itself, unless it is leaving.
        let me_learner = self
            .id
            .and_then(|id| self.config.get(&id))
            .is_some_and(|m| !m.voter);
        let promote = promote.or(self.id.filter(|_| me_learner && !self.leaving));
        if let Some(id) = promote {
            self.propose_membership(now, Change::PromoteMember(id));
            return;
        }
        let Some(silence) = self.cfg.member_silence_ms else {
            return;
        };
        if now < leader.since + silence {
            return;
        }
        let voters = self.voters().count();
        let silent = self
            .config
            .values()
            .filter(|m| Some(m.id) != self.id)
            .filter(|m| !m.voter || voters > self.cfg.members_min)
            .find(|m| {
                leader
                    .progress
                    .get(&m.id)
                    .is_some_and(|p| p.last_heard + silence <= now)
            })
            .map(|m| m.id);
        if let Some(id) = silent {
            self.propose_membership(now, Change::RemoveMember(id));
        }
    }

    pub(super) fn on_leave(&mut self, now: Millis, sender: NodeId) {
        if !matches!(self.role, RoleState::Leader(_)) {
            return;
        }
        if self.config.contains_key(&sender) {
            self.propose_membership(now, Change::RemoveMember(sender));
        }
    }

    /// Whether member `id` was added and then removed, as far as the
    /// committed state shows: ids are never reused, so an id below the
    /// next one to give that is not a member any more was removed.
    pub(super) fn was_removed(&self, id: NodeId) -> bool {
        id != NodeId::UNASSIGNED
            && id.0 < self.state.next_member_id
            && !self.state.members.contains_key(&id)
            && !self.config.contains_key(&id)
    }

    /// Tells a removed member to fetch our state, where it will find itself
    /// gone (a bare heartbeat would not do: its log may end before the
    /// removal, and nobody replicates to it any more).
    pub(super) fn send_removal_notice(&mut self, to: SocketAddr) {
        let base = LogId {
            term: self.log.term_at(self.commit).unwrap_or(0),
            version: self.commit,
        };
        self.metrics.removal_notices += 1;
        self.send(
            to,
            Message::FetchSnapshot(FetchSnapshot {
                base,
                from_leader: false,
            }),
        );
    }

    /// A leader whose own removal committed: one more heartbeat round
    /// carries the commit to the remaining members before it steps down,
    /// so that they learn it from the one node sure to know it.
    fn start_retiring(&mut self, now: Millis, version: u64) {
        let deadline = now + 2 * self.cfg.election_timeout_ms;
        self.broadcast(now);
        if let RoleState::Leader(leader) = &mut self.role {
            leader.retiring = Some(super::Retiring {
                seq: leader.seq,
                version,
                deadline,
            });
        }
        self.check_retired(now);
    }

    /// Steps a retiring leader down once a quorum of the remaining voters
    /// has acknowledged the round that carried its removal, or at its
    /// deadline. Returns whether it stepped down.
    pub(super) fn check_retired(&mut self, now: Millis) -> bool {
        let RoleState::Leader(leader) = &self.role else {
            return false;
        };
        let Some(retiring) = leader.retiring else {
            return false;
        };
        // A retiring leader is not in the configuration: only the others
        // count.
        let acked = super::voters_answering(&self.config, None, &leader.progress, |p| {
            p.acked_seq >= retiring.seq
        });
        if acked < self.quorum() && now < retiring.deadline {
            return false;
        }
        self.removed(now, retiring.version);
        true
    }

    /// This node is no longer a member. After a `Leave` it stays out; a node
    /// removed without asking (silent too long) joins again as a new member.
    pub(super) fn removed(&mut self, now: Millis, version: u64) {
        let leading = matches!(self.role, RoleState::Leader(_));
        self.events.push_back(Event::Left);
        if leading {
            let term = self.term;
            self.become_follower(now, term, None);
        }
        self.voter_until = None;
        self.set_leader(None);
        if self.leaving {
            self.left = true;
            self.identity_changed();
            if let Some((request, _)) = self.leave.take() {
                self.done(request, Ok(version));
            }
            return;
        }
        // Forget the old id (its votes stay with it) and introduce ourselves
        // again to everyone we know.
        self.id = None;
        self.identity_changed();
        let mut joining = super::Joining {
            introduce_at: now,
            ..super::Joining::default()
        };
        joining.known.extend(self.cfg.seeds.iter().copied());
        joining.known.extend(
            self.state
                .members
                .values()
                .filter_map(|m| m.addr.parse::<SocketAddr>().ok())
                .take(self.cfg.seeds_max),
        );
        joining.known.insert(self.cfg.addr);
        // A cluster exists: never found a new one from here.
        joining.rejoin = true;
        self.joining = Some(joining);
    }

    /// Leave the cluster: a leader hands over first; a follower asks the
    /// leader to remove it and is done when the removal is applied.
    pub(super) fn start_leave(&mut self, now: Millis, request: RequestId) {
        if self.id.is_none() || self.left {
            return self.done(request, Err(RequestError::NotMember));
        }
        if self.leave.is_some() {
            return self.done(request, Err(RequestError::ChangeInProgress));
        }
        let deadline = now + 4 * (self.cfg.election_timeout_ms + self.cfg.leader_timeout_ms);
        self.leave = Some((request, deadline));
        self.leaving = true;
        if let RoleState::Leader(_) = self.role {
            let others = self.voters().filter(|id| Some(*id) != self.id).count();
            if others == 0 {
                // The last voter: nobody to hand over to or to ask.
                self.left = true;
                self.identity_changed();
                self.leave = None;
                self.events.push_back(Event::Left);
                let term = self.term;
                self.become_follower(now, term, None);
                return self.done(request, Ok(self.commit));
            }
            self.leave_sent_at = now;
            self.start_transfer(now, None);
        } else {
            self.send_leave(now);
        }
    }

    pub(super) fn send_leave(&mut self, now: Millis) {
        self.leave_sent_at = now;
        if let Some(leader) = self.leader() {
            if leader != self.cfg.addr {
                self.send(leader, Message::Leave(Leave));
            }
        }
    }
}
