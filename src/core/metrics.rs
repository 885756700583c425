//! Counters the core keeps; the driver adds its own (socket errors).

use crate::wire::DecodeReason;

/// What the core has seen and done. Plain counters, never reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreMetrics {
    /// Frames handed to the core.
    pub frames_in: u64,
    /// Bytes of those frames.
    pub bytes_in: u64,
    /// Frames taken from the core to send.
    pub frames_out: u64,
    /// Bytes of those frames.
    pub bytes_out: u64,
    /// Frames refused by the decoder, by [`DecodeReason::index`].
    pub decode_errors: [u64; DecodeReason::ALL.len()],
    /// Frames that could not be encoded within the limits.
    pub encode_errors: u64,
    /// Protocol frames dropped because this node is not a member.
    pub dropped_not_member: u64,
    /// Frames of a member of another cluster generation (another
    /// history), and snapshots of one, refused.
    pub dropped_foreign_generation: u64,
    /// Times a node that was about to found a cluster heard from a member
    /// of one that still sends to its address, and joined it instead.
    pub founding_deferred: u64,
    /// Frames of an older term, dropped.
    pub dropped_stale_term: u64,
    /// Frames that make no sense in this node's role or state.
    pub dropped_unexpected: u64,
    /// Appends whose entries' terms decrease, or exceed the sender's term:
    /// no leader sends those (a forged or damaged frame), and taking them
    /// would break the order of the log.
    pub dropped_malformed_append: u64,
    /// Frames of a higher term that did not move this node's term, by
    /// [`TermRefusal::index`].
    pub term_refused: [u64; TermRefusal::ALL.len()],
    /// Pre-vote rounds started.
    pub pre_votes: u64,
    /// Elections started (term increments by this node).
    pub elections: u64,
    /// Times this node became leader.
    pub leaderships: u64,
    /// Changes applied.
    pub applied: u64,
    /// Snapshots installed.
    pub snapshots_installed: u64,
    /// Times a follower was told to fetch a snapshot.
    pub snapshots_hinted: u64,
    /// Times a removed member was told to fetch the state that shows it.
    pub removal_notices: u64,
    /// Challenges sent to the address an introduction claims, instead of
    /// adding it (see [`crate::wire::JoinChallenge`]).
    pub join_challenges: u64,
    /// Introductions that added no one and answers to them not sent, by
    /// [`JoinRefusal::index`].
    pub join_refused: [u64; JoinRefusal::ALL.len()],
}

/// Why an introduction added no one (or its answer was not sent). In each
/// case nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinRefusal {
    /// A token this node did not make for that address and incarnation:
    /// forged, made for another address or incarnation, or by another
    /// process. Answered with a fresh challenge.
    TokenInvalid,
    /// A token this node made, too long ago. Answered with a fresh
    /// challenge.
    TokenExpired,
    /// The answer would be larger than the introduction that asked for
    /// it, which may come from a spoofed source: not sent.
    AnswerTooLarge,
}

impl JoinRefusal {
    /// Every reason, in [`JoinRefusal::index`] order.
    pub const ALL: [JoinRefusal; 3] = [
        JoinRefusal::TokenInvalid,
        JoinRefusal::TokenExpired,
        JoinRefusal::AnswerTooLarge,
    ];

    /// Its place in [`CoreMetrics::join_refused`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            JoinRefusal::TokenInvalid => "token_invalid",
            JoinRefusal::TokenExpired => "token_expired",
            JoinRefusal::AnswerTooLarge => "answer_too_large",
        }
    }
}

/// Why a frame of a term above this node's was dropped without moving its
/// term (see `docs/WIRE.md`, "Terms from unauthenticated hosts"). Raft
/// lets any frame of a higher term move a node there; without a cluster
/// key anyone can send one, and a term near `TERM_MAX` would leave no room
/// for a later election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TermRefusal {
    /// More than [`super::TERM_STEP_MAX`] above this node's term: beyond
    /// any gap an honest cluster opens.
    TooFarAhead,
    /// This node heard its leader within the leader timeout (or is the
    /// leader): no honest election of a later term can have been won
    /// without it noticing first, save a hand-over, whose vote request
    /// comes exactly one term above (and a leader still hears a member's
    /// acknowledgement of a later term: see `term_admission`).
    LeaderLive,
    /// More than one term above, and this node already jumped more than one
    /// term within the last leader timeout: a long absence needs one jump,
    /// not a run of them.
    JumpTooSoon,
}

impl TermRefusal {
    /// Every reason, in [`TermRefusal::index`] order.
    pub const ALL: [TermRefusal; 3] = [
        TermRefusal::TooFarAhead,
        TermRefusal::LeaderLive,
        TermRefusal::JumpTooSoon,
    ];

    /// Its place in [`CoreMetrics::term_refused`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            TermRefusal::TooFarAhead => "too_far_ahead",
            TermRefusal::LeaderLive => "leader_live",
            TermRefusal::JumpTooSoon => "jump_too_soon",
        }
    }
}

impl CoreMetrics {
    /// All decode errors together.
    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().sum()
    }
}
