//! Elections (Raft §5.2, §5.4.1) with pre-vote and leader stickiness
//! (§9.6), check-quorum, and leadership transfer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::{Core, LeaderState, Millis, RequestError, RequestId, RoleState, Transfer};
use crate::wire::{
    Change, Entry, LogId, Member, Message, NodeId, PreVoteRequest, PreVoteResponse, TimeoutNow,
    VoteRequest, VoteResponse,
};

impl Core {
    /// Voters of the current configuration.
    pub(super) fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.config.values().filter(|m| m.voter).map(|m| m.id)
    }

    /// Votes (or acknowledgements) needed: a majority of the voters.
    pub(super) fn quorum(&self) -> usize {
        self.voters().count() / 2 + 1
    }

    /// Whether a log ending at `last` is at least as up to date as ours
    /// (§5.4.1): later term wins, then the longer log.
    fn up_to_date(&self, last: LogId) -> bool {
        last >= self.log.last()
    }

    pub(super) fn reset_election_timer(&mut self, now: Millis) {
        self.election_at = now + self.rng.timeout(self.cfg.leader_timeout_ms);
    }

    /// The leader timeout (or an election round) ran out.
    pub(super) fn election_timeout(&mut self, now: Millis) {
        if self.term >= crate::wire::TERM_MAX {
            // No later term exists (peers refuse frames beyond it): only a
            // forged frame can bring a node here, which a cluster key stops.
            self.reset_election_timer(now);
            return;
        }
        if !self.may_stand() {
            self.reset_election_timer(now);
            return self.probe();
        }
        self.start_pre_vote(now);
    }

    /// Whether this node may stand for election: any member, voter or not,
    /// in its latest configuration or in its committed one. Votes are
    /// counted among the voters of its latest configuration only, so a
    /// candidate that is not a voter itself is elected by a majority of
    /// voters like any other (Raft lets a leader manage a configuration it
    /// is not part of, §6 of the paper). Barring it would let the one node
    /// with the most up-to-date log, a non-voter whose promotion a later
    /// leader overwrote or a voter whose removal only it holds, refuse
    /// every other candidate while never standing itself: no leader, ever.
    fn may_stand(&self) -> bool {
        self.id
            .is_some_and(|id| self.config.contains_key(&id) || self.state.members.contains_key(&id))
    }

    /// How many of `ids` are voters of the current configuration.
    fn counted(&self, ids: &BTreeSet<NodeId>) -> usize {
        ids.iter()
            .filter(|id| self.config.get(id).is_some_and(|m| m.voter))
            .count()
    }

    /// A member that cannot stand (a non-voter, or one whose log already
    /// removes it) and hears no leader says it is there, to every address
    /// it knows: a member that knows it was removed answers with the
    /// removal notice, and a leader learns where its log ends. Without
    /// this, a member whose removal notice was lost would wait forever.
    fn probe(&mut self) {
        let message = if self.leaving {
            Message::Leave(crate::wire::Leave)
        } else {
            Message::HeartbeatAck(crate::wire::HeartbeatAck {
                seq: 0,
                matched: false,
                version: self.log.last().version,
            })
        };
        let mut targets: BTreeSet<SocketAddr> = self.cfg.seeds.iter().copied().collect();
        targets.extend(self.leader.map(|(_, addr)| addr));
        for member in self.config.values().chain(self.state.members.values()) {
            if targets.len() >= self.cfg.seeds_max {
                break;
            }
            if let Ok(addr) = member.addr.parse() {
                targets.insert(addr);
            }
        }
        for target in targets {
            self.send(target, message.clone());
        }
    }

    /// A member that knows no leader says it is there to every member,
    /// every heartbeat, until it hears one. A leader learns where its log
    /// ends; above all, a member restarted without its data (the founder,
    /// which has no one to contact) hears of its cluster within its
    /// founding delay even while the cluster elects, instead of from one
    /// vote request per election round that a lossy network may drop.
    pub(super) fn leaderless_probe(&mut self, now: Millis) {
        self.probe_at = now + self.cfg.heartbeat_ms;
        self.probe();
    }

    fn start_pre_vote(&mut self, now: Millis) {
        self.metrics.pre_votes += 1;
        self.set_leader(None);
        let me = self.id.expect("voters have ids");
        self.role = RoleState::PreCandidate {
            grants: BTreeSet::from([me]),
        };
        self.election_at = now + self.rng.timeout(self.cfg.election_timeout_ms);
        if self.counted(&BTreeSet::from([me])) >= self.quorum() {
            return self.start_election(now, false);
        }
        let request = Message::PreVoteRequest(PreVoteRequest {
            last: self.log.last(),
        });
        for peer in self.peer_voter_addrs() {
            self.send_in_term(peer, self.term.saturating_add(1), request.clone());
        }
    }

    fn peer_voter_addrs(&self) -> Vec<SocketAddr> {
        let me = self.id;
        self.voters()
            .filter(|id| Some(*id) != me)
            .filter_map(|id| self.addr_of(id))
            .collect()
    }

    pub(super) fn on_pre_vote_request(
        &mut self,
        now: Millis,
        from: SocketAddr,
        term: u64,
        request: PreVoteRequest,
    ) {
        // A pre-vote changes nothing here: no term, no vote.
        let granted =
            term > self.term && self.up_to_date(request.last) && !self.heard_leader_recently(now);
        let answer_term = if granted { term } else { self.term };
        self.send_in_term(
            from,
            answer_term,
            Message::PreVoteResponse(PreVoteResponse { granted }),
        );
    }

    pub(super) fn on_pre_vote_response(
        &mut self,
        now: Millis,
        sender: NodeId,
        term: u64,
        response: PreVoteResponse,
    ) {
        if !response.granted {
            if term > self.term {
                self.become_follower(now, term, None);
            }
            return;
        }
        if term != self.term.saturating_add(1) || !self.config.get(&sender).is_some_and(|m| m.voter)
        {
            return;
        }
        if let RoleState::PreCandidate { grants } = &mut self.role {
            grants.insert(sender);
            let grants = grants.clone();
            if self.counted(&grants) >= self.quorum() {
                self.start_election(now, false);
            }
        }
    }

    /// Increments the term, votes for itself and asks for votes (§5.2).
    pub(super) fn start_election(&mut self, now: Millis, transfer: bool) {
        let me = self.id.expect("voters have ids");
        if self.term >= crate::wire::TERM_MAX {
            return;
        }
        self.metrics.elections += 1;
        self.set_term(self.term.saturating_add(1));
        debug_assert!(self.voted_for.is_none(), "Raft §5.2: one vote per term");
        self.voted_for = Some(me);
        self.hard_state_dirty = true;
        self.set_leader(None);
        self.role = RoleState::Candidate {
            votes: BTreeSet::from([me]),
        };
        self.election_at = now + self.rng.timeout(self.cfg.election_timeout_ms);
        if self.counted(&BTreeSet::from([me])) >= self.quorum() {
            return self.become_leader(now);
        }
        let request = Message::VoteRequest(VoteRequest {
            last: self.log.last(),
            transfer,
        });
        for peer in self.peer_voter_addrs() {
            self.send(peer, request.clone());
        }
    }

    pub(super) fn on_vote_request(
        &mut self,
        now: Millis,
        from: SocketAddr,
        sender: NodeId,
        term: u64,
        request: VoteRequest,
    ) {
        if term < self.term || (!request.transfer && self.heard_leader_recently(now)) {
            self.send(from, Message::VoteResponse(VoteResponse { granted: false }));
            return;
        }
        if term > self.term {
            self.become_follower(now, term, None);
        }
        let granted = self.voted_for.is_none_or(|v| v == sender)
            && self.up_to_date(request.last)
            && !matches!(self.role, RoleState::Leader(_));
        if granted {
            debug_assert!(
                self.voted_for.is_none_or(|v| v == sender),
                "Raft §5.2: one vote per term"
            );
            if self.voted_for.is_none() {
                self.voted_for = Some(sender);
                self.hard_state_dirty = true;
            }
            // A voter waits for the winner for one election round, then
            // goes back to following: never stuck as a voter.
            self.voter_until = Some(now + self.rng.timeout(self.cfg.election_timeout_ms));
            self.reset_election_timer(now);
        }
        self.send(from, Message::VoteResponse(VoteResponse { granted }));
    }

    pub(super) fn on_vote_response(&mut self, now: Millis, sender: NodeId, response: VoteResponse) {
        if !response.granted || !self.config.get(&sender).is_some_and(|m| m.voter) {
            return;
        }
        if let RoleState::Candidate { votes } = &mut self.role {
            votes.insert(sender);
            let votes = votes.clone();
            if self.counted(&votes) >= self.quorum() {
                self.become_leader(now);
            }
        }
    }

    pub(super) fn become_leader(&mut self, now: Millis) {
        let me = self.id.expect("leaders have ids");
        self.metrics.leaderships += 1;
        self.voter_until = None;
        let last = self.log.last().version;
        let progress = self
            .config
            .keys()
            .filter(|id| **id != me)
            .map(|id| (*id, super::Progress::new(last + 1, now)))
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress,
            seq: 0,
            heartbeat_at: now,
            check_quorum_at: now + self.cfg.leader_timeout_ms,
            term_start: last + 1,
            since: now,
            writes: BTreeMap::new(),
            reads: Vec::new(),
            transfer: None,
            retiring: None,
            caught_up_floor: u64::MAX,
        }));
        self.set_leader(Some((me, self.cfg.addr)));
        // A leader commits entries of earlier terms only through one of its
        // own (§5.4.2): append a no-op at once.
        self.append_entry(Entry {
            term: self.term,
            change: Change::Noop,
        });
        self.broadcast(now);
        // A sole voter commits on its own.
        self.maybe_commit(now);
    }

    /// Steps down (or follows) in `term`, failing what a leader had pending.
    pub(super) fn become_follower(
        &mut self,
        now: Millis,
        term: u64,
        leader: Option<(NodeId, SocketAddr)>,
    ) {
        let old_term = self.term;
        self.set_term(term);
        let was = std::mem::replace(&mut self.role, RoleState::Follower);
        if let RoleState::Leader(state) = was {
            for request in state.writes.into_values() {
                self.done(request, Err(RequestError::Uncertain));
            }
            for read in state.reads {
                self.fail_read(read.origin);
            }
            if let Some(request) = state.transfer.and_then(|t| t.request) {
                // A newer term is what a transfer asks for; stepping down in
                // the same term (check-quorum) is not.
                let result = if term > old_term {
                    Ok(term)
                } else {
                    Err(RequestError::NotLeader { leader: None })
                };
                self.done(request, result);
            }
            self.reset_election_timer(now);
        } else if !matches!(was, RoleState::Follower) {
            self.reset_election_timer(now);
        }
        self.set_leader(leader);
    }

    /// A single node with no seeds starts a cluster: it is member 1, the
    /// sole voter, and leader of term 1, in a new generation (a random
    /// number that every member's frames carry from then on, so that this
    /// history can never be taken for another's).
    pub(super) fn found(&mut self, now: Millis) {
        let me = NodeId(1);
        self.state.generation = self.rng.next_u64().max(1);
        self.id = Some(me);
        self.identity_changed();
        self.joining = None;
        self.events.push_back(super::Event::Joined { id: me });
        self.set_term(1);
        self.voted_for = Some(me);
        self.hard_state_dirty = true;
        self.append_entry(Entry {
            term: 1,
            change: Change::AddMember(Member {
                id: me,
                addr: self.cfg.addr.to_string(),
                voter: true,
                incarnation: self.cfg.incarnation,
            }),
        });
        self.become_leader(now);
    }

    pub(super) fn on_timeout_now(&mut self, now: Millis, sender: NodeId) {
        if self.leader.is_some_and(|(id, _)| id == sender) && self.may_stand() {
            self.start_election(now, true);
        }
    }

    /// Hands leadership to the most up-to-date voter (§3.10 of the Raft
    /// thesis): stop taking writes, bring it up to date, tell it to stand.
    pub(super) fn start_transfer(&mut self, now: Millis, request: Option<RequestId>) {
        let deadline = now + 2 * self.cfg.election_timeout_ms;
        let RoleState::Leader(leader) = &self.role else {
            if let Some(request) = request {
                let error = self.not_leader();
                self.done(request, Err(error));
            }
            return;
        };
        if leader.transfer.is_some() {
            if let Some(request) = request {
                self.done(request, Err(RequestError::ChangeInProgress));
            }
            return;
        }
        let recent = self.cfg.leader_timeout_ms;
        let target = leader
            .progress
            .iter()
            .filter(|(id, _)| self.config.get(id).is_some_and(|m| m.voter))
            // A voter not heard from lately may be dead: handing over to it
            // would leave the cluster leaderless until an election.
            .filter(|(_, p)| p.last_heard + recent >= now)
            .max_by_key(|(id, p)| (p.matched, p.last_heard, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id);
        let Some(target) = target else {
            if let Some(request) = request {
                self.done(request, Err(RequestError::NoTransferTarget));
            }
            return;
        };
        if let RoleState::Leader(leader) = &mut self.role {
            leader.transfer = Some(Transfer {
                target,
                deadline,
                request,
                sent: false,
            });
        }
        self.advance_transfer(now);
    }

    /// Sends `TimeoutNow` once the transfer target has the whole log.
    pub(super) fn advance_transfer(&mut self, now: Millis) {
        let last = self.log.last().version;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(transfer) = &mut leader.transfer else {
            return;
        };
        if now >= transfer.deadline {
            let request = transfer.request;
            leader.transfer = None;
            if let Some(request) = request {
                self.done(request, Err(RequestError::Timeout));
            }
            return;
        }
        let target = transfer.target;
        let caught_up = leader
            .progress
            .get(&target)
            .is_some_and(|p| p.matched >= last);
        if caught_up && !transfer.sent {
            transfer.sent = true;
            if let Some(addr) = self.addr_of(target) {
                self.send(addr, Message::TimeoutNow(TimeoutNow));
            }
        }
    }

    /// Check-quorum: a leader that has not heard a majority within a leader
    /// timeout steps down, so a leader cut off in a minority stops serving.
    pub(super) fn check_quorum(&mut self, now: Millis) {
        let window = self.cfg.leader_timeout_ms;
        let me = self.id;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        if now < leader.check_quorum_at {
            return;
        }
        leader.check_quorum_at = now + window;
        let heard = super::voters_answering(&self.config, me, &leader.progress, |p| {
            p.last_heard + window >= now
        });
        if heard < self.quorum() {
            let term = self.term;
            self.become_follower(now, term, None);
        }
    }
}
