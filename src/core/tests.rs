//! Scenario tests of the core on a perfect in-memory network (no loss, in
//! order). Faults, randomised schedules and invariants live in the
//! simulator under `tests/`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use super::*;

struct Net {
    nodes: Vec<Option<Core>>,
    now: Millis,
    queue: VecDeque<(usize, SocketAddr, Transmit)>,
    done: BTreeMap<RequestId, Result<u64, RequestError>>,
    cut: Vec<usize>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001 + i as u16))
}

fn config(i: usize, seeds: Vec<SocketAddr>) -> CoreConfig {
    let mut cfg = CoreConfig::new(addr(i), seeds, 1);
    cfg.heartbeat_ms = 50;
    cfg.leader_timeout_ms = 300;
    cfg.election_timeout_ms = 300;
    cfg.member_silence_ms = Some(3000);
    cfg
}

impl Net {
    fn new() -> Net {
        Net {
            nodes: Vec::new(),
            now: 0,
            queue: VecDeque::new(),
            done: BTreeMap::new(),
            cut: Vec::new(),
        }
    }

    fn start(&mut self, i: usize, seeds: Vec<SocketAddr>, incarnation: u64) {
        let mut cfg = config(i, seeds);
        cfg.incarnation = incarnation;
        let core = Core::new(cfg, i as u64 * 7 + incarnation, self.now).unwrap();
        if self.nodes.len() <= i {
            self.nodes.resize_with(i + 1, || None);
        }
        self.nodes[i] = Some(core);
        self.drain(i);
    }

    fn index_of(&self, a: SocketAddr) -> usize {
        (a.port() - 7001) as usize
    }

    fn drain(&mut self, i: usize) {
        let mut fetches = Vec::new();
        {
            let Some(core) = self.nodes[i].as_mut() else {
                return;
            };
            while core.poll_persist().is_some() {}
            while let Some(t) = core.poll_transmit() {
                self.queue.push_back((i, addr(i), t));
            }
            while let Some(event) = core.poll_event() {
                match event {
                    Event::Done { request, result } => {
                        self.done.insert(request, result);
                    }
                    Event::FetchSnapshot { from } => fetches.push(from),
                    _ => {}
                }
            }
        }
        for from in fetches {
            let j = self.index_of(from);
            if self.cut.contains(&j) {
                continue;
            }
            if let Some(snapshot) = self.nodes[j].as_ref().map(|c| c.snapshot()) {
                let now = self.now;
                if let Some(core) = self.nodes[i].as_mut() {
                    core.handle_snapshot(now, snapshot);
                }
                self.drain(i);
            }
        }
    }

    /// Runs for `ms` of virtual time, delivering everything at once.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            while let Some((from_i, from, t)) = self.queue.pop_front() {
                let to = self.index_of(t.to);
                if self.cut.contains(&from_i) || self.cut.contains(&to) {
                    continue;
                }
                let now = self.now;
                if let Some(core) = self.nodes.get_mut(to).and_then(|c| c.as_mut()) {
                    if t.stream {
                        core.handle_stream_frame(now, from, &t.bytes);
                    } else {
                        core.handle_datagram(now, from, &t.bytes);
                    }
                    self.drain(to);
                }
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|c| c.as_ref().and_then(|c| c.poll_timeout()))
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in 0..self.nodes.len() {
                        let now = self.now;
                        if let Some(core) = self.nodes[i].as_mut() {
                            if core.poll_timeout().is_some_and(|t| t <= now) {
                                core.handle_timeout(now);
                                self.drain(i);
                            }
                        }
                    }
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    fn core(&self, i: usize) -> &Core {
        self.nodes[i].as_ref().unwrap()
    }

    /// Starts node `i` with no one to contact and lets it listen out its
    /// founding delay: it founds and leads.
    fn found(&mut self, i: usize) {
        self.start(i, vec![], 1);
        let listen = self.core(i).cfg.found_listen_ms();
        self.run(listen + 1);
        assert_eq!(self.core(i).role(), Role::Leader, "node {i} founded");
    }

    fn command(&mut self, i: usize, request: RequestId, command: Command) {
        let now = self.now;
        self.nodes[i]
            .as_mut()
            .unwrap()
            .handle_command(now, request, command);
        self.drain(i);
    }

    fn session_write(&mut self, i: usize, request: RequestId, command: Command, tag: WriteTag) {
        let now = self.now;
        self.nodes[i]
            .as_mut()
            .unwrap()
            .handle_session_write(now, request, command, tag);
        self.drain(i);
    }

    fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| !self.cut.contains(i))
            .filter(|i| {
                self.nodes[*i]
                    .as_ref()
                    .is_some_and(|c| c.role() == Role::Leader)
            })
            .collect()
    }

    fn three_node_cluster() -> Net {
        let mut net = Net::new();
        net.start(0, vec![], 1);
        net.start(1, vec![addr(0)], 1);
        net.start(2, vec![addr(0)], 1);
        net.run(3000);
        net
    }
}

#[test]
fn a_node_without_seeds_listens_then_founds_a_cluster_and_leads_it() {
    let mut net = Net::new();
    net.start(0, vec![], 1);
    let listen = net.core(0).cfg.found_listen_ms();
    net.run(listen - 1);
    assert!(!net.core(0).is_member(), "founded before it listened");
    net.run(2);
    assert_eq!(net.core(0).role(), Role::Leader);
    net.command(
        0,
        1,
        Command::Set {
            key: "k".into(),
            value: "v".into(),
        },
    );
    net.run(10);
    assert!(matches!(net.done.get(&1), Some(Ok(_))));
    assert_eq!(net.core(0).map().get("k").map(String::as_str), Some("v"));
}

#[test]
fn joined_nodes_are_promoted_and_replicate_writes() {
    let mut net = Net::three_node_cluster();
    for i in 0..3 {
        assert!(net.core(i).is_member(), "node {i} is a member");
    }
    let voters = net.core(0).members().iter().filter(|m| m.voter).count();
    assert_eq!(voters, 3);
    net.command(
        0,
        7,
        Command::Set {
            key: "a".into(),
            value: "1".into(),
        },
    );
    net.run(200);
    assert!(matches!(net.done.get(&7), Some(Ok(_))), "{:?}", net.done);
    for i in 0..3 {
        assert_eq!(net.core(i).map().get("a").map(String::as_str), Some("1"));
    }
}

#[test]
fn followers_redirect_writes_and_serve_linearizable_reads() {
    let mut net = Net::three_node_cluster();
    net.command(
        1,
        1,
        Command::Set {
            key: "a".into(),
            value: "1".into(),
        },
    );
    assert_eq!(
        net.done.get(&1),
        Some(&Err(RequestError::NotLeader {
            leader: Some(addr(0))
        }))
    );
    net.command(
        0,
        2,
        Command::Set {
            key: "a".into(),
            value: "1".into(),
        },
    );
    net.run(100);
    let Some(Ok(version)) = net.done.get(&2).cloned() else {
        panic!("write failed: {:?}", net.done);
    };
    net.command(2, 3, Command::ReadLinearizable);
    net.run(200);
    let Some(Ok(read)) = net.done.get(&3).cloned() else {
        panic!("read failed: {:?}", net.done);
    };
    assert!(read >= version);
    assert!(net.core(2).commit() >= read);
}

#[test]
fn a_follower_asks_again_for_a_read_index_lost_on_the_way() {
    let mut net = Net::three_node_cluster();
    net.command(2, 1, Command::ReadLinearizable);
    // The request (and anything else in flight) is lost.
    net.queue.clear();
    // Well before the read's deadline (two election timeouts): answered.
    net.run(150);
    assert!(
        matches!(net.done.get(&1), Some(Ok(_))),
        "read not answered: {:?}",
        net.done
    );
}

#[test]
fn leader_crash_leads_to_a_new_leader_with_every_committed_write() {
    let mut net = Net::three_node_cluster();
    net.command(
        0,
        1,
        Command::Set {
            key: "a".into(),
            value: "1".into(),
        },
    );
    net.run(100);
    assert!(matches!(net.done.get(&1), Some(Ok(_))));
    net.cut.push(0);
    net.run(3000);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "one new leader: {leaders:?}");
    let new = leaders[0];
    assert_ne!(new, 0);
    assert_eq!(net.core(new).map().get("a").map(String::as_str), Some("1"));
}

#[test]
fn update_replicates_the_difference_and_replaces_the_map() {
    let mut net = Net::three_node_cluster();
    let map: BTreeMap<String, String> = [("a", "1"), ("b", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    net.command(
        0,
        1,
        Command::Update {
            map: map.clone().into(),
        },
    );
    net.run(100);
    let mut next = map.clone();
    next.remove("a");
    next.insert("c".into(), "3".into());
    net.command(
        0,
        2,
        Command::Update {
            map: next.clone().into(),
        },
    );
    let change = net
        .core(0)
        .entry(net.core(0).last_log_id().version)
        .unwrap()
        .change
        .clone();
    assert_eq!(
        change,
        crate::wire::Change::Replace {
            set: vec![("c".into(), "3".into())],
            remove: vec!["a".into()]
        }
    );
    net.run(100);
    for i in 0..3 {
        assert_eq!(net.core(i).map(), &Map::from(&next));
    }
}

#[test]
fn leadership_transfer_hands_over_to_a_caught_up_voter() {
    let mut net = Net::three_node_cluster();
    let term = net.core(0).term();
    net.command(0, 1, Command::TransferLeadership);
    net.run(100);
    assert!(matches!(net.done.get(&1), Some(Ok(_))), "{:?}", net.done);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 0);
    assert_eq!(net.core(leaders[0]).term(), term + 1);
}

#[test]
fn a_follower_leaves_and_the_cluster_shrinks() {
    let mut net = Net::three_node_cluster();
    net.command(2, 1, Command::Leave);
    net.run(500);
    assert!(matches!(net.done.get(&1), Some(Ok(_))), "{:?}", net.done);
    assert_eq!(net.core(0).members().len(), 2);
    assert!(!net.core(2).is_member());
}

#[test]
fn a_restarted_node_rejoins_as_a_new_member() {
    let mut net = Net::three_node_cluster();
    net.command(
        0,
        1,
        Command::Set {
            key: "a".into(),
            value: "1".into(),
        },
    );
    net.run(100);
    net.start(2, vec![addr(0), addr(1)], 2);
    net.run(3000);
    let members = net.core(0).members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().any(|m| m.incarnation == 2 && m.voter));
    assert_eq!(net.core(2).map().get("a").map(String::as_str), Some("1"));
}

/// Writes `count` keys through node `via` (request ids from `first`)
/// and returns the ones acknowledged.
fn write_keys(net: &mut Net, via: usize, first: RequestId, count: u64, tag: &str) -> Vec<String> {
    let mut acked = Vec::new();
    for n in 0..count {
        let key = format!("{tag}{n}");
        net.command(
            via,
            first + n,
            Command::Set {
                key: key.clone(),
                value: tag.into(),
            },
        );
        net.run(20);
        if matches!(net.done.get(&(first + n)), Some(Ok(_))) {
            acked.push(key);
        }
    }
    acked
}

/// The founder of a three-node cluster (the leader) crashes and is started
/// again at once with its original command (no one to contact, no data):
/// it must rejoin the cluster it founded, never found a second one, and
/// acknowledge only what the majority holds.
fn founder_restarted_with_its_command(writes_before_contact: u64) {
    let mut net = Net::three_node_cluster();
    let before = write_keys(&mut net, 0, 100, 3, "before");
    assert_eq!(before.len(), 3);
    let generation = net.core(0).state.generation;
    net.nodes[0] = None;
    net.start(0, vec![], 2);
    // Writes aimed at the restarted founder before it heard from anyone.
    let early = write_keys(&mut net, 0, 200, writes_before_contact, "early");
    assert!(
        early.is_empty(),
        "the restarted founder acknowledged {early:?} alone"
    );
    net.run(5000);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    for i in 0..3 {
        let core = net.core(i);
        assert_eq!(core.state.generation, generation, "node {i}: one history");
        assert!(core.is_member(), "node {i} is a member");
        for key in &before {
            assert!(core.map().contains_key(key), "node {i} lost {key}");
        }
        assert!(core.map().keys().all(|k| !k.starts_with("early")));
    }
    let members = net.core(leaders[0]).members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members
        .iter()
        .any(|m| m.addr == addr(0).to_string() && m.incarnation == 2));
    assert!(members.iter().all(|m| m.voter), "{members:?}");
    assert_eq!(net.core(0).metrics.founding_deferred, 1);
    let leader = leaders[0];
    let after = write_keys(&mut net, leader, 300, 2, "after");
    assert_eq!(after.len(), 2, "writes commit in the one cluster");
    net.run(200);
    assert!(after.iter().all(|k| net.core(0).map().contains_key(k)));
}

#[test]
fn a_founder_restarted_with_its_command_rejoins_after_1_write() {
    founder_restarted_with_its_command(1);
}

#[test]
fn a_founder_restarted_with_its_command_rejoins_after_2_writes() {
    founder_restarted_with_its_command(2);
}

#[test]
fn a_founder_restarted_with_its_command_rejoins_after_5_writes() {
    founder_restarted_with_its_command(5);
}

#[test]
fn frames_of_another_generation_change_nothing() {
    let mut net = Net::three_node_cluster();
    let core = net.nodes[1].as_mut().unwrap();
    let (term, last) = (core.term(), core.last_log_id());
    let foreign = Frame::new(
        0,
        NodeId(1),
        term + 5,
        Message::Heartbeat(crate::wire::Heartbeat {
            last,
            commit: last.version,
            seq: 1,
        }),
    )
    .with_generation(Some(core.state.generation ^ 1));
    let mut out = BytesMut::new();
    foreign.encode(&mut out, 1400).unwrap();
    core.handle_datagram(net.now, addr(0), &out);
    assert_eq!(core.term(), term, "a foreign frame moved the term");
    assert_eq!(core.metrics.dropped_foreign_generation, 1);
    let mut snapshot = net.core(0).snapshot();
    snapshot.generation ^= 1;
    snapshot.last.version += 10;
    let core = net.nodes[1].as_mut().unwrap();
    core.handle_snapshot(net.now, snapshot);
    assert_eq!(core.last_log_id(), last, "a foreign snapshot was installed");
    assert_eq!(core.metrics.dropped_foreign_generation, 2);
}

#[test]
fn a_restart_with_a_smaller_incarnation_replaces_the_old_member() {
    let mut net = Net::three_node_cluster();
    let old = net.core(2).id();
    // Incarnations are random: the new one may be smaller.
    net.start(2, vec![addr(0), addr(1)], 0);
    net.run(3000);
    let members = net.core(0).members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| Some(m.id) != old));
    assert!(members.iter().any(|m| m.incarnation == 0 && m.voter));
}

#[test]
fn a_delayed_introduce_of_a_dead_incarnation_does_not_remove_a_live_member() {
    let mut net = Net::three_node_cluster();
    let live = net.core(2).id();
    let dropped = net.core(0).metrics().dropped_unexpected;
    // Node 2's address introduces itself with an incarnation it no longer
    // has (a recording of a process that died before this one started).
    let introduce = Frame::new(
        0,
        NodeId::UNASSIGNED,
        0,
        Message::Introduce(crate::wire::Introduce {
            addr: addr(2).to_string(),
            incarnation: 77,
            seeds: vec![],
        }),
    );
    let mut bytes = BytesMut::new();
    introduce.encode(&mut bytes, 1400).unwrap();
    for _ in 0..5 {
        let now = net.now;
        net.nodes[0]
            .as_mut()
            .unwrap()
            .handle_datagram(now, addr(2), &bytes);
        net.drain(0);
        net.run(200);
    }
    let members = net.core(0).members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().any(|m| Some(m.id) == live && m.voter));
    assert!(net.core(0).metrics().dropped_unexpected > dropped);

    // Nor one of the leader's own address.
    let leader = net.core(0).id();
    let introduce = Frame::new(
        0,
        NodeId::UNASSIGNED,
        0,
        Message::Introduce(crate::wire::Introduce {
            addr: addr(0).to_string(),
            incarnation: 77,
            seeds: vec![],
        }),
    );
    let mut bytes = BytesMut::new();
    introduce.encode(&mut bytes, 1400).unwrap();
    let now = net.now;
    net.nodes[0]
        .as_mut()
        .unwrap()
        .handle_datagram(now, addr(1), &bytes);
    net.drain(0);
    net.run(1000);
    assert_eq!(net.core(0).role(), Role::Leader);
    assert!(net.core(0).members().iter().any(|m| Some(m.id) == leader));
}

#[test]
fn nodes_started_together_end_in_one_cluster() {
    let mut net = Net::new();
    let all: Vec<SocketAddr> = (0..3).map(addr).collect();
    for i in 0..3 {
        let seeds = all.iter().copied().filter(|a| *a != addr(i)).collect();
        net.start(i, seeds, 1);
    }
    net.run(5000);
    assert_eq!(net.leaders().len(), 1);
    for i in 0..3 {
        assert_eq!(net.core(i).members().len(), 3, "node {i}");
    }
}

#[test]
fn a_member_removed_while_cut_off_learns_it_and_rejoins() {
    let mut net = Net::new();
    net.start(0, vec![], 1);
    for i in 1..4 {
        net.start(i, vec![addr(0)], 1);
    }
    net.run(3000);
    assert_eq!(net.core(0).members().len(), 4);
    let old_id = net.core(3).id();
    net.cut.push(3);
    net.run(6000);
    assert_eq!(
        net.core(0).members().len(),
        3,
        "the silent member was removed"
    );
    net.cut.clear();
    net.run(5000);
    let members = net.core(0).members();
    assert_eq!(members.len(), 4, "{members:?}");
    assert!(net.core(3).is_member());
    assert_ne!(net.core(3).id(), old_id, "it rejoined as a new member");
}

#[test]
fn a_leaving_leader_hands_over_first_and_is_removed() {
    let mut net = Net::three_node_cluster();
    net.command(0, 1, Command::Leave);
    net.run(2000);
    assert!(matches!(net.done.get(&1), Some(Ok(_))), "{:?}", net.done);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 0);
    assert_eq!(net.core(leaders[0]).members().len(), 2);
    assert!(!net.core(0).is_member());
    assert_eq!(net.core(0).role(), Role::Follower);
}

#[test]
fn oversized_keys_and_values_are_refused_and_change_nothing() {
    let mut net = Net::new();
    net.found(0);
    let version = net.core(0).last_log_id().version;
    let value = "v".repeat(net.core(0).cfg.value_bytes_max + 1);
    net.command(
        0,
        1,
        Command::Set {
            key: "k".into(),
            value,
        },
    );
    assert!(matches!(
        net.done.get(&1),
        Some(Err(RequestError::TooLarge { .. }))
    ));
    let key = "k".repeat(net.core(0).cfg.key_bytes_max + 1);
    let map = BTreeMap::from([(key, "v".to_string())]);
    net.command(0, 2, Command::Update { map: map.into() });
    assert!(matches!(
        net.done.get(&2),
        Some(Err(RequestError::TooLarge { .. }))
    ));
    assert_eq!(net.core(0).last_log_id().version, version);
}

// ----- durability (a data directory) -----

/// A durable member 2 of three voters, restored at `term` having voted for
/// `voted_for`.
fn restored_voter(term: u64, voted_for: Option<NodeId>) -> Core {
    let members = (1..=3)
        .map(|i| Member {
            id: NodeId(i),
            addr: addr(i as usize).to_string(),
            voter: true,
            incarnation: 1,
        })
        .collect();
    let image = DurableImage {
        identity: Some(Identity {
            id: NodeId(2),
            incarnation: 1,
            addr: addr(2).to_string(),
            generation: 7,
        }),
        hard_state: HardState { term, voted_for },
        snapshot: Snapshot {
            generation: 7,
            last: LogId {
                term: 1,
                version: 3,
            },
            members,
            next_member_id: 4,
            map: vec![("k".into(), "v".into())],
            sessions: Vec::new(),
        },
        entries: vec![Entry {
            term: 2,
            change: crate::wire::Change::Noop,
        }],
    };
    let mut cfg = config(2, vec![addr(1)]);
    cfg.durable = true;
    Core::restore(cfg, 5, 0, image).unwrap()
}

fn vote_request(candidate: u32, term: u64) -> Vec<u8> {
    let frame = Frame::new(
        0,
        NodeId(candidate),
        term,
        Message::VoteRequest(crate::wire::VoteRequest {
            last: LogId {
                term: 2,
                version: 4,
            },
            transfer: true,
        }),
    )
    .with_generation(Some(7));
    let mut out = BytesMut::new();
    frame.encode(&mut out, 1400).unwrap();
    out.to_vec()
}

fn vote_granted(core: &mut Core) -> Option<bool> {
    let t = core.poll_transmit()?;
    let limits = DecodeLimits {
        cluster_id: Some(0),
        frame_bytes_max: 1400,
    };
    match crate::wire::decode_frame(&t.bytes, &limits)
        .unwrap()
        .message
    {
        Message::VoteResponse(r) => Some(r.granted),
        other => panic!("expected a vote response, got {other:?}"),
    }
}

#[test]
fn restore_resumes_the_same_member_with_its_state_and_log() {
    let core = restored_voter(5, Some(NodeId(1)));
    assert_eq!(core.id(), Some(NodeId(2)));
    assert_eq!(core.term(), 5);
    assert_eq!(core.commit(), 3);
    assert_eq!(core.map().get("k").map(String::as_str), Some("v"));
    assert_eq!(
        core.last_log_id(),
        LogId {
            term: 2,
            version: 4
        }
    );
    assert_eq!(core.members().len(), 3);
    // What it would write now is what it was restored from.
    let image = core.durable_image();
    assert_eq!(image.hard_state.voted_for, Some(NodeId(1)));
    assert_eq!(image.entries.len(), 1);
}

/// Raft §5.2 with §5.1's persistence: a vote is on disk before it is sent,
/// and one cast before a restart binds the node after it.
#[test]
fn a_durable_vote_is_handed_out_before_it_is_sent_and_binds_after_a_restart() {
    let mut core = restored_voter(5, None);
    core.handle_datagram(10, addr(3), &vote_request(3, 6));
    assert_eq!(vote_granted(&mut core), None, "sent before persisted");
    assert_eq!(core.poll_event(), None, "reported before persisted");
    assert_eq!(
        core.poll_persist(),
        Some(Persist::Record(Record::HardState(HardState {
            term: 6,
            voted_for: Some(NodeId(3)),
        })))
    );
    assert_eq!(core.poll_persist(), None);
    assert_eq!(vote_granted(&mut core), Some(true));

    // Restarted with what it wrote: another candidate of term 6 is refused.
    let mut again = restored_voter(6, Some(NodeId(3)));
    again.handle_datagram(20, addr(1), &vote_request(1, 6));
    while again.poll_persist().is_some() {}
    assert_eq!(vote_granted(&mut again), Some(false));
}

#[test]
fn a_durable_lone_voter_commits_and_reports_a_write_only_once_its_entry_is_on_disk() {
    let mut cfg = config(0, vec![]);
    cfg.durable = true;
    let listen = cfg.found_listen_ms();
    let mut core = Core::new(cfg, 1, 0).unwrap();
    core.handle_timeout(listen);
    let mut founding = Vec::new();
    while let Some(change) = core.poll_persist() {
        founding.push(change);
    }
    core.handle_persisted(listen);
    assert!(founding
        .iter()
        .any(|c| matches!(c, Persist::Record(Record::Identity(Some(_))))));
    assert!(founding
        .iter()
        .any(|c| matches!(c, Persist::Record(Record::HardState(h)) if h.term == 1)));
    while core.poll_event().is_some() {}
    core.handle_command(
        listen + 1,
        7,
        Command::Set {
            key: "a".into(),
            value: "1".into(),
        },
    );
    assert_eq!(core.poll_event(), None, "done before its entry is durable");
    let Some(Persist::Record(Record::Entry { version, entry })) = core.poll_persist() else {
        panic!("the entry is handed out first");
    };
    assert_eq!(version, core.last_log_id().version);
    assert_eq!(entry.term, 1);
    assert_eq!(core.poll_persist(), None);
    // Handed out is not yet on disk: a lone voter does not count itself.
    assert!(core.commit() < version, "committed before it was durable");
    assert_eq!(core.poll_event(), None);
    core.handle_persisted(listen + 2);
    assert_eq!(core.commit(), version);
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(events.contains(&Event::Done {
        request: 7,
        result: Ok(version)
    }));
}

#[test]
fn a_core_without_a_data_directory_hands_out_nothing() {
    let cfg = config(0, vec![]);
    let listen = cfg.found_listen_ms();
    let mut core = Core::new(cfg, 1, 0).unwrap();
    core.handle_timeout(listen);
    assert_eq!(core.poll_persist(), None);
    assert!(core.poll_event().is_some());
}

/// Raft thesis §6.4: a follower's read completes with the index its leader
/// confirmed, and with no one else's: an answer from another member (or
/// one meant for an earlier process at this address) with the same id is
/// ignored.
#[test]
fn a_read_index_answer_counts_only_from_the_leader_it_was_asked_of() {
    let mut net = Net::three_node_cluster();
    let leader = net.leaders()[0];
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    net.command(follower, 77, Command::ReadLinearizable);
    let limits = crate::wire::DecodeLimits::datagram(0);
    let request_id = net
        .queue
        .iter()
        .find_map(
            |(_, _, t)| match crate::wire::decode_frame(&t.bytes, &limits).ok()?.message {
                Message::ReadIndexRequest(r) => Some(r.request_id),
                _ => None,
            },
        )
        .expect("the follower asked its leader");
    let core = net.core(other);
    let forged = Frame::new(
        0,
        core.id().unwrap(),
        core.term(),
        Message::ReadIndexResponse(crate::wire::ReadIndexResponse {
            request_id,
            index: Some(0),
        }),
    )
    .with_generation(core.generation());
    let mut out = BytesMut::new();
    forged.encode(&mut out, 1400).unwrap();
    let now = net.now;
    net.nodes[follower]
        .as_mut()
        .unwrap()
        .handle_datagram(now, addr(other), &out);
    net.drain(follower);
    assert!(!net.done.contains_key(&77), "completed by another's answer");
    net.run(200);
    assert!(
        matches!(net.done.get(&77), Some(Ok(_))),
        "{:?}",
        net.done.get(&77)
    );
}

/// A node that is not a member answers an introduction with no more bytes
/// than it was sent, however many addresses it knows: no amplifier for a
/// spoofed source.
#[test]
fn an_introduction_is_answered_with_no_more_bytes_than_it_carried() {
    let mut core = Core::new(config(0, vec![]), 3, 0).unwrap();
    let introduce = |addr: String, seeds: Vec<String>| {
        let frame = Frame::new(
            0,
            NodeId::UNASSIGNED,
            0,
            Message::Introduce(crate::wire::Introduce {
                addr,
                incarnation: u64::MAX,
                seeds,
            }),
        );
        let mut out = BytesMut::new();
        frame.encode(&mut out, 1 << 16).unwrap();
        out.to_vec()
    };
    // It learns many addresses from a node started with a long seed list.
    let many = (0..60).map(|i| addr(10 + i).to_string()).collect();
    core.handle_datagram(1, addr(9), &introduce(addr(9).to_string(), many));
    while core.poll_transmit().is_some() {}
    // A short introduction gets a short answer.
    let short = introduce(addr(8).to_string(), Vec::new());
    core.handle_datagram(2, addr(8), &short);
    let answers: Vec<Transmit> = std::iter::from_fn(|| core.poll_transmit()).collect();
    assert!(!answers.is_empty(), "the introduction was answered");
    for answer in answers {
        assert!(
            answer.bytes.len() <= short.len(),
            "{} bytes answered {} bytes",
            answer.bytes.len(),
            short.len()
        );
    }
}

fn set(key: &str, value: &str) -> Command {
    Command::Set {
        key: key.into(),
        value: value.into(),
    }
}

fn tag(session: u64, seq: u64, floor: u64) -> WriteTag {
    WriteTag {
        session,
        seq,
        floor,
    }
}

/// A three-node cluster whose leader is node 0, with session 0xabc open.
fn cluster_with_session(sessions_max: u32) -> Net {
    let mut net = Net::three_node_cluster();
    assert_eq!(net.leaders(), vec![0]);
    net.nodes[0].as_mut().unwrap().cfg.sessions_max = sessions_max;
    net.command(0, 1, Command::OpenSession { id: 0xabc });
    net.run(200);
    assert!(matches!(net.done.get(&1), Some(Ok(_))), "{:?}", net.done);
    net
}

#[test]
fn dissertation_6_3_a_resent_write_applies_once_and_gets_its_first_answer() {
    let mut net = cluster_with_session(16);
    net.session_write(0, 2, set("k", "1"), tag(0xabc, 1, 1));
    net.run(200);
    let Some(Ok(first)) = net.done.get(&2).cloned() else {
        panic!("{:?}", net.done);
    };
    // Another client's newer write of the same key.
    net.command(0, 3, set("k", "2"));
    net.run(200);
    let version = net.core(0).commit();
    // The first client, unsure of its outcome, sends it again: through a
    // follower (which redirects) and to the leader.
    net.session_write(1, 4, set("k", "1"), tag(0xabc, 1, 1));
    net.session_write(0, 5, set("k", "1"), tag(0xabc, 1, 1));
    net.run(200);
    assert!(matches!(
        net.done.get(&4),
        Some(Err(RequestError::NotLeader { .. }))
    ));
    assert_eq!(net.done.get(&5), Some(&Ok(first)));
    for i in 0..3 {
        assert_eq!(net.core(i).map().get("k").map(String::as_str), Some("2"));
        assert_eq!(net.core(i).commit(), version, "nothing new in the log");
    }
}

#[test]
fn dissertation_6_3_copies_of_one_request_in_the_log_apply_once() {
    let mut net = cluster_with_session(16);
    // Both copies enter the log before either commits (a resend after a
    // lost answer, while the first is still on its way).
    net.session_write(0, 2, set("k", "1"), tag(0xabc, 1, 1));
    net.session_write(0, 3, set("k", "1"), tag(0xabc, 1, 1));
    net.command(0, 4, set("k", "2"));
    net.session_write(0, 5, set("k", "1"), tag(0xabc, 1, 1));
    net.run(300);
    let first = net.done.get(&2).cloned();
    assert!(matches!(first, Some(Ok(_))), "{:?}", net.done);
    assert_eq!(net.done.get(&3).cloned(), first, "the same answer");
    assert_eq!(net.done.get(&5).cloned(), first, "the same answer");
    for i in 0..3 {
        assert_eq!(net.core(i).map().get("k").map(String::as_str), Some("2"));
    }
}

#[test]
fn a_write_of_a_closed_session_or_below_its_floor_applies_nothing() {
    let mut net = cluster_with_session(1);
    net.session_write(0, 2, set("a", "1"), tag(0xabc, 1, 1));
    net.session_write(0, 3, set("a", "2"), tag(0xabc, 2, 2));
    net.run(200);
    assert!(matches!(net.done.get(&3), Some(Ok(_))));
    // Below the floor the client sent: forgotten.
    net.session_write(0, 4, set("a", "1"), tag(0xabc, 1, 1));
    net.run(200);
    assert_eq!(net.done.get(&4), Some(&Err(RequestError::SessionExpired)));
    // A second session closes the first (the table holds one).
    net.command(0, 5, Command::OpenSession { id: 0xdef });
    net.run(200);
    net.session_write(0, 6, set("a", "3"), tag(0xabc, 3, 3));
    net.run(200);
    assert_eq!(net.done.get(&6), Some(&Err(RequestError::SessionExpired)));
    // A session never opened is as closed.
    net.session_write(0, 7, set("a", "4"), tag(0x999, 1, 1));
    net.run(200);
    assert_eq!(net.done.get(&7), Some(&Err(RequestError::SessionExpired)));
    assert_eq!(net.core(0).sessions_open(), 1);
    for i in 0..3 {
        assert_eq!(net.core(i).map().get("a").map(String::as_str), Some("2"));
    }
}

#[test]
fn the_session_table_travels_in_snapshots() {
    let mut net = cluster_with_session(16);
    net.session_write(0, 2, set("k", "1"), tag(0xabc, 1, 1));
    net.run(200);
    let Some(Ok(first)) = net.done.get(&2).cloned() else {
        panic!("{:?}", net.done);
    };
    let snapshot = net.core(0).snapshot();
    assert_eq!(snapshot.sessions.len(), 1);
    let prepared = PreparedSnapshot::new(snapshot);
    assert_eq!(
        prepared.state.sessions.reply(&tag(0xabc, 1, 1)),
        Some(first)
    );
}

#[test]
fn an_update_after_a_session_write_in_the_tail_still_makes_the_map_exact() {
    let mut net = cluster_with_session(16);
    // All in the log before any commits: the session write sets k to 1, a
    // plain write sets it back to 0, and a resend of the session write,
    // which will apply as nothing, says 1 again. The update must not take
    // the tail's last word for k.
    net.session_write(0, 2, set("k", "1"), tag(0xabc, 1, 1));
    net.command(0, 3, set("k", "0"));
    net.session_write(0, 4, set("k", "1"), tag(0xabc, 1, 1));
    let mut wanted = Map::new();
    wanted.insert("k".into(), "1".into());
    wanted.insert("other".into(), "x".into());
    net.command(
        0,
        5,
        Command::Update {
            map: wanted.clone(),
        },
    );
    net.run(300);
    assert_eq!(net.done.get(&4).cloned(), net.done.get(&2).cloned());
    assert!(matches!(net.done.get(&5), Some(Ok(_))), "{:?}", net.done);
    for i in 0..3 {
        assert_eq!(net.core(i).map(), &wanted);
    }
}

// ----- limits on the state's size and the change tail -----

fn set_bytes(key: &str, value_bytes: usize) -> Command {
    Command::Set {
        key: key.into(),
        value: "v".repeat(value_bytes),
    }
}

#[test]
fn a_write_that_would_take_the_map_above_state_bytes_max_is_refused_and_changes_nothing() {
    let mut net = Net::three_node_cluster();
    let leader = net.leaders()[0];
    net.nodes[leader].as_mut().unwrap().cfg.state_bytes_max = 1000;
    net.command(leader, 1, set_bytes("a", 400));
    net.run(200);
    assert!(matches!(net.done.get(&1), Some(Ok(_))), "{:?}", net.done);
    // Nothing commits while the followers are cut off: the next writes are
    // checked against the committed map plus the uncommitted ones.
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    net.cut.extend(&followers);
    net.command(leader, 2, set_bytes("b", 400));
    assert!(!net.done.contains_key(&2), "accepted, not committed");
    let last = net.core(leader).last_log_id();
    net.command(leader, 3, set_bytes("c", 400));
    match net.done.get(&3) {
        Some(Err(RequestError::StateFull { bytes, limit: 1000 })) => {
            assert!(*bytes > 1000, "{bytes}")
        }
        other => panic!("expected StateFull, got {other:?}"),
    }
    assert_eq!(
        net.core(leader).last_log_id(),
        last,
        "nothing entered the log"
    );
    // Overwriting a value with one no larger still passes, even once the
    // limit is lowered below the map.
    net.nodes[leader].as_mut().unwrap().cfg.state_bytes_max = 500;
    net.command(leader, 4, set_bytes("a", 300));
    assert!(!net.done.contains_key(&4), "accepted");
    net.command(leader, 5, set_bytes("a", 301));
    assert!(matches!(
        net.done.get(&5),
        Some(Err(RequestError::StateFull { .. }))
    ));
    net.cut.clear();
    net.run(500);
    assert!(matches!(net.done.get(&2), Some(Ok(_))), "{:?}", net.done);
    assert!(matches!(net.done.get(&4), Some(Ok(_))), "{:?}", net.done);
    for i in 0..3 {
        let map = net.core(i).map();
        assert_eq!(map.get("a").map(String::len), Some(300), "node {i}");
        assert_eq!(map.get("b").map(String::len), Some(400), "node {i}");
        assert!(map.get("c").is_none(), "node {i}");
    }
}

#[test]
fn a_follower_behind_a_tail_bounded_in_bytes_catches_up_by_snapshot() {
    let mut net = Net::three_node_cluster();
    let leader = net.leaders()[0];
    let lagging = (0..3).find(|i| *i != leader).unwrap();
    // Room for about three of the changes below, whatever their count.
    net.nodes[leader].as_mut().unwrap().cfg.log_tail_bytes_max = 3500;
    net.cut.push(lagging);
    for i in 0..10 {
        net.command(leader, 10 + i, set_bytes(&format!("k{i}"), 1000));
        net.run(100);
    }
    let core = net.core(leader);
    assert!(core.commit() >= 10);
    assert!(
        core.log_base().version >= core.commit() - 3,
        "at most three committed changes kept: base {:?}, commit {}",
        core.log_base(),
        core.commit()
    );
    assert!(core.log_base().version > net.core(lagging).last_log_id().version);
    let installed = net.core(lagging).metrics().snapshots_installed;
    net.cut.clear();
    net.run(2000);
    let follower = net.core(lagging);
    assert_eq!(follower.metrics().snapshots_installed, installed + 1);
    assert_eq!(follower.map(), net.core(leader).map());
    assert_eq!(follower.map().len(), 10);
}

mod apply_slices;
mod join;
mod prepared_update;
mod terms;

fn append_frame(term: u64, entries: Vec<Entry>) -> Vec<u8> {
    let frame = Frame::new(
        0,
        NodeId(1),
        term,
        Message::Append(crate::wire::Append {
            prev: LogId {
                term: 2,
                version: 4,
            },
            commit: 3,
            seq: 1,
            entries,
        }),
    )
    .with_generation(Some(7));
    let mut out = BytesMut::new();
    frame.encode(&mut out, 1400).unwrap();
    out.to_vec()
}

#[test]
fn raft_5_3_an_append_whose_terms_decrease_or_pass_the_leaders_is_dropped() {
    let mut core = restored_voter(3, None);
    let entry = |term| Entry {
        term,
        change: crate::wire::Change::Set {
            key: "k".into(),
            value: term.to_string(),
        },
    };
    for entries in [vec![entry(3), entry(2)], vec![entry(4)], vec![entry(1)]] {
        core.handle_datagram(10, addr(1), &append_frame(3, entries));
        while core.poll_transmit().is_some() {}
    }
    assert_eq!(core.metrics().dropped_malformed_append, 3);
    assert_eq!(core.last_log_id().version, 4, "nothing taken");
    core.handle_datagram(20, addr(1), &append_frame(3, vec![entry(2), entry(3)]));
    assert_eq!(core.metrics().dropped_malformed_append, 3);
    assert_eq!(core.last_log_id().version, 6, "a leader's append is taken");
}
