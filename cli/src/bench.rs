//! `bench`: starts real clusters on loopback and measures where the library
//! stands: commit latency, throughput, failover, idle cost, catch-up of a
//! new node, and clusters of many nodes. Nodes are child processes of this
//! binary (`run`) by default, or threads of this process with
//! `--in-process`; the scale section always runs in process. With
//! `--durable` every node keeps a data directory of its own, under one
//! directory the bench creates in the system's temporary directory and
//! removes when it ends.
//!
//! Every child is killed and every node thread stopped when the section
//! that started it ends (their handles kill on drop), and on SIGINT or
//! SIGTERM; a node's data directory is removed once it has stopped. Every
//! wait has a deadline.

mod floor;
mod host;
mod largemap;
mod node;
mod report;
mod sample;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use simple_raft::{SharedMap, State};
use tokio::task::JoinSet;

use floor::{Floor, FSYNC_PROBES};
use host::{poll, Cluster, DataRoot, Launch, Member, Mode, Timing, Writer};
use report::{
    CatchUpRow, FailoverRow, Idle, IdleNode, LatencyRow, Report, ScaleRow, Section, Storage, Syncs,
    ThroughputRow, READ, WRITE,
};
use sample::{Latencies, Machine};

use super::run::init_logging;
use super::{print, runtime, Failure, LogFormat, Outcome};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Run the nodes as threads of this process (writes through
    /// `Node::set`) instead of `run` processes (writes through the TCP
    /// client).
    #[arg(long)]
    in_process: bool,
    /// Give every node a data directory of its own (every vote, ack and
    /// reply waits for an fsync), in a directory the bench creates in the
    /// system's temporary directory and removes at the end. A stopped
    /// leader is then restarted in the failover section.
    #[arg(long)]
    durable: bool,
    /// Fewer writes, kills and nodes and shorter windows: every figure in
    /// under two minutes.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Run only these sections.
    #[arg(long, value_name = "SECTION,...", value_delimiter = ',', value_enum)]
    only: Vec<SectionName>,
    /// Sequential writes per latency series [default: 10000; quick 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    writes: Option<u64>,
    /// Cluster sizes of the latency and throughput sections [default: 3,5;
    /// quick 3,5 and 3].
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u64).range(1..=15))]
    nodes: Vec<u64>,
    /// Seconds each throughput measurement lasts [default: 3; quick 1].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=600))]
    throughput_secs: Option<u64>,
    /// Leader kills per timing, and graceful leaves [default: 20; quick 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    kills: Option<u64>,
    /// Seconds of the idle window [default: 30; quick 5].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_secs: Option<u64>,
    /// Map sizes (keys of 100 bytes) a new node catches up [default:
    /// 100000].
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    catchup_keys: Vec<u64>,
    /// Cluster sizes of the scale section [default: 50,100; quick 20].
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u64).range(1..=250))]
    scale_nodes: Vec<u64>,
    /// Keys (of 100 bytes) of the large-map section's map [default:
    /// 100000; quick 10000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    largemap_keys: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// One node that reports its counters when asked on stdin (what the
    /// idle section runs in each process).
    #[command(hide = true)]
    Node(node::NodeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SectionName {
    Latency,
    Throughput,
    Failover,
    Idle,
    Catchup,
    Scale,
    Largemap,
}

/// What to run, from the flags.
#[derive(Debug, Clone)]
struct Plan {
    mode: Mode,
    /// Where the nodes' data directories go (`--durable`), or none.
    data: Option<Arc<DataRoot>>,
    quick: bool,
    sections: Vec<SectionName>,
    writes: usize,
    latency_nodes: Vec<usize>,
    throughput_nodes: Vec<usize>,
    writers: Vec<usize>,
    throughput_window: Duration,
    kills: usize,
    idle_window: Duration,
    idle_settle: Duration,
    catchup_keys: Vec<usize>,
    scale_nodes: Vec<usize>,
    scale_idle_window: Duration,
    scale_writes: usize,
    largemap_keys: usize,
    /// Updates timed per kind (derived, plain) in the large-map section.
    largemap_updates: usize,
    /// Sets timed in the large-map section.
    largemap_sets: usize,
}

impl Plan {
    fn new(args: &BenchArgs) -> Plan {
        let quick = args.quick;
        let pick = |given: Option<u64>, full: u64, fast: u64| {
            given.unwrap_or(if quick { fast } else { full }) as usize
        };
        let list = |given: &[u64], full: &[usize], fast: &[usize]| -> Vec<usize> {
            if !given.is_empty() {
                given.iter().map(|n| *n as usize).collect()
            } else if quick {
                fast.to_vec()
            } else {
                full.to_vec()
            }
        };
        let sections = if args.only.is_empty() {
            vec![
                SectionName::Latency,
                SectionName::Throughput,
                SectionName::Failover,
                SectionName::Idle,
                SectionName::Catchup,
                SectionName::Scale,
                SectionName::Largemap,
            ]
        } else {
            args.only.clone()
        };
        Plan {
            mode: if args.in_process {
                Mode::InProcess
            } else {
                Mode::Run
            },
            data: None,
            quick,
            sections,
            writes: pick(args.writes, 10_000, 1_000),
            latency_nodes: list(&args.nodes, &[3, 5], &[3, 5]),
            throughput_nodes: list(&args.nodes, &[3, 5], &[3]),
            writers: vec![1, 16, 64],
            throughput_window: Duration::from_secs(pick(args.throughput_secs, 3, 1) as u64),
            kills: pick(args.kills, 20, 5),
            idle_window: Duration::from_secs(pick(args.idle_secs, 30, 5) as u64),
            idle_settle: Duration::from_secs(if quick { 1 } else { 3 }),
            catchup_keys: list(&args.catchup_keys, &[100_000], &[100_000]),
            scale_nodes: list(&args.scale_nodes, &[50, 100], &[20]),
            scale_idle_window: Duration::from_secs(if quick { 2 } else { 10 }),
            scale_writes: if quick { 200 } else { 2_000 },
            largemap_keys: pick(args.largemap_keys, 100_000, 10_000),
            largemap_updates: if quick { 10 } else { 20 },
            largemap_sets: if quick { 200 } else { 1_000 },
        }
    }

    fn runs(&self, section: SectionName) -> bool {
        self.sections.contains(&section)
    }

    /// How the sections start their nodes.
    fn launch(&self) -> Launch {
        Launch {
            mode: self.mode,
            data: self.data.clone(),
        }
    }
}

/// A value of realistic size: a hash, an address with a port.
const VALUE: &str = "0123456789abcdef0123456789abcdef";
/// How long one write may take before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cluster may take to form.
const FORM_WAIT: Duration = Duration::from_secs(60);
/// How long after a leader stops a write may take to succeed again.
const FAILOVER_WAIT: Duration = Duration::from_secs(20);
/// Writes timed with a large map loaded.
const CATCH_UP_WRITES: usize = 1_000;
/// Transfers of a catch-up's bytes timed for its floor.
const TRANSFER_PROBES: usize = 5;
/// A failing series stops after this many failed writes.
const ERRORS_MAX: usize = 100;

pub fn run(args: BenchArgs) -> Outcome {
    if let Some(BenchCommand::Node(node_args)) = args.command {
        return node::run(node_args);
    }
    // Library logs of in-process nodes only when RUST_LOG asks.
    init_logging(LogFormat::Text, "off");
    let mut plan = Plan::new(&args);
    // Removed when the plan is dropped, whatever the outcome.
    if args.durable {
        plan.data = Some(Arc::new(DataRoot::create().map_err(Failure::op)?));
    }
    let command = std::iter::once("simple-raft".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let report = runtime(false)?.block_on(async {
        tokio::select! {
            report = bench(&plan, command) => Ok(report),
            signal = interrupted() => Err(Failure::op(format!(
                "bench interrupted by {signal}; its nodes were stopped"
            ))),
        }
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| Failure::op(format!("cannot encode the report: {e}")))?;
        print(&format!("{text}\n"))?;
    } else {
        print(&report.to_text())?;
    }
    match report.failed_sections().first() {
        None => Ok(()),
        Some((name, error)) => Err(Failure::op(format!("bench section {name} failed: {error}"))),
    }
}

/// Waits for SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            Err(_) => std::future::pending().await,
        }
    }
}

/// Prints one progress line on stderr (stdout carries the report).
fn progress(line: &str) {
    eprintln!("bench: {line}");
}

async fn bench(plan: &Plan, command: String) -> Report {
    let started = Instant::now();
    if let Some(root) = &plan.data {
        progress(&format!(
            "data directories in the system's temporary directory ({}); \
             timing {FSYNC_PROBES} appends with an fdatasync there",
            sample::filesystem_of(root.path())
                .as_deref()
                .unwrap_or("unknown file system")
        ));
    }
    let floor = measure_floor(plan, "start").await;
    let storage = plan.data.as_ref().map(|root| Storage {
        filesystem: sample::filesystem_of(root.path()),
        fsync: floor
            .as_ref()
            .and_then(|floor| floor.fsync.clone())
            .unwrap_or_default(),
    });
    let mut report = Report {
        date: sample::today_utc(),
        command,
        machine: Machine::probe(),
        in_process: plan.mode == Mode::InProcess,
        quick: plan.quick,
        storage,
        latency: None,
        throughput: None,
        failover: None,
        idle: None,
        catch_up: None,
        scale: None,
        large_map: None,
        floor,
        floor_end: None,
    };
    fn section<T>(name: &str, result: Result<T, String>) -> Section<T> {
        if let Err(error) = &result {
            progress(&format!("{name} failed: {error}"));
        }
        Some(result)
    }
    if plan.runs(SectionName::Latency) {
        report.latency = section("latency", latency(plan).await);
    }
    if plan.runs(SectionName::Throughput) {
        report.throughput = section("throughput", throughput(plan).await);
    }
    if plan.runs(SectionName::Failover) {
        report.failover = section("failover", failover(plan).await);
    }
    if plan.runs(SectionName::Idle) {
        report.idle = section("idle", idle(plan).await);
    }
    if plan.runs(SectionName::Catchup) {
        report.catch_up = section("catch-up", catch_up(plan).await);
    }
    if plan.runs(SectionName::Scale) {
        report.scale = section("scale", scale(plan).await);
    }
    if plan.runs(SectionName::Largemap) {
        report.large_map = section("largemap", largemap::run(plan).await);
    }
    report.floor_end = measure_floor(plan, "end").await;
    progress(&format!("done in {:.1} s", started.elapsed().as_secs_f64()));
    report
}

/// The floor probes (UDP and TCP round trips on loopback, and an fsync in
/// the data directories' parent with `--durable`), off the runtime's
/// threads: they block. None if a probe failed (the run goes on, without
/// ratios).
async fn measure_floor(plan: &Plan, when: &str) -> Option<Floor> {
    progress(&format!(
        "floor ({when} of the run): {} UDP and {} TCP round trips on loopback{}",
        floor::ROUND_TRIPS,
        floor::ROUND_TRIPS,
        if plan.data.is_some() {
            format!(", {FSYNC_PROBES} fdatasyncs")
        } else {
            String::new()
        }
    ));
    let dir = plan.data.as_ref().map(|root| root.path().to_owned());
    let in_process = plan.mode == Mode::InProcess;
    let measured =
        tokio::task::spawn_blocking(move || Floor::measure(dir.as_deref(), in_process)).await;
    match measured {
        Ok(Ok(floor)) => Some(floor),
        Ok(Err(error)) => {
            progress(&format!("floor not measured: {error}"));
            None
        }
        Err(error) => {
            progress(&format!("floor not measured: {error}"));
            None
        }
    }
}

fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}/{:04}", i % 1024)
}

/// `n` sequential writes through `writer`; the latency of each.
async fn sequential(writer: &Writer, prefix: &str, n: usize) -> Result<Latencies, String> {
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    for i in 0..n {
        let start = Instant::now();
        match writer
            .set(key(prefix, i), VALUE.to_string(), WRITE_TIMEOUT)
            .await
        {
            Ok(_) => latencies.push(start.elapsed()),
            Err(error) => {
                errors += 1;
                if errors >= ERRORS_MAX {
                    return Err(format!("{errors} writes failed, the last: {error}"));
                }
            }
        }
    }
    if errors > 0 {
        progress(&format!("{errors} of {n} writes failed and were left out"));
    }
    Ok(Latencies::new(latencies))
}

/// `n` sequential linearizable reads of one key through `writer`.
async fn sequential_reads(writer: &Writer, n: usize) -> Result<Latencies, String> {
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    for i in 0..n {
        let start = Instant::now();
        match writer
            .read_linearizable(key("latency", i), WRITE_TIMEOUT)
            .await
        {
            Ok(()) => latencies.push(start.elapsed()),
            Err(error) => {
                errors += 1;
                if errors >= ERRORS_MAX {
                    return Err(format!("{errors} reads failed, the last: {error}"));
                }
            }
        }
    }
    if errors > 0 {
        progress(&format!("{errors} of {n} reads failed and were left out"));
    }
    Ok(Latencies::new(latencies))
}

async fn latency(plan: &Plan) -> Result<Vec<LatencyRow>, String> {
    let mut rows = Vec::new();
    for &n in &plan.latency_nodes {
        progress(&format!(
            "latency: {n} nodes, {} writes each way",
            plan.writes
        ));
        let cluster = Cluster::form(&plan.launch(), n, Timing::DEFAULT, false, FORM_WAIT).await?;
        let agreed = cluster.agreed(FORM_WAIT).await?;
        let mut vias = vec![("leader", agreed.leader)];
        if let Some(follower) = cluster.others(agreed.leader).first() {
            vias.push(("follower", *follower));
        }
        for (via, index) in vias {
            let writer = cluster.members[index].writer();
            // Warm-up: connections, allocations, caches.
            sequential(&writer, "warm", 200.min(plan.writes)).await?;
            let latencies = sequential(&writer, "latency", plan.writes).await?;
            rows.push(LatencyRow {
                nodes: n,
                via,
                op: WRITE,
                latencies,
            });
        }
        // A linearizable read costs the leader one round of heartbeats to
        // confirm it still leads: the floor of a read, not of a write.
        let writer = cluster.members[agreed.leader].writer();
        let reads = sequential_reads(&writer, plan.writes).await?;
        rows.push(LatencyRow {
            nodes: n,
            via: "leader",
            op: READ,
            latencies: reads,
        });
    }
    Ok(rows)
}

async fn throughput(plan: &Plan) -> Result<Vec<ThroughputRow>, String> {
    let mut rows = Vec::new();
    for &n in &plan.throughput_nodes {
        let mut cluster =
            Cluster::form(&plan.launch(), n, Timing::DEFAULT, false, FORM_WAIT).await?;
        let agreed = cluster.agreed(FORM_WAIT).await?;
        let writer = cluster.members[agreed.leader].writer();
        for &writers in &plan.writers {
            progress(&format!(
                "throughput: {n} nodes, {writers} writers for {:.0} s",
                plan.throughput_window.as_secs_f64()
            ));
            let before = syncs_of(&mut cluster).await;
            let mut row = concurrent(&writer, n, writers, plan.throughput_window).await?;
            if let (Some(before), Some(after)) = (before, syncs_of(&mut cluster).await) {
                let delta = |i: usize| after[i].saturating_sub(before[i]);
                row.syncs = Some(Syncs {
                    leader: delta(agreed.leader),
                    followers: cluster
                        .others(agreed.leader)
                        .into_iter()
                        .map(delta)
                        .collect(),
                });
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The fsyncs of every member's data directory so far, when every member
/// reports them (in-process nodes with data directories do; `run`
/// processes do not).
async fn syncs_of(cluster: &mut Cluster) -> Option<Vec<u64>> {
    let mut syncs = Vec::new();
    for member in cluster.members.iter_mut() {
        syncs.push(member.counters().await.ok()?.syncs?);
    }
    Some(syncs)
}

/// `writers` tasks writing through `writer` back to back for `window`.
async fn concurrent(
    writer: &Writer,
    nodes: usize,
    writers: usize,
    window: Duration,
) -> Result<ThroughputRow, String> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let writer = writer.own();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut i = 0;
            while Instant::now() < deadline && errors < ERRORS_MAX {
                let begun = Instant::now();
                let key = format!("writer-{w}/{}", i % 16);
                match writer.set(key, VALUE.to_string(), WRITE_TIMEOUT).await {
                    Ok(_) => latencies.push(begun.elapsed()),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (more, failed) = joined.map_err(|e| format!("a writer task failed: {e}"))?;
        latencies.extend(more);
        errors += failed;
    }
    let elapsed = start.elapsed();
    if latencies.is_empty() {
        return Err(format!("no write committed ({errors} failed)"));
    }
    Ok(ThroughputRow {
        nodes,
        writers,
        window: elapsed,
        latencies: Latencies::new(latencies),
        errors,
        syncs: None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// kill -9 (a thread and runtime dropped at once, in process).
    Crash,
    /// The leader leaves: SIGTERM to `run`, or `Node::leave`.
    Leave,
}

async fn failover(plan: &Plan) -> Result<Vec<FailoverRow>, String> {
    let fast = Timing::DEFAULT.with_leader_timeout(250);
    let series = [
        (Timing::DEFAULT, Stop::Crash),
        (fast, Stop::Crash),
        (Timing::DEFAULT, Stop::Leave),
    ];
    let mut rows = Vec::new();
    for (timing, stop) in series {
        let kind = match stop {
            Stop::Crash => "crash",
            Stop::Leave => "graceful",
        };
        progress(&format!(
            "failover: {} x {kind} of the leader, {} timing",
            plan.kills,
            timing.label()
        ));
        let mut samples = Vec::new();
        let mut backs = Vec::new();
        let mut failed = 0;
        for _ in 0..plan.kills {
            match one_failover(&plan.launch(), timing, stop).await {
                Ok((took, back)) => {
                    samples.push(took);
                    backs.extend(back);
                }
                Err(error) => {
                    failed += 1;
                    progress(&format!("a {kind} run failed: {error}"));
                    if failed > plan.kills / 4 + 1 {
                        return Err(format!("{failed} {kind} runs failed, the last: {error}"));
                    }
                }
            }
        }
        rows.push(FailoverRow {
            timing,
            kind,
            samples: Latencies::new(samples),
            failed,
            back: plan.data.is_some().then(|| Latencies::new(backs)),
        });
    }
    Ok(rows)
}

/// A fresh 3-node cluster; the leader stops; the time until a write
/// through a survivor commits under a new leader (a write the old leader
/// still commits before it acts on its stop does not count). With data
/// directories the old leader is then restarted: the time until it is back
/// as the same member with every committed write.
async fn one_failover(
    launch: &Launch,
    timing: Timing,
    stop: Stop,
) -> Result<(Duration, Option<Duration>), String> {
    let mut cluster = Cluster::form(launch, 3, timing, false, FORM_WAIT).await?;
    let agreed = cluster.agreed(FORM_WAIT).await?;
    let leader_id = cluster.members[agreed.leader].view().await?.id;
    // Followers have heard a few heartbeats; the stop falls at a random
    // point of the heartbeat interval.
    let phase = rand::random::<u64>() % timing.heartbeat_ms.max(1);
    tokio::time::sleep(Duration::from_millis(2 * timing.heartbeat_ms + phase)).await;
    let survivor = *cluster.others(agreed.leader).first().ok_or("no survivor")?;
    let (leader, survivor_member) = pair(&mut cluster.members, agreed.leader, survivor);
    let started = Instant::now();
    let took = match stop {
        Stop::Crash => {
            leader.crash();
            write_in_new_term(survivor_member, agreed.term, started).await?
        }
        Stop::Leave => {
            let (left, took) = tokio::join!(
                tokio::time::timeout(FAILOVER_WAIT, leader.leave()),
                write_in_new_term(survivor_member, agreed.term, started)
            );
            match left {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(format!("the leader could not leave: {error}")),
                Err(_) => return Err("the leader's leave did not end".into()),
            }
            let took = took?;
            if !leader.wait_exit(FAILOVER_WAIT).await {
                return Err("the leader's process did not exit after SIGTERM".into());
            }
            took
        }
    };
    if !leader.durable() {
        return Ok((took, None));
    }
    let id = leader_id.ok_or("the leader had no member id")?;
    let version = survivor_member.view().await?.version;
    let back = back_as_same_member(&mut cluster, agreed.leader, id, version).await?;
    Ok((took, Some(back)))
}

/// Restarts the stopped member `index` with its data directory; the time
/// until it is a voter again under its old `id`, the cluster agrees on one
/// leader with no member added, and it has committed `version`.
async fn back_as_same_member(
    cluster: &mut Cluster,
    index: usize,
    id: u32,
    version: u64,
) -> Result<Duration, String> {
    let started = Instant::now();
    cluster.members[index].restart().await?;
    let cluster = &*cluster;
    poll(
        FAILOVER_WAIT,
        cluster.poll_every(),
        "the restarted node to be back as the same member",
        async || {
            let view = cluster.members[index].view().await?;
            if view.id != Some(id) {
                return Err(format!("back as member {:?}, was {id}", view.id));
            }
            if !view.voter || view.version < version {
                return Err(format!(
                    "at version {} of {version}: {view:?}",
                    view.version
                ));
            }
            // Every member a voter, no member added, one leader.
            cluster.agreement().await.map(|_| ())
        },
    )
    .await?;
    Ok(started.elapsed())
}

/// Member `a` to change and member `b` to read, at once.
fn pair(members: &mut [Member], a: usize, b: usize) -> (&mut Member, &Member) {
    assert_ne!(a, b, "two different members");
    if a < b {
        let (left, right) = members.split_at_mut(b);
        (&mut left[a], &right[0])
    } else {
        let (left, right) = members.split_at_mut(a);
        (&mut right[0], &left[b])
    }
}

/// Writes through `member` until one commits while it sees a term after
/// `old_term`; the time since `started`.
async fn write_in_new_term(
    member: &Member,
    old_term: u64,
    started: Instant,
) -> Result<Duration, String> {
    let writer = member.writer();
    let deadline = started + FAILOVER_WAIT;
    let mut attempts = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no write committed in a new term within {} s ({attempts} attempts)",
                FAILOVER_WAIT.as_secs()
            ));
        }
        attempts += 1;
        let value = format!("attempt-{attempts}");
        match writer.set("failover".into(), value, left).await {
            Ok(_) => {
                let took = started.elapsed();
                if member.view().await.is_ok_and(|view| view.term > old_term) {
                    return Ok(took);
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Counters and CPU time of one node at one moment.
struct Reading {
    counters: host::Counters,
    ticks: u64,
}

async fn read_node(member: &mut Member) -> Result<Reading, String> {
    let counters = member.counters().await?;
    let path = member.stat_path().ok_or("no CPU time for this node")?;
    let ticks = sample::cpu_ticks(&path).ok_or_else(|| format!("cannot read {path}"))?;
    Ok(Reading { counters, ticks })
}

async fn idle(plan: &Plan) -> Result<Idle, String> {
    let timing = Timing::DEFAULT.with_heartbeat(100);
    let launch = plan.launch().as_mode(match plan.mode {
        Mode::InProcess => Mode::InProcess,
        _ => Mode::Metered,
    });
    let mode = launch.mode;
    progress(&format!(
        "idle: 3 nodes, {} ms heartbeat, {:.0} s window",
        timing.heartbeat_ms,
        plan.idle_window.as_secs_f64()
    ));
    let mut cluster = Cluster::form(&launch, 3, timing, false, FORM_WAIT).await?;
    let agreed = cluster.agreed(FORM_WAIT).await?;
    // Joins, snapshots and their connections settle first.
    tokio::time::sleep(plan.idle_settle).await;
    let ticks_per_s = sample::clock_ticks_per_s();
    let mut before = Vec::new();
    for member in cluster.members.iter_mut() {
        before.push(read_node(member).await?);
    }
    let started = Instant::now();
    tokio::time::sleep(plan.idle_window).await;
    let mut after = Vec::new();
    for member in cluster.members.iter_mut() {
        after.push(read_node(member).await?);
    }
    let window = started.elapsed();
    let still = cluster.agreed(Duration::from_secs(1)).await?;
    if still.leader != agreed.leader || still.term != agreed.term {
        return Err("the leader changed during the idle window".into());
    }
    let secs = window.as_secs_f64();
    let nodes = (0..cluster.members.len())
        .map(|i| {
            let (a, b) = (&before[i], &after[i]);
            let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
            IdleNode {
                role: if i == agreed.leader {
                    "leader"
                } else {
                    "follower"
                },
                datagrams_out_per_s: per_s(a.counters.frames_out, b.counters.frames_out),
                bytes_out_per_s: per_s(a.counters.bytes_out, b.counters.bytes_out),
                datagrams_in_per_s: per_s(a.counters.frames_in, b.counters.frames_in),
                bytes_in_per_s: per_s(a.counters.bytes_in, b.counters.bytes_in),
                cpu_percent: sample::cpu_percent(
                    b.ticks.saturating_sub(a.ticks),
                    ticks_per_s,
                    window,
                ),
                rss_peak_kb: cluster.members[i]
                    .pid()
                    .and_then(|pid| sample::status_kb(pid, "VmHWM")),
            }
        })
        .collect();
    Ok(Idle {
        timing,
        window,
        nodes,
        shared_rss_peak_kb: (mode == Mode::InProcess)
            .then(|| sample::status_kb(std::process::id(), "VmHWM"))
            .flatten(),
    })
}

/// A map of `keys` keys with 100-byte values, and its bytes.
fn big_map(keys: usize) -> (SharedMap, usize) {
    let map: SharedMap = (0..keys)
        .map(|i| (format!("key-{i:07}"), format!("{i:0100}")))
        .collect();
    let bytes = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    (map, bytes)
}

async fn catch_up(plan: &Plan) -> Result<Vec<CatchUpRow>, String> {
    let mut rows = Vec::new();
    for &keys in &plan.catchup_keys {
        let (map, bytes) = big_map(keys);
        progress(&format!(
            "catch-up: a new node joins a cluster holding {keys} keys ({:.1} MB)",
            bytes as f64 / 1e6
        ));
        let mut cluster =
            Cluster::form(&plan.launch(), 3, Timing::DEFAULT, false, FORM_WAIT).await?;
        let agreed = cluster.agreed(FORM_WAIT).await?;
        let started = Instant::now();
        let version = cluster.members[agreed.leader]
            .update(&map, Duration::from_secs(120))
            .await
            .map_err(|e| format!("loading the map: {e}"))?;
        let load = started.elapsed();
        cluster.converged(version, FORM_WAIT).await?;
        let through = *cluster.others(agreed.leader).first().ok_or("no follower")?;
        let through = cluster.members[through].addr();
        let every = match plan.mode {
            Mode::InProcess => Duration::from_millis(1),
            _ => Duration::from_millis(2),
        };

        let started = Instant::now();
        let joiner = Member::start(&plan.launch(), &[through], Timing::DEFAULT).await?;
        poll(
            FORM_WAIT,
            every,
            "the new node to catch up",
            async || match joiner.view().await {
                Ok(view) if view.version >= version => Ok(()),
                Ok(view) => Err(format!("at version {} of {version}", view.version)),
                Err(e) => Err(e),
            },
        )
        .await?;
        let caught_up = started.elapsed();
        poll(
            FORM_WAIT,
            every,
            "the new node to become a voter",
            async || match joiner.view().await? {
                view if view.voter => Ok(()),
                view => Err(format!("still {view:?}")),
            },
        )
        .await?;
        let voter = started.elapsed();
        // Nothing was written since the load (promotion changes only the
        // members): the new node's map must be exactly the one loaded.
        let verified = joiner.holds(&map).await?;
        cluster.members.push(joiner);
        // Writes with the map loaded: does its size slow commits down?
        let leader = &cluster.members[agreed.leader];
        let writes = sequential(&leader.writer(), "loaded", CATCH_UP_WRITES).await?;
        let leader_rss_kb = leader.pid().and_then(|pid| sample::status_kb(pid, "VmRSS"));
        // The floor of the catch-up: its bytes over loopback TCP, alone.
        let transfer =
            tokio::task::spawn_blocking(move || floor::tcp_bulk_transfers(bytes, TRANSFER_PROBES))
                .await
                .map_err(|e| e.to_string())
                .and_then(|probed| probed)
                .map_err(|error| progress(&format!("catch-up floor not measured: {error}")))
                .ok();
        rows.push(CatchUpRow {
            keys,
            bytes,
            load,
            catch_up: caught_up,
            voter,
            verified,
            writes,
            leader_rss_kb,
            transfer,
        });
    }
    Ok(rows)
}

async fn scale(plan: &Plan) -> Result<Vec<ScaleRow>, String> {
    let mut rows = Vec::new();
    for &n in &plan.scale_nodes {
        let machine = Machine::probe();
        // Nodes take well under a megabyte each; leave a wide margin.
        let needed_mb = 16 * n as u64 + 256;
        if machine.memory_available_mb < needed_mb {
            progress(&format!(
                "scale: skipping {n} nodes: {} MB available, {needed_mb} MB wanted",
                machine.memory_available_mb
            ));
            continue;
        }
        progress(&format!("scale: {n} nodes in process, started together"));
        rows.push(scale_one(plan, n).await?);
    }
    Ok(rows)
}

async fn scale_one(plan: &Plan, n: usize) -> Result<ScaleRow, String> {
    let rss_before = sample::status_kb(std::process::id(), "VmRSS");
    let started = Instant::now();
    let mut cluster = Cluster::form(
        &plan.launch().as_mode(Mode::InProcess),
        n,
        Timing::DEFAULT,
        true,
        Duration::from_secs(300),
    )
    .await?;
    let form = started.elapsed();
    let agreed = cluster.agreed(FORM_WAIT).await?;
    let rss_after = sample::status_kb(std::process::id(), "VmRSS");
    let rss_per_node_kb = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) / n as u64),
        _ => None,
    };

    // The leader at idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks_per_s = sample::clock_ticks_per_s();
    let leader = &mut cluster.members[agreed.leader];
    let before = read_node(leader).await?;
    let idle_started = Instant::now();
    tokio::time::sleep(plan.scale_idle_window).await;
    let after = read_node(leader).await?;
    let idle_window = idle_started.elapsed();
    let leader_cpu_percent = sample::cpu_percent(
        after.ticks.saturating_sub(before.ticks),
        ticks_per_s,
        idle_window,
    );
    let leader_datagrams_out_per_s = after
        .counters
        .frames_out
        .saturating_sub(before.counters.frames_out) as f64
        / idle_window.as_secs_f64();

    let commits = sequential(&leader.writer(), "scale", plan.scale_writes).await?;

    // The leader crashes: how long until a survivor leads, and until a
    // write through a survivor commits.
    let survivors = cluster.others(agreed.leader);
    let (won_tx, mut won_rx) = tokio::sync::mpsc::channel(survivors.len().max(1));
    let mut watchers = JoinSet::new();
    for &i in &survivors {
        let Some(node) = cluster.members[i].node() else {
            continue;
        };
        let mut status = node.subscribe();
        let won_tx = won_tx.clone();
        let old_term = agreed.term;
        watchers.spawn(async move {
            let won = status
                .wait_for(|s| s.state == State::Leader && s.term > old_term)
                .await
                .is_ok();
            if won {
                let _ = won_tx.send(Instant::now()).await;
            }
        });
    }
    drop(won_tx);
    let survivor = *survivors.first().ok_or("no survivor")?;
    let crashed = Instant::now();
    cluster.members[agreed.leader].crash();
    let won = tokio::time::timeout(FAILOVER_WAIT, won_rx.recv()).await;
    watchers.abort_all();
    let elect = match won {
        Ok(Some(at)) => at.saturating_duration_since(crashed),
        _ => {
            return Err(format!(
                "no survivor of {n} led within {} s of the crash",
                FAILOVER_WAIT.as_secs()
            ))
        }
    };
    let write_after = write_in_new_term(&cluster.members[survivor], agreed.term, crashed).await?;
    Ok(ScaleRow {
        nodes: n,
        form,
        leader_cpu_percent,
        leader_datagrams_out_per_s,
        idle_window,
        commits,
        elect,
        write_after,
        rss_per_node_kb,
    })
}
