//! Scripted scenarios on the simulator, one per behaviour of the design:
//! the network does only what each test tells it, and the invariants of
//! the seeded runs are checked after every step here too.

#[path = "sim/mod.rs"]
mod sim;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use simple_raft::core::Role;
use simple_raft::wire::{Change, Message};

use sim::clients::Op;
use sim::cluster::{Params, Sim, Status};
use sim::network::Faults;
use sim::rng::Rng;
use sim::script::*;

fn lan() -> Params {
    Params::lan(3)
}

fn set(key: &str, value: &str) -> Op {
    Op::Set {
        key: key.into(),
        value: value.into(),
    }
}

fn value(sim: &Sim, i: usize, key: &str) -> Option<String> {
    sim.core(i).map().get(key).cloned()
}

#[test]
fn introduction_through_a_follower_redirects_to_the_leader() {
    let mut sim = quiet(4, lan(), 1);
    let leader = grow(&mut sim, 3);
    let follower = others(3, &[leader])[0];
    let new = 3;
    sim.start(new, vec![addr(follower)]);
    let settled = settle(&mut sim, 10_000);
    assert_eq!(settled, leader, "the join changed the leader");
    assert!(sim.core(new).is_member());

    let redirect = first_delivery(&sim, |p| {
        p.from == follower && p.to == new && is(p, |m| matches!(m, Message::Redirect(_)))
    });
    let Some((redirect_at, packet)) = redirect else {
        panic!("the follower never redirected the new node");
    };
    let Message::Redirect(r) = &packet.frame.message else {
        unreachable!()
    };
    assert_eq!(r.leader.as_deref(), Some(addr_text(leader).as_str()));
    assert!(r.joined);
    let introduced = first_delivery(&sim, |p| {
        p.from == new && p.to == leader && is(p, |m| matches!(m, Message::Introduce(_)))
    });
    assert!(
        introduced.is_some_and(|(at, _)| at > redirect_at),
        "the new node did not introduce itself to the leader after the redirect"
    );
    // The leader adds the node only once it has answered at its address:
    // introduction, challenge, proof, welcome.
    let at = |sim: &Sim, from: usize, to: usize, kind: fn(&Message) -> bool| {
        first_delivery(sim, |p| p.from == from && p.to == to && is(p, kind)).map(|(at, _)| at)
    };
    let introduced_at = introduced.map(|(at, _)| at);
    let challenged = at(&sim, leader, new, |m| {
        matches!(m, Message::JoinChallenge(_))
    });
    let proved = at(&sim, new, leader, |m| matches!(m, Message::JoinProof(_)));
    let welcomed = at(&sim, leader, new, |m| matches!(m, Message::Welcome(_)));
    assert!(
        introduced_at < challenged && challenged < proved && proved < welcomed,
        "introduced {introduced_at:?}, challenged {challenged:?}, proved {proved:?}, welcomed {welcomed:?}"
    );
    assert!(introduced_at.is_some());
    let welcomed_by_follower = first_delivery(&sim, |p| {
        p.from == follower && is(p, |m| matches!(m, Message::Welcome(_)))
    });
    assert!(
        welcomed_by_follower.is_none(),
        "a follower admitted a member"
    );
    assert_eq!(sim.core(new).digest(), sim.core(leader).digest());
}

#[test]
fn two_leaders_meet_and_the_lower_term_conforms_its_data() {
    let mut sim = quiet(3, lan(), 2);
    let old = grow(&mut sim, 3);
    let id = sim.command(old, set("k", "before")).unwrap();
    assert!(answer(&mut sim, id, 2_000).is_ok());

    // The old leader is cut off and frozen right after it took a write it
    // cannot commit: it still believes it leads.
    let links = isolate(&mut sim, &[old]);
    let minority = sim.command(old, set("k", "minority")).unwrap();
    sim.pause(old, 600_000);
    let rest = others(3, &[old]);
    let now = sim.now;
    assert!(sim.run_until_cond(now + 5_000, |s| rest.iter().any(|&i| leads(s, i))));
    let new = *rest.iter().find(|&&i| leads(&sim, i)).unwrap();
    let id = sim.command(new, set("k", "majority")).unwrap();
    assert!(answer(&mut sim, id, 2_000).is_ok());

    // The network heals while the old leader is still frozen: the new
    // leader's heartbeats wait in its socket.
    sim.net.heal_links(&links);
    run_for(&mut sim, 200);
    assert_eq!(sim.core(old).role(), Role::Leader, "two leaders must meet");
    assert!(leads(&sim, new));
    assert!(sim.core(old).term() < sim.core(new).term());

    sim.resume(old);
    let leader = settle(&mut sim, 10_000);
    assert_eq!(leader, new, "the higher term stays leader");
    assert_eq!(sim.core(old).role(), Role::Follower);
    assert_eq!(sim.core(old).term(), sim.core(new).term());
    assert_eq!(value(&sim, old, "k").as_deref(), Some("majority"));
    assert_eq!(sim.core(old).map(), sim.core(new).map());
    let minority_result = answer(&mut sim, minority, 5_000);
    assert!(
        minority_result.is_err(),
        "the minority write was acknowledged: {minority_result:?}"
    );
    let minority_change = Change::Set {
        key: "k".into(),
        value: "minority".into(),
    };
    assert!(!sim
        .checker
        .history
        .entries
        .values()
        .any(|c| c.change == minority_change));
}

#[test]
fn leader_silence_leads_to_an_election() {
    let params = lan();
    let mut waits = BTreeSet::new();
    for seed in 0..5 {
        let mut sim = quiet(3, params, 30 + seed);
        // Every datagram takes exactly 1 ms: send times are known.
        sim.net.faults.delay_max_ms = 1;
        let leader = grow(&mut sim, 3);
        let term = sim.core(leader).term();
        let silent_from = sim.now;
        sim.crash(leader);
        let rest = others(3, &[leader]);
        let deadline =
            silent_from + 2 * params.leader_timeout_ms + 2 * params.election_timeout_ms + 200;
        assert!(
            sim.run_until_cond(deadline, |s| rest.iter().any(|&i| leads(s, i))),
            "no election within {} ms of the leader's silence",
            deadline - silent_from
        );
        let new = *rest.iter().find(|&&i| leads(&sim, i)).unwrap();
        assert!(sim.core(new).term() > term);
        // The first follower to stand waited a randomised leader timeout
        // after the last heartbeat it heard.
        let (stood_at, first) = first_delivery(&sim, |p| {
            is(p, |m| {
                matches!(m, Message::PreVoteRequest(_) | Message::VoteRequest(_))
            })
        })
        .map(|(at, p)| (at - 1, p.from))
        .expect("someone asked for votes");
        let heard_at = delivered(&sim)
            .iter()
            .filter(|(at, p)| *at <= stood_at && p.from == leader && p.to == first)
            .map(|(at, _)| *at)
            .max()
            .expect("the follower heard the leader");
        let waited = stood_at - heard_at;
        assert!(
            (params.leader_timeout_ms..2 * params.leader_timeout_ms).contains(&waited),
            "n{first} stood {waited} ms after the last heartbeat, outside the leader timeout range"
        );
        waits.insert(waited);
        // The winner tells everyone.
        let others_alive: Vec<usize> = rest.iter().copied().filter(|&i| i != new).collect();
        let now = sim.now;
        assert!(sim.run_until_cond(now + 1_000, |s| others_alive
            .iter()
            .all(|&i| s.core(i).leader() == Some(addr(new)))));
    }
    assert!(
        waits.len() > 1,
        "election timeouts are not randomised: {waits:?}"
    );
}

#[test]
fn a_minority_partition_never_elects_a_leader_that_commits() {
    let mut sim = quiet(5, lan(), 4);
    let leader = grow(&mut sim, 5);
    let minority = [leader, others(5, &[leader])[0]];
    let majority = others(5, &minority);
    let term = sim.core(leader).term();
    let commit = minority
        .iter()
        .map(|&i| sim.core(i).commit())
        .max()
        .unwrap();
    let links = isolate(&mut sim, &minority);
    let mut minority_writes = Vec::new();
    for round in 0..8 {
        for &i in &minority {
            if let Some(id) = sim.command(i, set("k", &format!("minority-{i}-{round}"))) {
                minority_writes.push(id);
            }
        }
        let now = sim.now;
        sim.run_until_cond(now + 500, |s| {
            for &i in &minority {
                let c = s.core(i);
                assert!(
                    c.commit() <= commit,
                    "n{i} in the minority committed {}",
                    c.commit()
                );
                assert!(
                    !(c.role() == Role::Leader && c.term() > term),
                    "n{i} in the minority was elected in term {}",
                    c.term()
                );
            }
            false
        });
    }
    let new = *majority
        .iter()
        .find(|&&i| leads(&sim, i))
        .expect("the majority elected a leader");
    let id = sim.command(new, set("k", "majority")).unwrap();
    assert!(answer(&mut sim, id, 2_000).is_ok());
    assert!(!leads(&sim, leader), "the cut-off leader did not step down");

    sim.net.heal_links(&links);
    let settled = settle(&mut sim, 10_000);
    assert!(majority.contains(&settled));
    for id in minority_writes {
        let result = answer(&mut sim, id, 5_000);
        assert!(
            result.is_err(),
            "a minority write was acknowledged: {result:?}"
        );
    }
    for &i in &minority {
        assert_eq!(value(&sim, i, "k").as_deref(), Some("majority"));
    }
}

#[test]
fn a_returning_partitioned_node_does_not_depose_the_leader() {
    let mut sim = quiet(3, lan(), 5);
    let leader = grow(&mut sim, 3);
    let term = sim.core(leader).term();
    let away = others(3, &[leader])[0];
    let links = isolate(&mut sim, &[away]);
    run_for(&mut sim, 3_000);
    assert_eq!(
        sim.core(away).term(),
        term,
        "a cut-off node raised its term (pre-vote must keep it)"
    );
    sim.net.heal_links(&links);
    let now = sim.now;
    sim.run_until_cond(now + 3_000, |s| {
        assert!(leads(s, leader), "the returning node deposed the leader");
        assert_eq!(s.core(leader).term(), term, "the leader's term changed");
        false
    });
    assert_eq!(settle(&mut sim, 5_000), leader);
    assert_eq!(sim.core(away).leader(), Some(addr(leader)));
}

#[test]
fn a_voter_never_stays_stuck() {
    let params = lan();
    let mut sim = quiet(3, params, 6);
    let leader = grow(&mut sim, 3);
    // Every granted vote is lost on its way, and the candidate dies right
    // after its voter granted it: the voter has no winner to hear.
    let granted: Rc<RefCell<Option<(usize, usize)>>> = Rc::default();
    let seen = Rc::clone(&granted);
    sim.net.filter = Some(Box::new(move |_, p| {
        let grant = matches!(p.frame.message, Message::VoteResponse(v) if v.granted);
        if grant && seen.borrow().is_none() {
            *seen.borrow_mut() = Some((p.from, p.to));
        }
        grant
    }));
    sim.pause(leader, 600_000);
    let now = sim.now;
    assert!(sim.run_until_cond(now + 5_000, |_| granted.borrow().is_some()));
    let (voter, candidate) = granted.borrow().expect("a vote was granted");
    sim.crash(candidate);
    sim.net.filter = None;
    assert_eq!(sim.core(voter).role(), Role::Voter);
    let voted_at = sim.now;
    let bound = voted_at + 2 * params.election_timeout_ms + params.heartbeat_ms;
    assert!(
        sim.run_until_cond(bound, |s| s.core(voter).role() != Role::Voter),
        "still a voter {} ms after its vote",
        bound - voted_at
    );
    // Nor does it get stuck later: alone it cannot win, and it keeps
    // returning from every role it takes.
    let now = sim.now;
    let mut voter_since: Option<u64> = None;
    sim.run_until_cond(now + 5_000, |s| {
        let stuck_role = matches!(s.core(voter).role(), Role::Voter | Role::Candidate);
        match (stuck_role, voter_since) {
            (true, None) => voter_since = Some(s.now),
            (true, Some(since)) => assert!(
                s.now - since <= 2 * params.election_timeout_ms + params.heartbeat_ms,
                "n{voter} stuck as {} since {since} ms",
                s.core(voter).role()
            ),
            (false, _) => voter_since = None,
        }
        false
    });
    sim.resume(leader);
    let seeds = sim.others(candidate);
    sim.start(candidate, seeds);
    settle(&mut sim, 30_000);
}

#[test]
fn simultaneous_bootstrap_ends_in_one_cluster() {
    for seed in 0..20 {
        let mut rng = Rng::new(seed);
        let faults = Faults {
            loss_permille: 200,
            duplicate_permille: 50,
            corrupt_permille: 10,
            delay_min_ms: 1,
            delay_max_ms: 20,
            stream_delay_max_ms: 10,
        };
        let mut sim = Sim::new(lan(), faults, seed, false);
        sim.context = format!("simultaneous bootstrap, seed {seed}");
        let n = 5;
        for _ in 0..n {
            sim.add_node();
        }
        let mut starts: Vec<(u64, usize)> = (0..n).map(|i| (rng.range(0, 30), i)).collect();
        starts.sort();
        for (at, i) in starts {
            sim.run_until(at);
            let seeds = sim.others(i);
            sim.start(i, seeds);
        }
        let leader = settle(&mut sim, 60_000);
        assert_eq!(sim.core(leader).members().len(), n);
        let founder = &sim.checker.history.entries[&1].change;
        assert!(
            matches!(founder, Change::AddMember(m) if m.addr == addr_text(0)),
            "seed {seed}: the cluster was founded by {founder:?}, not the lowest address"
        );
        let founders: BTreeSet<_> = sim
            .checker
            .leaders()
            .get(&1)
            .into_iter()
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(founders, BTreeSet::from([addr(0)]), "seed {seed}");
    }
}

#[test]
fn leadership_transfer_hands_over_without_an_election_timeout() {
    let params = lan();
    let mut sim = quiet(3, params, 8);
    let leader = grow(&mut sim, 3);
    let term = sim.core(leader).term();
    let asked_at = sim.now;
    let log_from = delivered(&sim).len();
    let id = sim.command(leader, Op::Transfer).unwrap();
    let rest = others(3, &[leader]);
    assert!(
        sim.run_until_cond(asked_at + params.leader_timeout_ms, |s| rest
            .iter()
            .any(|&i| leads(s, i))),
        "no new leader within the leader timeout"
    );
    let new = *rest.iter().find(|&&i| leads(&sim, i)).unwrap();
    let took_ms = sim.now - asked_at;
    assert!(
        took_ms < params.leader_timeout_ms,
        "the transfer took {took_ms} ms"
    );
    assert_eq!(sim.core(new).term(), term + 1);
    assert_eq!(answer(&mut sim, id, 1_000), Ok(term + 1));
    let pre_votes = delivered(&sim)[log_from..]
        .iter()
        .filter(|(_, p)| is(p, |m| matches!(m, Message::PreVoteRequest(_))))
        .count();
    assert_eq!(
        pre_votes, 0,
        "the transfer went through a timed-out election"
    );
    assert_eq!(settle(&mut sim, 5_000), new);
}

#[test]
fn silent_members_are_removed_but_never_below_the_minimum() {
    let params = lan();
    let silence = params.member_silence_ms.unwrap();
    let mut sim = quiet(4, params, 9);
    let leader = grow(&mut sim, 4);
    let in_members = |s: &Sim, i: usize| {
        let l = s.leader().expect("a leader");
        s.core(l).members().iter().any(|m| m.addr == addr_text(i))
    };
    let first = others(4, &[leader])[0];
    let crashed_at = sim.now;
    sim.crash(first);
    run_for(&mut sim, silence - 300);
    assert!(in_members(&sim, first), "removed before member_silence_ms");
    assert!(
        sim.run_until_cond(crashed_at + silence + 1_000, |s| !in_members(s, first)),
        "a member silent for {} ms was not removed",
        silence + 1_000
    );
    assert_eq!(sim.core(sim.leader().unwrap()).members().len(), 3);

    let second = others(4, &[leader, first])[0];
    sim.crash(second);
    let now = sim.now;
    sim.run_until_cond(now + 3 * silence, |s| {
        let l = s.leader().expect("two of three voters still elect");
        assert_eq!(s.core(l).members().len(), 3, "removed below members_min");
        false
    });
    assert!(in_members(&sim, second));
    assert_eq!(sim.nodes[second].status, Status::Crashed);
}

/// Durable nodes on a quiet network: every slot keeps a data directory.
fn durable(slots: usize, seed: u64) -> Sim {
    let mut sim = quiet(slots, lan(), seed);
    for node in &mut sim.nodes {
        node.durable = true;
    }
    sim
}

/// Raft §5.1 persistence, all at once: every node crashes together and
/// comes back from its disk as the same member, with every committed write.
#[test]
fn a_durable_cluster_crashed_all_at_once_comes_back_with_every_commit() {
    let mut sim = durable(3, 21);
    let leader = grow(&mut sim, 3);
    let ids: Vec<_> = (0..3).map(|i| sim.core(i).id()).collect();
    let term = sim.core(leader).term();
    let mut writes = Vec::new();
    for i in 0..40 {
        writes.push(sim.command(leader, set(&format!("k{i}"), &format!("v{i}"))));
    }
    for id in writes.into_iter().flatten() {
        answer(&mut sim, id, 5_000).expect("a write commits");
    }
    let version = sim.core(leader).commit();
    for i in 0..3 {
        sim.crash(i);
    }
    run_for(&mut sim, 500);
    for (i, id) in ids.into_iter().enumerate() {
        let seeds = sim.others(i);
        sim.start(i, seeds);
        assert_eq!(sim.core(i).id(), id, "n{i} came back as another member");
        assert!(sim.core(i).term() >= term, "n{i} lost its term");
    }
    let leader = settle(&mut sim, 10_000);
    assert!(sim.core(leader).commit() >= version);
    for i in 0..3 {
        for k in 0..40 {
            assert_eq!(
                value(&sim, i, &format!("k{k}")),
                Some(format!("v{k}")),
                "n{i} lost k{k}"
            );
        }
    }
}

/// A crash in the middle of a write: what reached the disk of the last
/// batch is cut back to the last whole record on restart, and since nothing
/// of that batch was sent, nothing anyone was told is lost.
#[test]
fn a_write_torn_by_a_crash_is_cut_back_and_nothing_acknowledged_is_lost() {
    let mut sim = durable(3, 22);
    let leader = grow(&mut sim, 3);
    let follower = others(3, &[leader])[0];
    let mut acked = Vec::new();
    for round in 0..20 {
        // Every other round the follower crashes inside its next write.
        if round % 2 == 1 {
            sim.nodes[follower].crash_on_write = true;
        }
        let key = format!("k{round}");
        if let Some(id) = sim.command(leader, set(&key, "v")) {
            if answer(&mut sim, id, 5_000).is_ok() {
                acked.push(key);
            }
        }
        if sim.nodes[follower].status == Status::Crashed {
            let seeds = sim.others(follower);
            sim.start(follower, seeds);
        }
    }
    // The last crash may come after the last answer.
    run_for(&mut sim, 200);
    sim.nodes[follower].crash_on_write = false;
    if sim.nodes[follower].status == Status::Crashed {
        let seeds = sim.others(follower);
        sim.start(follower, seeds);
    }
    let torn = sim.nodes[follower].disk.torn_writes;
    assert!(torn >= 3, "too few writes were torn: {torn}");
    assert_eq!(acked.len(), 20, "the leader and the other follower commit");
    settle(&mut sim, 10_000);
    for key in &acked {
        assert_eq!(value(&sim, follower, key).as_deref(), Some("v"), "{key}");
    }
}

/// The generation all running members agree on; panics if two differ.
fn one_generation(sim: &Sim) -> u64 {
    let generations: BTreeSet<u64> = sim
        .up()
        .into_iter()
        .filter_map(|i| sim.core(i).generation())
        .collect();
    assert_eq!(
        generations.len(),
        1,
        "members of two histories: {generations:?}"
    );
    generations.into_iter().next().unwrap()
}

/// The founder (slot 0, started with no one to contact) is killed and
/// started again with that same command within one heartbeat, while
/// clients send it `writes` writes: it listens, hears its cluster, and
/// joins it as a new incarnation; it acknowledges nothing alone, and the
/// invariants (one history, one map per version) hold throughout.
fn founder_restarted_within_a_heartbeat(writes: usize, seed: u64) {
    let mut sim = quiet(3, lan(), seed);
    let leader = grow(&mut sim, 3);
    let generation = one_generation(&sim);
    let id = sim.command(leader, set("k", "before")).unwrap();
    assert!(answer(&mut sim, id, 2_000).is_ok());
    let old_id = sim.core(0).id();
    sim.crash(0);
    run_for(&mut sim, 30);
    sim.start(0, Vec::new());
    let asked: Vec<_> = (0..writes)
        .filter_map(|w| sim.command(0, set(&format!("early{w}"), "founder-only")))
        .collect();
    let leader = settle(&mut sim, 20_000);
    for id in asked {
        if let Ok(version) = answer(&mut sim, id, 5_000) {
            // Acknowledged only through the one cluster: the checker has
            // already matched it with the committed history.
            assert!(sim.core(leader).commit() >= version);
        }
    }
    assert_eq!(one_generation(&sim), generation);
    assert_ne!(
        sim.core(0).id(),
        old_id,
        "the founder's old incarnation came back"
    );
    assert_eq!(sim.core(0).metrics().founding_deferred, 1);
    assert_eq!(value(&sim, 0, "k").as_deref(), Some("before"));
    assert_eq!(sim.core(0).map(), sim.core(leader).map());
}

#[test]
fn a_founder_restarted_within_a_heartbeat_with_1_write_aimed_at_it_rejoins() {
    founder_restarted_within_a_heartbeat(1, 31);
}

#[test]
fn a_founder_restarted_within_a_heartbeat_with_2_writes_aimed_at_it_rejoins() {
    founder_restarted_within_a_heartbeat(2, 32);
}

#[test]
fn a_founder_restarted_within_a_heartbeat_with_5_writes_aimed_at_it_rejoins() {
    founder_restarted_within_a_heartbeat(5, 33);
}

/// A durable founder removed as silent while it was down keeps no identity,
/// but its data directory remembers the members: restarted with its own
/// command (no one to contact), it introduces itself to them and joins as
/// a new member; it never founds.
#[test]
fn a_durable_founder_removed_while_away_rejoins_the_members_it_remembers() {
    let mut sim = durable(4, 34);
    grow(&mut sim, 4);
    let generation = one_generation(&sim);
    let old_id = sim.core(0).id();
    sim.crash(0);
    let removed = sim.run_until_cond(sim.now + 20_000, |s| {
        s.leader().is_some_and(|l| {
            s.running(l) && !s.core(l).members().iter().any(|m| Some(m.id) == old_id)
        })
    });
    assert!(removed, "the silent founder was never removed");
    sim.start(0, Vec::new());
    settle(&mut sim, 20_000);
    assert_eq!(one_generation(&sim), generation);
    assert!(sim.core(0).is_member());
    assert_ne!(sim.core(0).id(), old_id);
    let leader = settle(&mut sim, 10_000);
    assert_eq!(sim.core(leader).members().len(), 4);
}

/// A founder whose data directory was wiped starts as a founder without
/// data: it listens, hears its cluster and joins it as a new incarnation.
#[test]
fn a_founder_with_a_wiped_data_directory_rejoins_as_a_new_member() {
    let mut sim = durable(3, 35);
    grow(&mut sim, 3);
    let generation = one_generation(&sim);
    let old_id = sim.core(0).id();
    sim.crash(0);
    sim.nodes[0].disk = Default::default();
    run_for(&mut sim, 20);
    sim.start(0, Vec::new());
    let leader = settle(&mut sim, 20_000);
    assert_eq!(one_generation(&sim), generation);
    assert_ne!(sim.core(0).id(), old_id);
    let promoted = sim.run_until_cond(sim.now + 10_000, |s| {
        let members = s.core(leader).members();
        members.len() == 3 && members.iter().all(|m| m.voter)
    });
    assert!(promoted, "{:?}", sim.core(leader).members());
}

/// Two clients write one key while the leader is cut off: client A's
/// write reaches the followers but none of their acknowledgements reaches
/// the leader, which is then cut off entirely. A new leader commits A's
/// write; the old one steps down and tells A the outcome is unknown, and A
/// sends it again (what the library's clients do) while client B keeps
/// writing and reading. Every copy applies at most once, and the whole
/// history (checked when the simulation ends) is linearizable. (The seeded
/// runs are what show the resend applying twice without sessions:
/// `SIM_SESSIONS=0`, `tests/sim/FINDINGS.md`, 10.)
#[test]
fn a_write_resent_after_its_leader_was_cut_off_never_comes_back() {
    let mut uncertain = 0;
    for seed in 40..80 {
        let mut sim = quiet(3, lan(), seed);
        sim.clients.follow_redirects = true;
        sim.clients.sessions_on = true;
        sim.clients.retry_writes = sim::clients::RetryWrites::Same;
        let leader = grow(&mut sim, 3);
        let (a, b) = match others(3, &[leader])[..] {
            [a, b] => (a, b),
            _ => unreachable!("three slots"),
        };
        let mut rng = Rng::new(seed);
        // Each client's first write opens its session (and is not made).
        for round in 0..2 {
            for at in [a, b] {
                sim.command(at, set("warm", &format!("{round}")));
            }
            run_for(&mut sim, 300);
        }
        let mut cut = Vec::new();
        for i in 0..60u64 {
            if i == 10 {
                sim.command(a, set("k", "a"));
                run_for(&mut sim, rng.range(1, 4));
                let acks: Vec<_> = [a, b].iter().map(|&f| (f, leader)).collect();
                sim.net.cut_links(&acks);
                cut.extend(acks);
            }
            if i == 12 {
                cut.extend(isolate(&mut sim, &[leader]));
            }
            if i == 45 {
                sim.net.heal_links(&cut);
            }
            sim.command(b, set("k", &format!("b{i}")));
            sim.command(b, Op::Read);
            run_for(&mut sim, rng.range(20, 80));
        }
        let settled = settle(&mut sim, 20_000);
        let last = sim.command(settled, Op::Read).expect("the leader runs");
        answer(&mut sim, last, 5_000).expect("a linearizable read once settled");
        uncertain += sim.clients.outcomes.get("uncertain").copied().unwrap_or(0);
        let maps: BTreeSet<_> = (0..3).map(|i| sim.core(i).map().clone()).collect();
        assert_eq!(maps.len(), 1, "seed {seed}: one map once settled");
    }
    assert!(
        uncertain > 0,
        "no write had an unknown outcome: the scenario missed its point"
    );
}
