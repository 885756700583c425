//! Which frames of a higher term may move this node's term.
//!
//! Raft moves a node to any higher term it hears of (§5.1). Without a
//! cluster key anyone on the network can send a well-formed frame of any
//! term up to `TERM_MAX`; a burst just below it would take every node
//! there, and no election could then go higher: the cluster would be
//! wedged for good. So a frame of a higher term moves the term only if an
//! honest cluster could have sent it:
//!
//! - never more than [`TERM_STEP_MAX`] above this node's term;
//! - not while this node hears its leader (within the leader timeout) or
//!   is the leader: a later term cannot have been won without a majority
//!   that stopped hearing that leader first, except by a hand-over, whose
//!   vote request is exactly one term above (§9.6 of the Raft thesis and
//!   check-quorum, extended from votes and pre-votes to every frame). A
//!   leader still hears a member's acknowledgement of a later term: the
//!   member's term ran ahead, and only the leader stepping down lets it
//!   back in;
//! - a jump of more than one term at most once per leader timeout.
//!
//! Safety does not depend on any of this: a node still never lowers its
//! term and votes once per term; a dropped frame is a lost datagram.
//! Liveness does not suffer either: a node cut off from its leader stops
//! being sticky within a leader timeout, and a node that rejoins after a
//! partition is taken up by one jump (or, with pre-vote, by the refusal its
//! own pre-vote gets, in the cluster's term).
//!
//! The cost of a wedge: reaching `TERM_MAX` = 2^48 from term 1 takes
//! 2^48 / 2^24 = 2^24 jumps of [`TERM_STEP_MAX`], one per leader timeout
//! (500 ms by default), each at a moment the node hears no leader: about
//! 97 days of a sustained campaign, or 2^48 single steps (nine years at a
//! million accepted datagrams a second). No burst comes close.

use super::{Core, Millis, RoleState, TermRefusal};
use crate::wire::{Message, NodeId};

/// Most a single frame may move a node's term: 2^24, over sixteen million
/// elections. An honest gap is far smaller: with pre-vote, a term is won
/// only after a majority stopped hearing its leader, at most about once per
/// leader timeout, so 2^24 terms take months of elections without a pause
/// while one node is away. A node left further behind than that is a
/// forgotten one, and is replaced (removed and joined again).
pub const TERM_STEP_MAX: u64 = 1 << 24;

impl Core {
    /// Whether a frame of `term`, above this node's own, may move it there
    /// (and be handled); `Err` says why not. A pre-vote request moves no
    /// term: only the step bound applies to it (its answer says what this
    /// node grants).
    pub(super) fn admit_higher_term(
        &self,
        now: Millis,
        sender: NodeId,
        term: u64,
        message: &Message,
    ) -> Result<(), TermRefusal> {
        debug_assert!(term > self.term);
        if term - self.term > TERM_STEP_MAX {
            return Err(TermRefusal::TooFarAhead);
        }
        if matches!(message, Message::PreVoteRequest(_)) {
            return Ok(());
        }
        let hand_over =
            matches!(message, Message::VoteRequest(v) if v.transfer) && term == self.term + 1;
        if self.heard_leader_recently(now) && !hand_over && !self.ran_ahead(sender, message) {
            return Err(TermRefusal::LeaderLive);
        }
        let jump = term > self.term + 1;
        let window = self.cfg.leader_timeout_ms;
        if jump && self.term_jumped_at.is_some_and(|at| now < at + window) {
            return Err(TermRefusal::JumpTooSoon);
        }
        Ok(())
    }

    /// Whether `message` is a member's answer to this leader, in a later
    /// term: the member's term ran ahead (it stood while cut off, say), and
    /// it answers this leader's heartbeats and appends, which it refuses as
    /// stale, in its own term. With pre-vote and stickiness nothing else
    /// would ever bring the two together: the leader steps down into the
    /// later term and the next election includes the member (as etcd/raft
    /// answers a lower-term append for this reason). Strangers are not
    /// heard.
    fn ran_ahead(&self, sender: NodeId, message: &Message) -> bool {
        matches!(self.role, RoleState::Leader(_))
            && matches!(message, Message::HeartbeatAck(_) | Message::AppendAck(_))
            && self.config.contains_key(&sender)
    }

    /// Notes that a frame of `term` is about to move this node there.
    pub(super) fn note_term_admitted(&mut self, now: Millis, term: u64) {
        if term > self.term + 1 {
            self.term_jumped_at = Some(now);
        }
    }

    /// Whether a leader was heard from within the minimum leader timeout:
    /// such a node ignores pre-votes, votes and every other frame of a
    /// higher term (§9.6 of the Raft thesis), so a node that was cut off
    /// cannot depose a healthy leader when it returns, nor a forged frame
    /// move the followers of a live leader.
    pub(super) fn heard_leader_recently(&self, now: Millis) -> bool {
        match self.role {
            RoleState::Leader(_) => true,
            _ => {
                self.leader.is_some()
                    && self
                        .leader_contact
                        .is_some_and(|t| now < t + self.cfg.leader_timeout_ms)
            }
        }
    }
}
