//! Kill cycles: a cluster of three `simple-raft run` processes on
//! 127.0.0.1 takes a steady stream of writes while its members are killed
//! with SIGKILL and restarted at the same address, one at a time, many
//! times over. Afterwards every write that was acknowledged must be on every
//! node, and all nodes must hold the same map at the same version.
//!
//! The default run is short. Longer soaks:
//!
//! ```sh
//! KILL_CYCLES=200 KILL_CYCLE_RUNS=5 cargo test --release --test kill_cycles -- --nocapture
//! KILL_CYCLE_CRASHES=20 cargo test --release --test kill_cycles a_whole_cluster -- --nocapture
//! KILL_CYCLE_SEED=1234 cargo test --release --test kill_cycles   # replay one seed's choices
//! ```
//!
//! A seed fixes the test's choices (which node dies, how long it stays
//! dead, which key each write goes to), not the processes' timing, so a
//! replay takes the same path through the cycles but not necessarily the
//! same interleaving. Every child process is killed when its guard drops;
//! every wait is a bounded poll on a condition; nothing asserts a timing.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use simple_raft::wire::{ClientOp, ClientReply};
use simple_raft::Client;

#[path = "../../tests/support/linearizability.rs"]
mod linearizability;
#[path = "support/process.rs"]
mod process;

use linearizability::{Call, History, Returned};

use process::{addr, cli, free_port, run_node, status, wait_until, Proc};

/// Kill cycles in the default run.
const CYCLES_DEFAULT: u64 = 20;
/// How long a cluster may take to be whole again after a restart. Longer
/// than the other process tests allow: a member that is replaced late is
/// removed as silent only after 30 s (the default `member_silence_ms`).
const RECOVERY: Duration = Duration::from_secs(45);
/// How long the load waits for one write. Longer than two of the node's
/// request timeouts (5 s each: the node written to, and the leader it
/// forwards to), so that the node gives its answer before the load gives
/// up on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(12);
/// After a write to a hot key that was not acknowledged, the load leaves
/// that key alone this long. The failed write may still be retried inside
/// the cluster and commit later (its outcome is unknown); once every node
/// has given up on it (see [`WRITE_TIMEOUT`]) it can no longer commit after
/// a newer write of the same key, which makes the final value checkable.
const HOT_KEY_QUARANTINE: Duration = Duration::from_secs(15);
/// Keys that are overwritten again and again.
const HOT_KEYS: usize = 4;
/// Pause between two writes of the load, to leave CPU to the nodes.
const WRITE_PAUSE: Duration = Duration::from_millis(5);

/// A number from the environment, or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// The seed of the first run: `KILL_CYCLE_SEED`, or the clock.
fn base_seed() -> u64 {
    env_number(
        "KILL_CYCLE_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64
            % 1_000_000_000,
    )
}

/// A directory for one test's logs (and data directories), removed when
/// the test passes and kept when it fails.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("kill-cycles")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        eprintln!("{name}: logs in {}", dir.display());
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Three `run` processes, each restartable at its own address; with
/// `durable`, each has its own data directory, kept across restarts.
struct Cluster {
    dir: PathBuf,
    ports: [u16; 3],
    nodes: [Option<Proc>; 3],
    /// Killed processes, kept so that their logs survive a failing test.
    dead: Vec<Proc>,
    /// How many times each node has been started.
    starts: [u32; 3],
    /// Restarts after a node could not bind its port.
    rebinds: u32,
    /// Crashes of every node at once so far.
    crashes: u32,
    durable: bool,
    /// The most members any node reported while the test waited: a dead
    /// incarnation stays a member until it is replaced or removed as
    /// silent, so the list may grow past three for a while.
    members_seen_max: Cell<usize>,
}

/// A cluster that is whole: one leader all agree on, the three current
/// processes as its only members, all voters.
#[derive(Debug, Clone, Copy)]
struct Whole {
    leader: usize,
    member_ids: [u64; 3],
    versions: [u64; 3],
}

impl Cluster {
    /// Starts three nodes: the first founds the cluster, the others join
    /// it; waits until the cluster is whole.
    fn start(dir: &Path, durable: bool) -> Cluster {
        let ports = [free_port(), free_port(), free_port()];
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            ports,
            nodes: [None, None, None],
            dead: Vec::new(),
            starts: [0; 3],
            rebinds: 0,
            crashes: 0,
            durable,
            members_seen_max: Cell::new(0),
        };
        cluster.spawn(0, &[]);
        cluster.spawn(1, &[ports[0]]);
        cluster.spawn(2, &[ports[0]]);
        cluster.wait_whole("the cluster to form", 0);
        cluster
    }

    fn addrs(&self) -> [String; 3] {
        self.ports.map(addr)
    }

    fn others(&self, i: usize) -> Vec<u16> {
        (0..3).filter(|j| *j != i).map(|j| self.ports[j]).collect()
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("data-n{i}"))
    }

    /// Starts node `i`, joining through `join`.
    fn spawn(&mut self, i: usize, join: &[u16]) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        self.starts[i] += 1;
        let log = self.dir.join(format!("n{i}-start{}.log", self.starts[i]));
        let data_dir = self.data_dir(i);
        let data_dir = data_dir.to_str().expect("a UTF-8 path");
        let extra: Vec<&str> = if self.durable {
            vec!["--data-dir", data_dir]
        } else {
            Vec::new()
        };
        self.nodes[i] = Some(run_node(self.ports[i], join, &extra, log));
    }

    /// SIGKILL for node `i`; its guard is kept, with its log.
    fn kill(&mut self, i: usize) {
        let mut proc = self.nodes[i].take().expect("a running node to kill");
        proc.child.kill().expect("kill -9");
        proc.child.wait().expect("reap the killed node");
        self.dead.push(proc);
    }

    /// SIGKILL for all three nodes at once: every signal is sent before
    /// any process is reaped.
    fn kill_all(&mut self) {
        let mut procs: Vec<Proc> = self
            .nodes
            .iter_mut()
            .map(|n| n.take().expect("a running node"))
            .collect();
        for proc in &mut procs {
            proc.child.kill().expect("kill -9");
        }
        for mut proc in procs {
            proc.child.wait().expect("reap the killed node");
            self.dead.push(proc);
        }
    }

    /// Restarts node `i` with the command it was first started with, as an
    /// operator restarts a service: the founder with no `--join` (it must
    /// find the cluster it founded, never found another), the others
    /// joining through the founder's address.
    fn restart(&mut self, i: usize) {
        let join: Vec<u16> = if i == 0 {
            Vec::new()
        } else {
            vec![self.ports[0]]
        };
        self.spawn(i, &join);
    }

    /// Panics if a node that should run has exited on its own, except
    /// when it could not bind its port (another program on the machine
    /// holds it for a moment): then it is started again, a few times.
    fn assert_running(&mut self) {
        for i in 0..3 {
            let Some(proc) = &mut self.nodes[i] else {
                continue;
            };
            let Some(status) = proc.child.try_wait().expect("try_wait") else {
                continue;
            };
            let log = proc.log.clone().expect("a log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Address already in use") && self.rebinds < 10 {
                self.rebinds += 1;
                eprintln!(
                    "node {i}: port {} taken, starting it again ({})",
                    self.ports[i],
                    log.display()
                );
                let proc = self.nodes[i].take().expect("the exited node");
                self.dead.push(proc);
                thread::sleep(Duration::from_millis(200));
                self.restart(i);
                continue;
            }
            panic!(
                "node {i} ({}) exited by itself with {status}; its log: {}",
                addr(self.ports[i]),
                log.display()
            );
        }
    }

    /// Whether the statuses of the running nodes show a whole cluster with
    /// every version at least `min_version`.
    fn whole(&self, min_version: u64) -> Option<Whole> {
        let addrs = self.addrs();
        let statuses: Vec<Value> = self
            .ports
            .iter()
            .map(|p| status(*p))
            .collect::<Option<_>>()?;
        for status in &statuses {
            if let Some(members) = status["member_details"].as_array() {
                let most = self.members_seen_max.get().max(members.len());
                self.members_seen_max.set(most);
            }
        }
        let leaders: Vec<usize> = (0..3)
            .filter(|i| statuses[*i]["state"] == "leader")
            .collect();
        let [leader] = leaders[..] else {
            return None;
        };
        let mut member_ids = [0; 3];
        let mut versions = [0; 3];
        for (i, status) in statuses.iter().enumerate() {
            member_ids[i] = status["member_id"].as_u64()?;
            versions[i] = status["version"].as_u64()?;
            if status["leader"] != addrs[leader].as_str() || versions[i] < min_version {
                return None;
            }
        }
        // Each node sees exactly the three current incarnations, all
        // voters: a replaced incarnation is gone, a new one is promoted.
        let expected: BTreeSet<(String, u64)> =
            (0..3).map(|i| (addrs[i].clone(), member_ids[i])).collect();
        for status in &statuses {
            let details = status["member_details"].as_array()?;
            let seen: BTreeSet<(String, u64)> = details
                .iter()
                .map(|m| Some((m["addr"].as_str()?.to_string(), m["member_id"].as_u64()?)))
                .collect::<Option<_>>()?;
            if seen != expected || details.len() != 3 || details.iter().any(|m| m["voter"] != true)
            {
                return None;
            }
        }
        Some(Whole {
            leader,
            member_ids,
            versions,
        })
    }

    /// Waits (bounded by [`RECOVERY`]) until the cluster is whole with
    /// every version at least `min_version`.
    fn wait_whole(&mut self, what: &str, min_version: u64) -> Whole {
        let deadline = Instant::now() + RECOVERY;
        loop {
            self.assert_running();
            if let Some(whole) = self.whole(min_version) {
                return whole;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: statuses {:?}",
                self.ports.map(status)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// How often `line` appears in the logs of every process so far.
    fn logged(&self, line: &str) -> usize {
        self.dead
            .iter()
            .chain(self.nodes.iter().flatten())
            .map(|proc| proc.logged(line))
            .sum()
    }

    /// The highest version among the running nodes that answer.
    fn version_max(&self) -> u64 {
        (0..3)
            .filter(|i| self.nodes[*i].is_some())
            .filter_map(|i| status(self.ports[i])?["version"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// Waits until all nodes hold the same map at the same version, with
    /// no change while the maps were read; returns the map. Writes given up
    /// on by the load may still commit for a few seconds, hence the retry.
    fn agreed_map(&mut self) -> BTreeMap<String, String> {
        let deadline = Instant::now() + RECOVERY;
        let mut last = String::new();
        loop {
            self.assert_running();
            if let Some(map) = self.agreed_map_once(&mut last) {
                return map;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes never agreed on one map: {last}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn agreed_map_once(&self, last: &mut String) -> Option<BTreeMap<String, String>> {
        let before = self.whole(0)?;
        let version = before.versions[0];
        if before.versions.iter().any(|v| *v != version) {
            *last = format!("versions {:?}", before.versions);
            return None;
        }
        let maps: Vec<BTreeMap<String, String>> = self
            .ports
            .iter()
            .map(|p| get_map(*p))
            .collect::<Option<_>>()?;
        let after = self.whole(0)?;
        if after.versions != before.versions {
            *last = format!(
                "versions moved from {:?} to {:?}",
                before.versions, after.versions
            );
            return None;
        }
        if maps.iter().any(|m| *m != maps[0]) {
            *last = format!(
                "at version {version} the maps differ: {}",
                describe_differences(&maps)
            );
            return None;
        }
        maps.into_iter().next()
    }
}

/// The keys on which the maps differ, with each node's value (a few).
fn describe_differences(maps: &[BTreeMap<String, String>]) -> String {
    let keys: BTreeSet<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| maps.iter().any(|m| m.get(*k) != maps[0].get(*k)))
        .map(|k| {
            let values: Vec<Option<&String>> = maps.iter().map(|m| m.get(k)).collect();
            format!("{k}: {values:?}")
        })
        .collect();
    format!(
        "sizes {:?}, {} keys differ, first: {:?}",
        maps.iter().map(BTreeMap::len).collect::<Vec<_>>(),
        differing.len(),
        &differing[..differing.len().min(10)]
    )
}

/// `get --json` (the whole map, a local read) of the node on `port`.
fn get_map(port: u16) -> Option<BTreeMap<String, String>> {
    let map = cli(&[
        "get",
        "--node",
        &addr(port),
        "--json",
        "--timeout-ms",
        "5000",
    ])
    .json()?;
    map.as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// One write the load sent, and what came of it.
#[derive(Debug, Clone)]
struct Attempt {
    /// The position of the write in the load (attempts of one write share it).
    op: u64,
    key: String,
    value: String,
    acked: bool,
    /// The version an acknowledged attempt returned.
    version: Option<u64>,
    /// When it was sent.
    started: Instant,
    /// When the answer (or the failure) came.
    done: Instant,
    /// The error, for an attempt that was not acknowledged.
    error: Option<String>,
}

/// A linearizable read of a hot key that returned.
#[derive(Debug, Clone)]
struct Read {
    key: String,
    value: Option<String>,
    started: Instant,
    done: Instant,
}

/// How long the load waits for a linearizable read (a read that gets no
/// answer tells nothing: it is not retried).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A thread writing sequentially through `simple_raft::Client`: mostly
/// new keys, every third write a hot key that is overwritten again and
/// again. A write that fails is tried at the next node.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    /// The highest version an acknowledged write returned.
    version: Arc<AtomicU64>,
    thread: Option<JoinHandle<(Vec<Attempt>, Vec<Read>)>>,
}

impl Load {
    fn start(ports: [u16; 3], seed: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let version = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = stop.clone();
            let acked = acked.clone();
            let version = version.clone();
            thread::spawn(move || write_load(ports, seed, &stop, &acked, &version))
        };
        Load {
            stop,
            acked,
            version,
            thread: Some(thread),
        }
    }

    /// The highest version an acknowledged write returned so far.
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Writes acknowledged so far.
    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until at least one more write is acknowledged.
    fn wait_for_progress(&self, what: &str) {
        let before = self.acked();
        wait_until(what, RECOVERY, || (self.acked() > before).then_some(()));
    }

    /// Stops the load; returns every attempt it made and the reads that
    /// returned.
    fn finish(mut self) -> (Vec<Attempt>, Vec<Read>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("a load thread")
            .join()
            .expect("the load thread panicked")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_load(
    ports: [u16; 3],
    seed: u64,
    stop: &AtomicBool,
    acked: &AtomicU64,
    version: &AtomicU64,
) -> (Vec<Attempt>, Vec<Read>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the load");
    let clients = ports.map(|port| {
        let addr: SocketAddr = addr(port).parse().expect("an address");
        Client::new(addr, 0).with_timeout(WRITE_TIMEOUT)
    });
    let readers = ports.map(|port| {
        let addr: SocketAddr = addr(port).parse().expect("an address");
        Client::new(addr, 0).with_timeout(READ_TIMEOUT)
    });
    let mut reads = Vec::new();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x10ad);
    let mut quarantined_until = [Instant::now(); HOT_KEYS];
    let mut attempts = Vec::new();
    let mut node = 0;
    let mut op = 0u64;
    // Bounded by the stop flag, and by a count no run comes near.
    while !stop.load(Ordering::SeqCst) && op < 10_000_000 {
        op += 1;
        let now = Instant::now();
        let hot = op
            .is_multiple_of(3)
            .then(|| rng.gen_range(0..HOT_KEYS))
            .filter(|h| quarantined_until[*h] <= now);
        let key = match hot {
            Some(h) => format!("hot{h}"),
            None => format!("key{op:08}"),
        };
        let value = format!("value{op}");
        // A new key is tried until acknowledged (every attempt writes the
        // same value); a hot key is tried once, then left alone a while.
        for _ in 0..100 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let write = clients[node].write(ClientOp::Set {
                key: key.clone(),
                value: value.clone(),
            });
            let started = Instant::now();
            let result = runtime.block_on(write);
            attempts.push(Attempt {
                op,
                key: key.clone(),
                value: value.clone(),
                acked: result.is_ok(),
                version: result.as_ref().ok().copied(),
                started,
                done: Instant::now(),
                error: result.as_ref().err().map(|e| format!("{} via {}", e, node)),
            });
            if let Ok(written) = result {
                version.fetch_max(written, Ordering::SeqCst);
                acked.fetch_add(1, Ordering::SeqCst);
                break;
            }
            node = (node + 1) % ports.len();
            thread::sleep(Duration::from_millis(50));
            if let Some(h) = hot {
                quarantined_until[h] = Instant::now() + HOT_KEY_QUARANTINE;
                break;
            }
        }
        // The next write goes to the next node: every path (leader,
        // follower forwarding to it) is taken.
        node = (node + 1) % ports.len();
        if hot.is_some() {
            // A linearizable read of the hot key, through another node.
            let started = Instant::now();
            let read = readers[node].request(ClientOp::Get {
                key: Some(key.clone()),
                linearizable: true,
            });
            if let Ok(ClientReply::Value { value, .. }) = runtime.block_on(read) {
                let done = Instant::now();
                reads.push(Read {
                    key,
                    value,
                    started,
                    done,
                });
            }
        }
        thread::sleep(WRITE_PAUSE);
    }
    (attempts, reads)
}

/// Checks that the load's history is linearizable: every write attempt (an
/// unacknowledged one has an unknown outcome), every linearizable read of
/// a hot key that returned, and at the end a read of every key from the
/// map all nodes agree on. Returns a summary.
fn check_linearizable(
    map: &BTreeMap<String, String>,
    attempts: &[Attempt],
    reads: &[Read],
) -> String {
    // (when, completion after invocation at a tie, which)
    let mut events: Vec<(Instant, bool, usize)> = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        events.push((a.started, false, i));
        events.push((a.done, true, i));
    }
    for (i, r) in reads.iter().enumerate() {
        events.push((r.started, false, attempts.len() + i));
        events.push((r.done, true, attempts.len() + i));
    }
    events.sort();
    let Some(&(zero, _, _)) = events.first() else {
        return "no operations".to_string();
    };
    let micros = |t: Instant| t.duration_since(zero).as_micros() as u64;
    let mut h = History::new("µs");
    let mut ids = vec![0; attempts.len() + reads.len()];
    for &(at, done, i) in &events {
        let t = micros(at);
        match (i.checked_sub(attempts.len()), done) {
            (None, false) => {
                let a = &attempts[i];
                let call = Call::Set {
                    key: a.key.clone(),
                    value: a.value.clone(),
                };
                ids[i] = h.invoke("load", call, t);
            }
            (None, true) if attempts[i].acked => h.ok(ids[i], t),
            (None, true) => h.unknown(ids[i], t),
            (Some(r), false) => {
                let call = Call::Get {
                    key: reads[r].key.clone(),
                };
                ids[i] = h.invoke("reader", call, t);
            }
            (Some(r), true) => h.read_ok(ids[i], t, Returned::Value(reads[r].value.clone())),
        }
    }
    let end = micros(events.last().expect("not empty").0) + 1;
    let keys: BTreeSet<&String> = attempts.iter().map(|a| &a.key).chain(map.keys()).collect();
    for key in keys {
        let id = h.invoke("final map", Call::Get { key: key.clone() }, end);
        h.read_ok(id, end, Returned::Value(map.get(key).cloned()));
    }
    match h.check() {
        Ok(report) => {
            assert!(
                report.exceeded.is_empty(),
                "the linearizability check stopped at its bound: {:?}",
                report.exceeded
            );
            format!(
                "{} operations checked linearizable ({} reads during the load)",
                report.checked,
                reads.len()
            )
        }
        Err(violation) => panic!("the client history is not linearizable: {violation}"),
    }
}

/// Checks the agreed final map against what the load did: every
/// acknowledged write of a new key is there with its value; a hot key holds
/// its last acknowledged value, or the value of an attempt made after it
/// that was not acknowledged (its outcome is unknown); nothing else is in
/// the map. Returns a summary.
fn check_history(map: &BTreeMap<String, String>, attempts: &[Attempt]) -> String {
    let mut by_key: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for attempt in attempts {
        by_key.entry(&attempt.key).or_default().push(attempt);
    }
    let mut problems = Vec::new();
    let mut late_unacked = 0;
    for (key, tries) in &by_key {
        let last_acked = tries.iter().rposition(|a| a.acked);
        let allowed: BTreeSet<&str> = match last_acked {
            Some(i) => tries[i..]
                .iter()
                .filter(|a| !a.acked || a.op == tries[i].op)
                .map(|a| a.value.as_str())
                .collect(),
            None => tries.iter().map(|a| a.value.as_str()).collect(),
        };
        match (map.get(*key), last_acked) {
            (None, Some(i)) => problems.push(format!(
                "{key}: acknowledged write of {:?} lost (attempts: {:?})",
                tries[i].value, tries
            )),
            (Some(value), _) if !allowed.contains(value.as_str()) => problems.push(format!(
                "{key} = {value:?}, expected one of {allowed:?} (attempts: {tries:?})"
            )),
            (Some(value), Some(i)) if *value != tries[i].value => late_unacked += 1,
            _ => {}
        }
    }
    for key in map.keys() {
        if !by_key.contains_key(key.as_str()) {
            problems.push(format!("{key} was never written"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in the final map of {} keys, first: {:#?}",
        problems.len(),
        map.len(),
        &problems[..problems.len().min(10)]
    );
    let acked = attempts.iter().filter(|a| a.acked).count();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for error in attempts.iter().filter_map(|a| a.error.as_deref()) {
        // The kind of error, without the address or the node it came from.
        let kind = error.split(": ").last().unwrap_or(error);
        let kind = kind.split(" via ").next().unwrap_or(kind);
        *errors.entry(kind.to_string()).or_default() += 1;
    }
    format!(
        "{acked} acknowledged writes of {} attempts, {} keys, {late_unacked} hot keys \
         ending on an unacknowledged later attempt; errors {errors:?}",
        attempts.len(),
        map.len()
    )
}

/// Every this many cycles, the killed node stays dead while a burst of
/// writes goes through the survivors.
const BURST_EVERY: u64 = 10;
/// Writes in a burst: more than the survivors keep as their log tail
/// (`log_tail_entries_max`, 1024 by default), so the dead node, even with
/// its data directory, can only catch up from a snapshot.
const BURST_WRITES: u64 = 1200;
/// Concurrent writers in a burst (a burst writes new keys only, so their
/// order does not matter).
const BURST_WRITERS: u64 = 16;
/// Padding of a burst's values: a few bursts take a node's log on disk
/// past the size at which it is compacted into a new image.
const BURST_VALUE_BYTES: usize = 1000;

/// Writes [`BURST_WRITES`] new keys `{tag}-N` through the nodes on `ports`,
/// [`BURST_WRITERS`] at a time, each tried until acknowledged (bounded);
/// returns every attempt.
fn burst(ports: &[u16], tag: &str) -> Vec<Attempt> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the burst");
    let clients: Arc<Vec<Client>> = Arc::new(
        ports
            .iter()
            .map(|port| {
                let addr: SocketAddr = addr(*port).parse().expect("an address");
                Client::new(addr, 0).with_timeout(WRITE_TIMEOUT)
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let padding = "x".repeat(BURST_VALUE_BYTES);
    runtime.block_on(async {
        let writers: Vec<_> = (0..BURST_WRITERS)
            .map(|w| {
                let (clients, next, padding) = (clients.clone(), next.clone(), padding.clone());
                let tag = tag.to_string();
                tokio::spawn(async move {
                    let mut attempts = Vec::new();
                    let mut node = w as usize;
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= BURST_WRITES {
                            return attempts;
                        }
                        let key = format!("{tag}-{n:05}");
                        let value = format!("{key}-{padding}");
                        for _ in 0..50 {
                            node = (node + 1) % clients.len();
                            let op = ClientOp::Set {
                                key: key.clone(),
                                value: value.clone(),
                            };
                            let started = Instant::now();
                            let result = clients[node].write(op).await;
                            attempts.push(Attempt {
                                op: 0,
                                key: key.clone(),
                                value: value.clone(),
                                acked: result.is_ok(),
                                version: result.as_ref().ok().copied(),
                                started,
                                done: Instant::now(),
                                error: result.as_ref().err().map(|e| format!("{e} via burst")),
                            });
                            if result.is_ok() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        let mut attempts = Vec::new();
        for writer in writers {
            attempts.extend(writer.await.expect("a burst writer"));
        }
        attempts
    })
}

/// What a run of kill cycles did.
#[derive(Debug, Default)]
struct Tally {
    cycles: u64,
    leaders_killed: u64,
    /// Cycles in which the dead node missed a burst of writes.
    bursts: u64,
    /// Cycles in which the restarted node was killed again at once.
    stutters: u64,
    /// The attempts of the bursts, to be checked with the load's.
    burst_attempts: Vec<Attempt>,
}

/// `cycles` times: SIGKILL a node (the leader half the time), wait a
/// little (every [`BURST_EVERY`] cycles: while a burst of writes goes
/// through the survivors), restart it at its address joining through the
/// others (sometimes killing and restarting it once more at once), wait
/// until the cluster is whole again with the restarted node caught up, and
/// until the load has a write acknowledged after that.
fn kill_cycles(cluster: &mut Cluster, load: &Load, cycles: u64, rng: &mut StdRng) -> Tally {
    let mut tally = Tally::default();
    let mut whole = cluster.wait_whole("the cluster before the first kill", 0);
    for cycle in 1..=cycles {
        let kill_leader = rng.gen_bool(0.5);
        let victim = if kill_leader {
            whole.leader
        } else {
            let followers: Vec<usize> = (0..3).filter(|i| *i != whole.leader).collect();
            followers[rng.gen_range(0..followers.len())]
        };
        let dead_for = Duration::from_millis(rng.gen_range(0..800));
        let acked_before = load.acked();
        cluster.kill(victim);
        thread::sleep(dead_for);
        let missed_burst = cycle % BURST_EVERY == BURST_EVERY / 2;
        if missed_burst {
            let attempts = burst(&cluster.others(victim), &format!("burst{cycle}"));
            let acked = attempts.iter().filter(|a| a.acked).count() as u64;
            assert_eq!(
                acked, BURST_WRITES,
                "cycle {cycle}: the survivors should take every write of the burst"
            );
            tally.burst_attempts.extend(attempts);
            tally.bursts += 1;
        }
        // The restarted node must reach at least what the survivors had.
        let reached = cluster.version_max();
        cluster.restart(victim);
        // Sometimes it is killed again while it starts or catches up (more
        // often after a burst: while it installs a large snapshot).
        let stutter = rng.gen_bool(if missed_burst { 0.5 } else { 0.2 }).then(|| {
            let after = Duration::from_millis(rng.gen_range(0..300));
            thread::sleep(after);
            cluster.kill(victim);
            thread::sleep(Duration::from_millis(rng.gen_range(0..200)));
            cluster.restart(victim);
            after
        });
        let what = format!("cycle {cycle}: the cluster whole after restarting node {victim}");
        let now = cluster.wait_whole(&what, reached);
        if cluster.durable {
            assert_eq!(
                now.member_ids[victim], whole.member_ids[victim],
                "cycle {cycle}: node {victim} restarted with its data directory \
                 should come back as the same member"
            );
        } else {
            assert_ne!(
                now.member_ids[victim], whole.member_ids[victim],
                "cycle {cycle}: node {victim} restarted without data should be a new member"
            );
        }
        load.wait_for_progress(&format!(
            "cycle {cycle}: a write acknowledged after recovery"
        ));
        eprintln!(
            "cycle {cycle}: killed node {victim} ({}) for {dead_for:?}{}{}, whole again: \
             leader node {}, versions {:?}, {} writes acknowledged during the cycle",
            if kill_leader { "leader" } else { "follower" },
            if missed_burst { " and a burst" } else { "" },
            stutter.map_or_else(String::new, |after| format!(
                ", killed again {after:?} after the restart"
            )),
            now.leader,
            now.versions,
            load.acked() - acked_before
        );
        tally.cycles += 1;
        tally.leaders_killed += u64::from(kill_leader);
        tally.stutters += u64::from(stutter.is_some());
        whole = now;
    }
    tally
}

/// Runs `KILL_CYCLE_RUNS` times (default once) `run(seed)` with a new
/// seed each time.
fn for_each_seed(name: &str, mut run: impl FnMut(u64)) {
    let runs = env_number("KILL_CYCLE_RUNS", 1);
    let base = base_seed();
    for r in 0..runs {
        let seed = base + r;
        eprintln!("{name}: run {}/{runs} with KILL_CYCLE_SEED={seed}", r + 1);
        run(seed);
    }
}

#[test]
fn acknowledged_writes_survive_repeated_kill_and_restart_of_single_nodes() {
    cycles_then_check("kill cycles", "no-data-dir", false);
}

/// One seeded run: a cluster under the load, `KILL_CYCLES` kill cycles,
/// with data directories a whole-cluster crash after them, then every
/// attempt checked against the map all nodes agree on.
fn cycles_then_check(name: &str, dir_name: &str, durable: bool) {
    for_each_seed(name, |seed| {
        let dir = TestDir::new(&format!("{dir_name}-{seed}"));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cluster = Cluster::start(&dir.0, durable);
        let load = Load::start(cluster.ports, seed);
        load.wait_for_progress("the first acknowledged write");
        let cycles = env_number("KILL_CYCLES", CYCLES_DEFAULT);
        let mut tally = kill_cycles(&mut cluster, &load, cycles, &mut rng);
        if durable {
            tally
                .burst_attempts
                .extend(crash_whole_cluster(&mut cluster, &load, &mut rng));
        }
        let (mut attempts, reads) = load.finish();
        attempts.append(&mut tally.burst_attempts);
        let map = cluster.agreed_map();
        let summary = check_history(&map, &attempts);
        let checked = check_linearizable(&map, &attempts, &reads);
        let then = if durable {
            " with data directories, then a whole-cluster crash"
        } else {
            ""
        };
        eprintln!(
            "seed {seed}: {} kill cycles ({} of the leader, {} missing a burst, {} killed again at once; {} snapshots \
             installed; at most {} members){then}: {summary}; {checked}",
            tally.cycles,
            tally.leaders_killed,
            tally.bursts,
            tally.stutters,
            cluster.logged("snapshot installed"),
            cluster.members_seen_max.get()
        );
    });
}

/// Kills all three nodes at once with SIGKILL while a burst of concurrent
/// writes is in flight besides the load, restarts them with their data
/// directories, and checks that they come back as the same members, at
/// least at the version of the last write acknowledged before the crash,
/// and take new writes. Half the time the restarted nodes are killed
/// again, all at once, while they are still recovering (reading their data
/// directories, electing, catching up), and restarted once more. Returns
/// the burst's attempts, to be checked with the load's.
fn crash_whole_cluster(cluster: &mut Cluster, load: &Load, rng: &mut StdRng) -> Vec<Attempt> {
    let before = cluster.wait_whole("the cluster before the crash", 0);
    let acked_before = load.acked();
    cluster.crashes += 1;
    let burst_writes = {
        let (ports, tag) = (cluster.ports, format!("crash{}", cluster.crashes));
        thread::spawn(move || burst(&ports, &tag))
    };
    thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
    let killed_at = Instant::now();
    cluster.kill_all();
    // Long enough, most of the time, for the load to see the cluster gone.
    let dead_for = Duration::from_millis(rng.gen_range(0..1500));
    thread::sleep(dead_for);
    // Whatever the load had acknowledged, it had acknowledged by now.
    let load_version = load.version();
    for i in 0..3 {
        cluster.restart(i);
    }
    let crashed_again = rng.gen_bool(0.5).then(|| {
        let after = Duration::from_millis(rng.gen_range(0..400));
        thread::sleep(after);
        cluster.kill_all();
        thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
        for i in 0..3 {
            cluster.restart(i);
        }
        after
    });
    let after = cluster.wait_whole("the cluster whole after the crash of every node", 0);
    assert_eq!(
        after.member_ids, before.member_ids,
        "every node should come back as the member it was"
    );
    let attempts = burst_writes.join().expect("the burst thread");
    let burst_acked = attempts
        .iter()
        .filter(|a| a.acked && a.done < killed_at)
        .count();
    let acked_version = attempts
        .iter()
        .filter(|a| a.done < killed_at)
        .filter_map(|a| a.version)
        .fold(load_version, u64::max);
    wait_until(
        &format!("every node back at version {acked_version} or later"),
        RECOVERY,
        || {
            let versions: Vec<u64> = cluster
                .ports
                .iter()
                .map(|p| status(*p)?["version"].as_u64())
                .collect::<Option<_>>()?;
            versions.iter().all(|v| *v >= acked_version).then_some(())
        },
    );
    load.wait_for_progress("a write acknowledged after the crash of every node");
    eprintln!(
        "whole-cluster crash after {acked_before} acknowledged writes of the load and \
         {burst_acked} of a burst (last at version {acked_version}), dead for {dead_for:?}{}: \
         back with leader node {}, versions {:?}",
        crashed_again.map_or_else(String::new, |after| format!(
            ", crashed again {after:?} after the restart"
        )),
        after.leader,
        after.versions
    );
    attempts
}

#[test]
fn with_data_directories_restarted_nodes_keep_their_identity_and_a_whole_cluster_crash_loses_nothing(
) {
    cycles_then_check("kill cycles with data directories", "data-dir", true);
}

/// Acknowledged writes before each crash of every node at once
/// (`KILL_CYCLE_CRASHES` crashes, default one).
const WRITES_BEFORE_CRASH: u64 = 300;

#[test]
fn a_whole_cluster_killed_at_once_comes_back_with_every_acknowledged_write() {
    for_each_seed("whole-cluster crash", |seed| {
        let dir = TestDir::new(&format!("whole-crash-{seed}"));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cluster = Cluster::start(&dir.0, true);
        let load = Load::start(cluster.ports, seed);
        let crashes = env_number("KILL_CYCLE_CRASHES", 1);
        let mut burst_attempts = Vec::new();
        for crash in 1..=crashes {
            let target = load.acked() + WRITES_BEFORE_CRASH;
            wait_until(
                &format!("{WRITES_BEFORE_CRASH} acknowledged writes before crash {crash}"),
                RECOVERY,
                || (load.acked() >= target).then_some(()),
            );
            // The load goes on: writes in flight at the crash are part of it.
            burst_attempts.extend(crash_whole_cluster(&mut cluster, &load, &mut rng));
        }
        let (mut attempts, reads) = load.finish();
        attempts.append(&mut burst_attempts);
        let map = cluster.agreed_map();
        let summary = check_history(&map, &attempts);
        let checked = check_linearizable(&map, &attempts, &reads);
        eprintln!("seed {seed}: {crashes} whole-cluster crashes: {summary}; {checked}");
    });
}
