//! `demo`: a cluster in this process on loopback, narrated one line per
//! step. Every wait is on a condition with a deadline; a step that does not
//! happen in time ends the demo with its reason.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use simple_raft::{Config, Node, SharedMap, State, Status};
use tokio::sync::mpsc;

use super::run::init_logging;
use super::{println, runtime, Failure, LogFormat, Outcome};

const HEARTBEAT_MS: u64 = 50;
const LEADER_TIMEOUT_MS: u64 = 300;
const ELECTION_TIMEOUT_MS: u64 = 300;
const MEMBER_SILENCE_MS: u64 = 2_000;
/// The longest any one step may take.
const STEP_WAIT: Duration = Duration::from_secs(5);

pub fn run(nodes: usize) -> Outcome {
    // The narration is the output; library logs only when RUST_LOG asks.
    init_logging(LogFormat::Text, "off");
    runtime(true)?.block_on(Demo::new().play(nodes))
}

fn config(join: Vec<SocketAddr>) -> Config {
    let mut config = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), join);
    config.heartbeat_ms = HEARTBEAT_MS;
    config.leader_timeout_ms = LEADER_TIMEOUT_MS;
    config.election_timeout_ms = ELECTION_TIMEOUT_MS;
    config.member_silence_ms = Some(MEMBER_SILENCE_MS);
    config
}

/// One node of the demo, numbered from 1 in the order started.
struct Slot {
    number: usize,
    addr: SocketAddr,
    /// `None` once crashed.
    node: Option<Node>,
}

impl Slot {
    fn name(&self) -> String {
        format!("node {}", self.number)
    }

    fn node(&self) -> Result<&Node, Failure> {
        self.node
            .as_ref()
            .ok_or_else(|| Failure::op(format!("{} has crashed", self.name())))
    }
}

struct Demo {
    start: Instant,
    slots: Vec<Slot>,
}

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

fn show_map(map: &SharedMap) -> String {
    let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn fail(message: String) -> Failure {
    Failure::op(format!("demo failed: {message}"))
}

impl Demo {
    fn new() -> Demo {
        Demo {
            start: Instant::now(),
            slots: Vec::new(),
        }
    }

    /// Prints one narration line, stamped with the time since the start.
    fn say(&self, line: &str) -> Outcome {
        let elapsed = self.start.elapsed().as_secs_f64();
        println(&format!("[{elapsed:6.2}s] {line}"))
    }

    fn live(&self) -> impl Iterator<Item = (&Slot, &Node)> {
        self.slots
            .iter()
            .filter_map(|slot| slot.node.as_ref().map(|node| (slot, node)))
    }

    fn slot_of(&self, addr: SocketAddr) -> Result<&Slot, Failure> {
        self.slots
            .iter()
            .find(|slot| slot.addr == addr)
            .ok_or_else(|| fail(format!("{addr} is not a node of the demo")))
    }

    /// The live node that leads, if exactly one does.
    fn leader(&self) -> Result<&Slot, Failure> {
        let leaders: Vec<&Slot> = self
            .live()
            .filter(|(_, node)| node.state() == State::Leader)
            .map(|(slot, _)| slot)
            .collect();
        match leaders[..] {
            [one] => Ok(one),
            _ => Err(fail(format!("{} leaders instead of one", leaders.len()))),
        }
    }

    /// A live node that does not lead.
    fn follower(&self) -> Result<&Slot, Failure> {
        self.live()
            .find(|(_, node)| node.state() != State::Leader)
            .map(|(slot, _)| slot)
            .ok_or_else(|| fail("no follower".to_string()))
    }

    async fn start_node(&mut self, join: Vec<SocketAddr>) -> Result<usize, Failure> {
        let node = Node::start(config(join))
            .await
            .map_err(|e| fail(format!("a node could not start: {e}")))?;
        let number = self.slots.len() + 1;
        self.slots.push(Slot {
            number,
            addr: node.addr(),
            node: Some(node),
        });
        Ok(number - 1)
    }

    /// Waits until `ready` holds for slot `index`'s status.
    async fn wait_status(
        &self,
        index: usize,
        what: &str,
        ready: impl Fn(&Status) -> bool,
    ) -> Result<Status, Failure> {
        let slot = &self.slots[index];
        slot.node()?.wait_for(STEP_WAIT, ready).await.map_err(|e| {
            fail(format!(
                "{} did not {what} within {} s: {e}",
                slot.name(),
                STEP_WAIT.as_secs()
            ))
        })
    }

    /// Waits until every live node has committed `version` and holds the
    /// same map; returns that map.
    async fn wait_converged(&self, version: u64) -> Result<SharedMap, Failure> {
        let deadline = Instant::now() + STEP_WAIT;
        loop {
            let mut maps = Vec::new();
            for (slot, node) in self.live() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                node.wait_for(remaining, |s| s.version >= version)
                    .await
                    .map_err(|e| {
                        fail(format!(
                            "{} did not reach version {version}: {e}",
                            slot.name()
                        ))
                    })?;
                let data = node
                    .data()
                    .await
                    .map_err(|e| fail(format!("{}: {e}", slot.name())))?;
                maps.push(data);
            }
            if maps.windows(2).all(|pair| pair[0] == pair[1]) {
                return Ok(maps.pop().unwrap_or_default());
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "the nodes' maps still differ after {} s",
                    STEP_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn play(mut self, count: usize) -> Outcome {
        self.say(&format!(
            "starting {count} nodes on 127.0.0.1: heartbeat {HEARTBEAT_MS} ms, leader timeout \
             {LEADER_TIMEOUT_MS}-{} ms (randomised), election timeout {ELECTION_TIMEOUT_MS} ms",
            LEADER_TIMEOUT_MS * 3 / 2
        ))?;
        self.form_cluster(count).await?;
        self.write_through_follower().await?;
        self.crash_leader().await?;
        self.join_and_catch_up().await?;
        self.remove_silent_member().await?;
        let version = self.leader()?.node()?.status().version;
        self.wait_converged(version).await?;
        self.table().await?;
        let took = self.start.elapsed().as_secs_f64();
        // The nodes stop when the demo's runtime does.
        self.say(&format!("done in {took:.1} s"))
    }

    /// Node 1 founds the cluster and elects itself; the others join
    /// through it and are promoted to voters once caught up.
    async fn form_cluster(&mut self, count: usize) -> Outcome {
        let started = Instant::now();
        let first = self.start_node(Vec::new()).await?;
        let founder = self.slots[first].addr;
        self.say(&format!(
            "node 1 listens on {founder} with nobody to join: it listens for a cluster that counts it as a member, then founds one"
        ))?;
        let status = self
            .wait_status(first, "win an election", |s| s.state == State::Leader)
            .await?;
        self.say(&format!(
            "node 1 elected itself leader of term {} in {} ms: after listening, and alone it is its own majority",
            status.term,
            ms(started.elapsed())
        ))?;
        for number in 2..=count {
            let started = Instant::now();
            let index = self.start_node(vec![founder]).await?;
            self.say(&format!(
                "node {number} listens on {} and joins through node 1",
                self.slots[index].addr
            ))?;
            let addr = self.slots[index].addr.to_string();
            let status = self
                .wait_status(index, "join as a voter", |s| {
                    s.members.len() == number && s.members.iter().any(|m| m.addr == addr && m.voter)
                })
                .await?;
            let id = status
                .id
                .map_or_else(|| "?".to_string(), |id| id.to_string());
            self.say(&format!(
                "node {number} is member {id}: caught up and promoted to voter in {} ms",
                ms(started.elapsed())
            ))?;
        }
        let leader = self.leader()?;
        let (leader_name, leader_addr) = (leader.name(), leader.addr);
        let leader_term = leader.node()?.status().term;
        for index in 0..self.slots.len() {
            self.wait_status(index, "agree on the leader", |s| {
                s.leader == Some(leader_addr) && s.term == leader_term
            })
            .await?;
        }
        self.say(&format!(
            "all {count} nodes agree: the leader is {leader_name} ({leader_addr}), term \
             {leader_term}, {count} voters (a majority is {})",
            count / 2 + 1
        ))
    }

    /// Writes through a follower are forwarded to the leader and return
    /// once a majority has them.
    async fn write_through_follower(&mut self) -> Outcome {
        let slot = self.follower()?;
        let (name, node) = (slot.name(), slot.node()?);
        for (key, value) in [("color", "blue"), ("size", "large"), ("owner", "alice")] {
            let started = Instant::now();
            let version = node
                .set(key, value)
                .await
                .map_err(|e| fail(format!("set {key} through {name}: {e}")))?;
            self.say(&format!(
                "{name} (a follower) sets {key}={value}: forwarded to the leader, committed at \
                 version {version} in {} ms",
                ms(started.elapsed())
            ))?;
        }
        let map: SharedMap = [("color", "green"), ("size", "large"), ("region", "eu")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let before = node
            .read_linearizable()
            .await
            .map_err(|e| fail(format!("read through {name}: {e}")))?;
        let set = map
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .count();
        let removed = before.keys().filter(|k| !map.contains_key(*k)).count();
        let started = Instant::now();
        let version = node
            .update(map.clone())
            .await
            .map_err(|e| fail(format!("update through {name}: {e}")))?;
        self.say(&format!(
            "{name} replaces the whole map with {}: committed at version {version} in {} ms \
             (replicated as the difference: {set} set, {removed} removed)",
            show_map(&map),
            ms(started.elapsed())
        ))?;
        let converged = self.wait_converged(version).await?;
        if converged != map {
            return Err(fail(format!(
                "the nodes hold {} instead of {}",
                show_map(&converged),
                show_map(&map)
            )));
        }
        self.say(&format!(
            "every node holds {} at version {version}",
            show_map(&converged)
        ))
    }

    /// The leader crashes without handing over; a survivor takes over
    /// after the leader timeout and an election.
    async fn crash_leader(&mut self) -> Outcome {
        let index = self
            .slots
            .iter()
            .position(|slot| slot.node.as_ref().map(Node::state) == Some(State::Leader))
            .ok_or_else(|| fail("no leader to crash".to_string()))?;
        let old_term = self.slots[index].node()?.status().term;
        // Every survivor reports the moment it wins, so the first report
        // times the failover.
        let (won_tx, mut won_rx) = mpsc::channel(self.slots.len());
        let mut watchers = Vec::new();
        for (_, node) in self.live().filter(|(slot, _)| slot.number != index + 1) {
            let mut status = node.subscribe();
            let won_tx = won_tx.clone();
            watchers.push(tokio::spawn(async move {
                let won = status
                    .wait_for(|s| s.state == State::Leader && s.term > old_term)
                    .await
                    .map(|s| (s.addr, s.term));
                if let Ok((addr, term)) = won {
                    let _ = won_tx.send((addr, term, Instant::now())).await;
                }
            }));
        }
        drop(won_tx);
        let crashed = self.slots[index].name();
        let node = self.slots[index].node.take();
        let aborted_at = Instant::now();
        if let Some(node) = node {
            node.abort();
        }
        self.say(&format!(
            "{crashed}, the leader, crashes (aborted: no hand-over, no goodbye)"
        ))?;
        let won = tokio::time::timeout(STEP_WAIT, won_rx.recv()).await;
        for watcher in watchers {
            watcher.abort();
        }
        let (addr, term, at) = match won {
            Ok(Some(won)) => won,
            _ => {
                return Err(fail(format!(
                    "no survivor became leader within {} s of the crash",
                    STEP_WAIT.as_secs()
                )))
            }
        };
        let name = self.slot_of(addr)?.name();
        self.say(&format!(
            "failover: {name} ({addr}) is the new leader in term {term}, {} ms after the crash",
            ms(at.saturating_duration_since(aborted_at))
        ))?;
        let slot = self.follower()?;
        let (name, node) = (slot.name(), slot.node()?);
        let started = Instant::now();
        let version = node
            .set("leader-crashed", "yes")
            .await
            .map_err(|e| fail(format!("write after the failover through {name}: {e}")))?;
        self.say(&format!(
            "{name} sets leader-crashed=yes: committed at version {version} in {} ms by the new \
             leader",
            ms(started.elapsed())
        ))
    }

    /// A new node joins through a follower (which points it to the
    /// leader) and catches up with a snapshot.
    async fn join_and_catch_up(&mut self) -> Outcome {
        let through = self.follower()?;
        let (through_name, through_addr) = (through.name(), through.addr);
        let started = Instant::now();
        let index = self.start_node(vec![through_addr]).await?;
        let name = self.slots[index].name();
        self.say(&format!(
            "{name} listens on {} and joins through {through_name}, a follower",
            self.slots[index].addr
        ))?;
        let deadline = Instant::now() + STEP_WAIT;
        let (version, size) = loop {
            let leader = self.leader()?.node()?;
            let target = leader.status().version;
            let want = leader
                .data()
                .await
                .map_err(|e| fail(format!("reading the leader's map: {e}")))?;
            let joiner = self.slots[index].node()?;
            let status = joiner.status();
            if status.id.is_some() && status.version >= target {
                let have = joiner
                    .data()
                    .await
                    .map_err(|e| fail(format!("reading {name}'s map: {e}")))?;
                if have == want {
                    break (status.version, have.len());
                }
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "{name} did not catch up within {} s (at version {}, the leader at {target})",
                    STEP_WAIT.as_secs(),
                    status.version
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        self.say(&format!(
            "{name} caught up: version {version}, the same {size} keys as the leader, {} ms after \
             it started",
            ms(started.elapsed())
        ))?;
        let addr = self.slots[index].addr.to_string();
        self.wait_status(index, "become a voter", |s| {
            s.members.iter().any(|m| m.addr == addr && m.voter)
        })
        .await?;
        self.say(&format!("{name} is promoted to voter"))
    }

    /// The crashed node stays a member until it has been silent for
    /// `member_silence_ms`; then the leader removes it.
    async fn remove_silent_member(&mut self) -> Outcome {
        let Some(crashed) = self.slots.iter().find(|slot| slot.node.is_none()) else {
            return Ok(());
        };
        let (name, addr) = (crashed.name(), crashed.addr.to_string());
        let leader = self.leader()?;
        let (leader_name, leader_node) = (leader.name(), leader.node()?);
        let wait = STEP_WAIT + Duration::from_millis(MEMBER_SILENCE_MS);
        let status = leader_node
            .wait_for(wait, |s| s.members.iter().all(|m| m.addr != addr))
            .await
            .map_err(|e| {
                fail(format!(
                    "{leader_name} did not remove the silent {name} within {} s: {e}",
                    wait.as_secs()
                ))
            })?;
        self.say(&format!(
            "{leader_name} removed {name} after {MEMBER_SILENCE_MS} ms of silence: {} members \
             remain",
            status.members.len()
        ))
    }

    /// Each node's address, role, term, version and map.
    async fn table(&self) -> Outcome {
        let mut lines = vec![format!(
            "{:<7} {:<21} {:<9} {:>4} {:>7} {:>4}  map",
            "node", "address", "state", "term", "version", "keys"
        )];
        for slot in &self.slots {
            let line = match &slot.node {
                None => format!(
                    "{:<7} {:<21} {:<9} {:>4} {:>7} {:>4}  -",
                    slot.name(),
                    slot.addr,
                    "crashed",
                    "-",
                    "-",
                    "-"
                ),
                Some(node) => {
                    let status = node.status();
                    let data = node
                        .data()
                        .await
                        .map_err(|e| fail(format!("reading {}'s map: {e}", slot.name())))?;
                    format!(
                        "{:<7} {:<21} {:<9} {:>4} {:>7} {:>4}  {}",
                        slot.name(),
                        slot.addr,
                        status.state.as_str(),
                        status.term,
                        status.version,
                        data.len(),
                        show_map(&data)
                    )
                }
            };
            lines.push(line);
        }
        self.say("final state:")?;
        for line in lines {
            println(&format!("          {line}"))?;
        }
        Ok(())
    }
}
