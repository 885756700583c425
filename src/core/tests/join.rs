//! Joining by introduction: the leader adds only a node that answers at
//! the address it claims, and answers nothing larger than it was sent.

use super::*;
use crate::wire::{decode_frame, Introduce, JoinProof, JOIN_TOKEN_BYTES};

/// An unkeyed frame from a node that is not a member (cluster id 0).
fn raw(message: Message) -> Vec<u8> {
    let frame = Frame::new(0, NodeId::UNASSIGNED, 0, message);
    let mut out = BytesMut::new();
    frame.encode(&mut out, 1 << 16).unwrap();
    out.to_vec()
}

fn introduce(claimed: SocketAddr, incarnation: u64, seeds: &[SocketAddr]) -> Message {
    Message::Introduce(Introduce {
        addr: claimed.to_string(),
        incarnation,
        seeds: seeds.iter().map(|a| a.to_string()).collect(),
    })
}

fn proof(claimed: SocketAddr, incarnation: u64, token: JoinToken) -> Message {
    Message::JoinProof(JoinProof {
        addr: claimed.to_string(),
        incarnation,
        seeds: vec![claimed.to_string()],
        token,
    })
}

impl Net {
    /// Hands `bytes` to node `i` as a datagram from `from` and returns what
    /// it sends in answer, without delivering it.
    fn inject(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) -> Vec<Transmit> {
        let now = self.now;
        let core = self.nodes[i].as_mut().unwrap();
        core.handle_datagram(now, from, bytes);
        while core.poll_persist().is_some() {}
        std::iter::from_fn(|| core.poll_transmit()).collect()
    }

    /// The leader of a settled three-node cluster.
    fn leader(&self) -> usize {
        let leaders = self.leaders();
        assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
        leaders[0]
    }

    fn has_member(&self, i: usize, at: SocketAddr) -> bool {
        let at = at.to_string();
        self.core(i).config.values().any(|m| m.addr == at)
            || self.core(i).members().iter().any(|m| m.addr == at)
    }
}

fn challenge_token(transmit: &Transmit) -> Option<JoinToken> {
    let limits = DecodeLimits {
        cluster_id: Some(0),
        frame_bytes_max: 1 << 16,
    };
    match decode_frame(&transmit.bytes, &limits).ok()?.message {
        Message::JoinChallenge(c) => Some(c.token),
        _ => None,
    }
}

fn refused(net: &Net, i: usize, reason: JoinRefusal) -> u64 {
    net.core(i).metrics().join_refused[reason.index()]
}

#[test]
fn an_introduction_without_a_token_adds_no_member_and_gets_a_challenge_no_larger_than_itself() {
    let mut net = Net::three_node_cluster();
    let leader = net.leader();
    let claimed = addr(20);
    let request = raw(introduce(claimed, 9, &[claimed, addr(leader)]));
    let challenges = net.core(leader).metrics().join_challenges;
    let answers = net.inject(leader, addr(21), &request);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        answers[0].to, claimed,
        "the challenge goes to the claimed address"
    );
    assert!(challenge_token(&answers[0]).is_some(), "{answers:?}");
    assert!(answers[0].bytes.len() <= request.len());
    assert_eq!(net.core(leader).metrics().join_challenges, challenges + 1);
    net.run(2000);
    assert!(!net.has_member(leader, claimed));
    assert_eq!(net.core(leader).members().len(), 3);
    // Forming the cluster needed no answer that was too large.
    assert_eq!(refused(&net, leader, JoinRefusal::AnswerTooLarge), 0);

    // An introduction too short for even a challenge gets no answer.
    let short = raw(introduce("1.2.3.4:5".parse().unwrap(), 0, &[]));
    let too_large = refused(&net, leader, JoinRefusal::AnswerTooLarge);
    let answers = net.inject(leader, addr(21), &short);
    assert!(answers.is_empty(), "{answers:?}");
    assert_eq!(
        refused(&net, leader, JoinRefusal::AnswerTooLarge),
        too_large + 1
    );

    // Members that are not the leader redirect, no larger either.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let answers = net.inject(follower, addr(21), &request);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].to, claimed);
    assert!(answers[0].bytes.len() <= request.len());
    let answers = net.inject(follower, addr(21), &short);
    assert!(answers.is_empty(), "{answers:?}");
}

/// An introduction claims the address of a real node, with an incarnation
/// that is not the one running there. The challenge reaches the real node,
/// whose proof carries its own incarnation: the made-up one never becomes
/// a member, the real node does.
#[test]
fn a_spoofed_claim_never_becomes_a_member_while_the_real_node_joins() {
    let mut net = Net::three_node_cluster();
    let leader = net.leader();
    // The real node at addr(3), with incarnation 5, knows only the leader.
    net.start(3, vec![addr(leader)], 5);
    for _ in 0..20 {
        let spoof = raw(introduce(addr(3), 77, &[addr(3), addr(leader)]));
        let answers = net.inject(leader, addr(30), &spoof);
        for t in answers {
            net.queue.push_back((leader, addr(leader), t));
        }
        net.run(100);
    }
    net.run(3000);
    let members = net.core(leader).members();
    let at_3: Vec<&Member> = members
        .iter()
        .filter(|m| m.addr == addr(3).to_string())
        .collect();
    assert_eq!(at_3.len(), 1, "{members:?}");
    assert_eq!(at_3[0].incarnation, 5, "{members:?}");
    assert!(net.core(3).is_member());
    assert!(refused(&net, leader, JoinRefusal::TokenInvalid) > 0);
}

#[test]
fn a_token_for_one_address_does_not_admit_another_and_an_expired_one_is_refused() {
    let mut net = Net::three_node_cluster();
    let leader = net.leader();
    let mine = addr(40);
    let other = addr(41);
    let answers = net.inject(
        leader,
        mine,
        &raw(introduce(mine, 3, &[mine, addr(leader)])),
    );
    let token = answers
        .iter()
        .find_map(challenge_token)
        .expect("a challenge");

    // The token of `mine` does not admit `other`: the leader challenges
    // `other` instead.
    let answers = net.inject(leader, mine, &raw(proof(other, 3, token)));
    assert_eq!(refused(&net, leader, JoinRefusal::TokenInvalid), 1);
    assert!(answers.iter().all(|t| t.to == other), "{answers:?}");
    // Nor another incarnation at `mine`, nor a made-up token.
    net.inject(leader, mine, &raw(proof(mine, 4, token)));
    net.inject(leader, mine, &raw(proof(mine, 3, [0xa5; JOIN_TOKEN_BYTES])));
    assert_eq!(refused(&net, leader, JoinRefusal::TokenInvalid), 3);
    net.run(500);
    assert!(!net.has_member(leader, other));
    assert!(!net.has_member(leader, mine));

    // Two buckets later the token has expired.
    net.run(2 * JOIN_TOKEN_BUCKET_MS);
    let answers = net.inject(leader, mine, &raw(proof(mine, 3, token)));
    assert_eq!(refused(&net, leader, JoinRefusal::TokenExpired), 1);
    net.run(500);
    assert!(!net.has_member(leader, mine));

    // The fresh challenge that answered it admits `mine`.
    let fresh = answers
        .iter()
        .find_map(challenge_token)
        .expect("a fresh challenge");
    net.inject(leader, mine, &raw(proof(mine, 3, fresh)));
    assert!(
        net.has_member(leader, mine),
        "a valid token admits its address"
    );
}

/// A joining node answers a flood of challenges (from a spoofed source or
/// not) with no more than one proof an introduction interval, and only to
/// the nodes it introduces itself to.
#[test]
fn a_joining_node_answers_challenges_only_where_it_introduces_itself_and_at_its_own_pace() {
    let mut net = Net::new();
    net.start(3, vec![addr(0)], 5);
    while net.queue.pop_front().is_some() {}
    let challenge = |byte| {
        raw(Message::JoinChallenge(crate::wire::JoinChallenge {
            token: [byte; JOIN_TOKEN_BYTES],
        }))
    };
    let answers = net.inject(3, addr(9), &challenge(1));
    assert!(answers.is_empty(), "answered a stranger: {answers:?}");
    let mut sent = 0;
    for i in 0..50 {
        sent += net.inject(3, addr(0), &challenge(i)).len();
    }
    assert_eq!(sent, 1, "answers within one interval");
}
