//! Terms from frames nobody authenticated (see `term_admission`): a frame of
//! a higher term moves a node only as far, as often and when an honest
//! cluster could, and versions a frame claims beyond a node's log move
//! nothing.

use super::*;
use crate::wire::{Append, AppendAck, Heartbeat, PreVoteRequest, VoteRequest, VERSION_MAX};

/// A well-formed unkeyed frame of the cluster's generation, as anyone who
/// has seen one of its frames can make.
fn forged(net: &Net, sender: NodeId, term: u64, message: Message) -> Vec<u8> {
    let generation = net.core(0).state.generation;
    let frame = Frame::new(0, sender, term, message).with_generation(Some(generation));
    let mut out = BytesMut::new();
    frame.encode(&mut out, 1 << 16).unwrap();
    out.to_vec()
}

/// Hands `bytes` to node `i` as a datagram from a stranger; whatever it
/// answers is delivered by the next [`Net::run`].
fn deliver(net: &mut Net, i: usize, bytes: &[u8]) {
    let now = net.now;
    let stranger = SocketAddr::from(([127, 0, 0, 1], 9999));
    net.nodes[i]
        .as_mut()
        .unwrap()
        .handle_datagram(now, stranger, bytes);
    net.drain(i);
}

fn refused(core: &Core, reason: TermRefusal) -> u64 {
    core.metrics().term_refused[reason.index()]
}

fn vote(last: LogId, transfer: bool) -> Message {
    Message::VoteRequest(VoteRequest { last, transfer })
}

/// A settled three-node cluster and its leader.
fn settled() -> (Net, usize) {
    let net = Net::three_node_cluster();
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    (net, leaders[0])
}

/// Writes `key` through the leader and checks that it commits everywhere.
fn write_commits(net: &mut Net, request: RequestId, key: &str) {
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    net.command(leaders[0], request, set(key, "v"));
    net.run(1000);
    assert!(
        matches!(net.done.get(&request), Some(Ok(_))),
        "{:?}",
        net.done.get(&request)
    );
    for i in 0..3 {
        assert!(net.core(i).map().get(key).is_some(), "node {i} has {key}");
    }
}

/// Raft thesis §9.6 (disruptive servers), extended from votes to every
/// frame: heartbeats, appends and vote requests of a later term, from
/// members and strangers alike, leave a live leader and its followers in
/// their term, each counted.
#[test]
fn a_forged_frame_of_a_higher_term_moves_neither_a_live_leader_nor_its_followers() {
    let (mut net, leader) = settled();
    let term = net.core(leader).term();
    let leader_addr = net.core(leader).leader();
    for i in 0..3 {
        let last = net.core(i).last_log_id();
        let messages = [
            Message::Heartbeat(Heartbeat {
                last,
                commit: last.version,
                seq: 1,
            }),
            Message::Append(Append {
                prev: last,
                commit: last.version,
                seq: 1,
                entries: vec![],
            }),
            vote(last, false),
            vote(last, true),
        ];
        for sender in [1, 2, 3, 77] {
            for message in &messages {
                let bytes = forged(&net, NodeId(sender), term + 1000, message.clone());
                deliver(&mut net, i, &bytes);
            }
        }
        assert_eq!(net.core(i).term(), term, "node {i}");
        assert_eq!(net.core(i).leader(), leader_addr, "node {i}");
        assert_eq!(
            refused(net.core(i), TermRefusal::LeaderLive),
            16,
            "node {i}"
        );
    }
    write_commits(&mut net, 1, "after");
    assert_eq!(net.leaders(), vec![leader]);
}

/// A hand-over's vote request comes exactly one term above the leader's
/// (its target stood from the leader's term): the one frame of a later
/// term a follower of a live leader takes. Two terms above, it is forged.
#[test]
fn a_hand_over_vote_request_moves_a_follower_of_a_live_leader_only_one_term_up() {
    let (mut net, leader) = settled();
    let term = net.core(leader).term();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let last = net.core(follower).last_log_id();
    let other = (0..3).find(|i| *i != leader && *i != follower).unwrap();
    let candidate = net.core(other).id().unwrap();
    let bytes = forged(&net, candidate, term + 2, vote(last, true));
    deliver(&mut net, follower, &bytes);
    assert_eq!(net.core(follower).term(), term);
    assert_eq!(refused(net.core(follower), TermRefusal::LeaderLive), 1);
    let bytes = forged(&net, candidate, term + 1, vote(last, true));
    deliver(&mut net, follower, &bytes);
    assert_eq!(net.core(follower).term(), term + 1);
    // The cluster settles again, in a later term.
    net.run(3000);
    write_commits(&mut net, 2, "after");
}

/// No frame moves a node more than `TERM_STEP_MAX` terms, even one that
/// hears no leader: a burst just below `TERM_MAX` cannot leave the cluster
/// without a later term to elect in.
#[test]
fn a_frame_more_than_term_step_max_above_is_dropped_even_without_a_leader() {
    let mut core = restored_voter(5, None);
    for term in [
        crate::wire::TERM_MAX - 1,
        5 + (1 << 40),
        5 + TERM_STEP_MAX + 1,
    ] {
        core.handle_datagram(0, addr(1), &vote_request(1, term));
        assert_eq!(core.term(), 5, "a vote request at {term}");
    }
    assert_eq!(refused(&core, TermRefusal::TooFarAhead), 3);
    while core.poll_persist().is_some() {}
    assert_eq!(core.poll_transmit().map(|t| t.to), None, "nothing answered");
    core.handle_datagram(0, addr(1), &vote_request(1, 5 + TERM_STEP_MAX));
    assert_eq!(core.term(), 5 + TERM_STEP_MAX, "the largest step is taken");
}

/// A node back from a long absence needs one jump to the cluster's term;
/// a second jump within a leader timeout is refused, single steps are not.
#[test]
fn a_node_jumps_more_than_one_term_at_most_once_per_leader_timeout() {
    let mut core = restored_voter(5, None);
    let window = core.cfg.leader_timeout_ms;
    core.handle_datagram(0, addr(1), &vote_request(1, 15));
    assert_eq!(core.term(), 15);
    core.handle_datagram(10, addr(3), &vote_request(3, 25));
    assert_eq!(core.term(), 15, "a second jump at once");
    assert_eq!(refused(&core, TermRefusal::JumpTooSoon), 1);
    core.handle_datagram(10, addr(3), &vote_request(3, 16));
    assert_eq!(core.term(), 16, "one term up is no jump");
    core.handle_datagram(window, addr(3), &vote_request(3, 26));
    assert_eq!(core.term(), 26, "a leader timeout later");
}

/// Raft §5.1 with pre-vote: a follower cut off while the others held three
/// elections (hand-overs) takes their term, and their leader, when it is
/// back: the rules above never keep an honest node behind.
#[test]
fn a_node_cut_off_during_several_elections_takes_the_cluster_term_when_back() {
    let (mut net, leader) = settled();
    let term = net.core(leader).term();
    let away = (0..3).find(|i| *i != leader).unwrap();
    net.cut.push(away);
    // Long enough for the leader to take it for gone (no hand-over to it).
    net.run(500);
    for request in 1..=3 {
        let leader = net.leaders()[0];
        net.command(leader, request, Command::TransferLeadership);
        net.run(500);
        assert!(
            matches!(net.done.get(&request), Some(Ok(_))),
            "hand-over {request}: {:?}",
            net.done.get(&request)
        );
    }
    let leader = net.leaders()[0];
    assert_eq!(net.core(leader).term(), term + 3);
    assert_eq!(net.core(away).term(), term);
    net.cut.clear();
    net.run(2000);
    assert_eq!(net.core(away).term(), term + 3);
    assert_eq!(net.core(away).leader(), Some(addr(leader)));
    write_commits(&mut net, 10, "back");
}

/// Pre-votes of a far later term change nothing (a pre-vote never does)
/// and, beyond `TERM_STEP_MAX`, get no answer.
#[test]
fn a_pre_vote_far_above_gets_no_answer_and_changes_nothing() {
    let (mut net, leader) = settled();
    let term = net.core(leader).term();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let last = net.core(follower).last_log_id();
    let message = Message::PreVoteRequest(PreVoteRequest { last });
    let bytes = forged(&net, NodeId(77), term + TERM_STEP_MAX + 1, message);
    deliver(&mut net, follower, &bytes);
    assert!(net.queue.is_empty(), "nothing answered");
    assert_eq!(refused(net.core(follower), TermRefusal::TooFarAhead), 1);
    assert_eq!(net.core(follower).term(), term);
}

/// Versions a frame claims beyond a node's log are harmless: a follower
/// trusts only the entries it holds (Raft §5.3, log matching), so a
/// heartbeat or append claiming a commit or last version near
/// `VERSION_MAX` moves neither its log nor its commit, and a leader counts
/// an acknowledgement only up to its own log.
#[test]
fn versions_claimed_near_version_max_move_no_log_and_no_commit() {
    let (mut net, leader) = settled();
    write_commits(&mut net, 1, "before");
    let term = net.core(leader).term();
    let leader_id = net.core(leader).id().unwrap();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let (last, commit) = (
        net.core(follower).last_log_id(),
        net.core(follower).commit(),
    );
    let far = LogId {
        term,
        version: VERSION_MAX - 1,
    };
    let messages = [
        Message::Heartbeat(Heartbeat {
            last: far,
            commit: VERSION_MAX,
            seq: 1,
        }),
        Message::Append(Append {
            prev: far,
            commit: VERSION_MAX,
            seq: 1,
            entries: vec![Entry {
                term,
                change: Change::Noop,
            }],
        }),
        Message::Append(Append {
            prev: last,
            commit: VERSION_MAX,
            seq: 1,
            entries: vec![],
        }),
    ];
    for message in messages {
        let bytes = forged(&net, leader_id, term, message);
        deliver(&mut net, follower, &bytes);
        assert_eq!(net.core(follower).last_log_id(), last);
        assert_eq!(net.core(follower).commit(), commit);
    }
    let follower_id = net.core(follower).id().unwrap();
    let ack = Message::AppendAck(AppendAck {
        seq: 1,
        success: true,
        version: VERSION_MAX,
    });
    let bytes = forged(&net, follower_id, term, ack);
    deliver(&mut net, leader, &bytes);
    let core = net.core(leader);
    assert!(core.commit() <= core.last_log_id().version);
    net.run(500);
    write_commits(&mut net, 2, "after");
}

/// A member whose term ran ahead (it stood while cut off) refuses the
/// leader's heartbeats as stale and answers in its own term: the leader
/// steps down into that term and the next election takes the member in. The
/// same acknowledgement from a stranger moves nothing.
#[test]
fn a_leader_steps_down_for_a_members_acknowledgement_of_a_later_term() {
    let (mut net, leader) = settled();
    let term = net.core(leader).term();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let ack = |version| {
        Message::HeartbeatAck(crate::wire::HeartbeatAck {
            seq: 0,
            matched: false,
            version,
        })
    };
    let version = net.core(follower).last_log_id().version;
    let bytes = forged(&net, NodeId(77), term + 3, ack(version));
    deliver(&mut net, leader, &bytes);
    assert_eq!(net.core(leader).role(), Role::Leader);
    assert_eq!(refused(net.core(leader), TermRefusal::LeaderLive), 1);
    let member = net.core(follower).id().unwrap();
    let bytes = forged(&net, member, term + 3, ack(version));
    deliver(&mut net, leader, &bytes);
    assert_eq!(net.core(leader).role(), Role::Follower);
    assert_eq!(net.core(leader).term(), term + 3);
    net.run(3000);
    write_commits(&mut net, 1, "after");
    let leader = net.leaders()[0];
    assert!(net.core(leader).term() > term + 3);
}
