//! The figures of a bench run, printed as tables or as one JSON object,
//! each target next to the figure it applies to.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::host::Timing;
use super::sample::{ms, us, Latencies, Machine};

/// A section's figures: not run, run, or failed with a reason.
pub type Section<T> = Option<Result<T, String>>;

#[derive(Debug, Clone)]
pub struct LatencyRow {
    pub nodes: usize,
    pub via: &'static str,
    pub latencies: Latencies,
}

#[derive(Debug, Clone)]
pub struct ThroughputRow {
    pub nodes: usize,
    pub writers: usize,
    pub window: Duration,
    pub latencies: Latencies,
    pub errors: usize,
    /// fsyncs during the window, when the nodes report them.
    pub syncs: Option<Syncs>,
}

/// fsyncs of the nodes' data directories during a throughput window.
#[derive(Debug, Clone)]
pub struct Syncs {
    pub leader: u64,
    pub followers: Vec<u64>,
}

impl Syncs {
    /// The followers' mean.
    pub fn follower(&self) -> f64 {
        self.followers.iter().sum::<u64>() as f64 / self.followers.len().max(1) as f64
    }
}

impl ThroughputRow {
    pub fn commits_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Commits per fsync of the leader, and of a follower (their mean).
    pub fn commits_per_sync(&self) -> Option<(f64, f64)> {
        let syncs = self.syncs.as_ref()?;
        let commits = self.latencies.len() as f64;
        Some((
            commits / (syncs.leader as f64).max(1.0),
            commits / syncs.follower().max(1.0),
        ))
    }
}

#[derive(Debug, Clone)]
pub struct FailoverRow {
    pub timing: Timing,
    /// `crash` (kill -9) or `graceful` (leave with hand-over).
    pub kind: &'static str,
    pub samples: Latencies,
    pub failed: usize,
    /// With data directories: from restarting the stopped leader until it
    /// is back as the same member (same id, a voter, following the new
    /// leader) with every committed write.
    pub back: Option<Latencies>,
}

#[derive(Debug, Clone)]
pub struct IdleNode {
    pub role: &'static str,
    pub datagrams_out_per_s: f64,
    pub bytes_out_per_s: f64,
    pub datagrams_in_per_s: f64,
    pub bytes_in_per_s: f64,
    pub cpu_percent: f64,
    /// Peak resident memory of the node's own process, if it has one.
    pub rss_peak_kb: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Idle {
    pub timing: Timing,
    pub window: Duration,
    pub nodes: Vec<IdleNode>,
    /// Peak resident memory of this process, when the nodes share it.
    pub shared_rss_peak_kb: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct CatchUpRow {
    pub keys: usize,
    pub bytes: usize,
    /// The one `update` that loaded the map.
    pub load: Duration,
    /// From starting the new node until its map is the cluster's.
    pub catch_up: Duration,
    /// From starting the new node until it is a voter.
    pub voter: Duration,
    pub verified: bool,
    /// Sequential writes through the leader with the map loaded.
    pub writes: Latencies,
    /// Resident memory of the leader's process with the map loaded.
    pub leader_rss_kb: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ScaleRow {
    pub nodes: usize,
    /// From starting the first node until all are voters agreeing on a
    /// leader.
    pub form: Duration,
    pub leader_cpu_percent: f64,
    pub leader_datagrams_out_per_s: f64,
    pub idle_window: Duration,
    pub commits: Latencies,
    /// From killing the leader until a survivor leads.
    pub elect: Duration,
    /// From killing the leader until a write through a survivor commits.
    pub write_after: Duration,
    /// Resident memory this process grew by, per node.
    pub rss_per_node_kb: Option<u64>,
}

/// Where durable nodes keep their data, and what a sync costs there.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The file system of the temporary directory (`ext4`, `tmpfs`, ...).
    pub filesystem: Option<String>,
    /// A 64-byte append and an fdatasync, repeated.
    pub fsync: Latencies,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub in_process: bool,
    pub quick: bool,
    /// Every node kept a data directory (`Some`), or none did.
    pub storage: Option<Storage>,
    pub latency: Section<Vec<LatencyRow>>,
    pub throughput: Section<Vec<ThroughputRow>>,
    pub failover: Section<Vec<FailoverRow>>,
    pub idle: Section<Idle>,
    pub catch_up: Section<Vec<CatchUpRow>>,
    pub scale: Section<Vec<ScaleRow>>,
}

/// One target and the figure it is checked against.
#[derive(Debug, Clone)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub figure: String,
    pub met: bool,
}

fn fmt_us(d: Duration) -> String {
    format!("{:.0}", us(d))
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.0}", ms(d))
}

fn kb_to_mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

impl Report {
    pub fn write_path(&self) -> &'static str {
        if self.in_process {
            "Node::set in this process (each node on a thread and runtime of its own)"
        } else {
            "simple_raft::Client over TCP to `run` processes (one connection per request)"
        }
    }

    pub fn durability(&self) -> String {
        match &self.storage {
            None => "none: no data directories (a restarted node is a new member)".to_string(),
            Some(storage) => format!(
                "a fresh data directory per node under the system's temporary directory \
                 ({}); a 64-byte append + fdatasync there: p50 {} us, p99 {} us ({} probes)",
                storage
                    .filesystem
                    .as_deref()
                    .unwrap_or("unknown file system"),
                fmt_us(storage.fsync.median()),
                fmt_us(storage.fsync.percentile(99.0)),
                storage.fsync.len()
            ),
        }
    }

    pub fn failed_sections(&self) -> Vec<(&'static str, String)> {
        let mut failed = Vec::new();
        let mut check = |name: &'static str, error: Option<&String>| {
            if let Some(error) = error {
                failed.push((name, error.clone()));
            }
        };
        check("latency", err(&self.latency));
        check("throughput", err(&self.throughput));
        check("failover", err(&self.failover));
        check("idle", err(&self.idle));
        check("catch-up", err(&self.catch_up));
        check("scale", err(&self.scale));
        failed
    }

    /// Every target with a figure to check it against.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let mut add = |what: String, goal: &str, figure: String, met: bool| {
            targets.push(Target {
                what,
                goal: goal.to_string(),
                figure,
                met,
            })
        };
        if let Some(Ok(rows)) = &self.latency {
            for row in rows.iter().filter(|r| r.nodes == 3) {
                let (p50, p99) = (row.latencies.median(), row.latencies.percentile(99.0));
                add(
                    format!("write latency p50, 3 nodes, via the {}", row.via),
                    "<= 150 us",
                    format!("{} us", fmt_us(p50)),
                    p50 <= Duration::from_micros(150),
                );
                add(
                    format!("write latency p99, 3 nodes, via the {}", row.via),
                    "<= 1 ms",
                    format!("{} us", fmt_us(p99)),
                    p99 <= Duration::from_millis(1),
                );
            }
        }
        if let Some(Ok(rows)) = &self.throughput {
            for row in rows.iter().filter(|r| r.nodes == 3 && r.writers == 64) {
                add(
                    "throughput, 64 writers, 3 nodes".into(),
                    ">= 50 000 commits/s",
                    format!("{:.0} commits/s", row.commits_per_s()),
                    row.commits_per_s() >= 50_000.0,
                );
            }
        }
        if let Some(Ok(rows)) = &self.failover {
            for row in rows {
                let (median, max) = (row.samples.median(), row.samples.max());
                match (row.kind, row.timing.label().as_str()) {
                    ("crash", "50/250") => {
                        add(
                            "failover after kill -9, 50/250 timing, median".into(),
                            "<= 300 ms",
                            format!("{} ms", fmt_ms(median)),
                            row.failed == 0 && median <= Duration::from_millis(300),
                        );
                        add(
                            "failover after kill -9, 50/250 timing, max".into(),
                            "<= 500 ms",
                            format!("{} ms", fmt_ms(max)),
                            row.failed == 0 && max <= Duration::from_millis(500),
                        );
                    }
                    ("graceful", _) => {
                        add(
                            "graceful hand-over, median".into(),
                            "<= 100 ms",
                            format!("{} ms", fmt_ms(median)),
                            row.failed == 0 && median <= Duration::from_millis(100),
                        );
                        add(
                            "graceful hand-over, max".into(),
                            "<= 100 ms",
                            format!("{} ms", fmt_ms(max)),
                            row.failed == 0 && max <= Duration::from_millis(100),
                        );
                    }
                    _ => {}
                }
            }
        }
        if let Some(Ok(idle)) = &self.idle {
            let followers: Vec<&IdleNode> =
                idle.nodes.iter().filter(|n| n.role == "follower").collect();
            if !followers.is_empty() {
                let label = format!("idle follower, {} ms heartbeat", idle.timing.heartbeat_ms);
                let bytes = followers
                    .iter()
                    .map(|n| n.bytes_out_per_s)
                    .fold(0.0, f64::max);
                add(
                    format!("{label}: UDP payload sent"),
                    "<= 350 B/s",
                    format!("{bytes:.0} B/s"),
                    bytes <= 350.0,
                );
                let cpu = followers.iter().map(|n| n.cpu_percent).fold(0.0, f64::max);
                add(
                    format!("{label}: CPU"),
                    "<= 0.3 %",
                    format!("{cpu:.2} %"),
                    cpu <= 0.3,
                );
                if let Some(rss) = followers.iter().filter_map(|n| n.rss_peak_kb).max() {
                    add(
                        format!("{label}: peak RSS"),
                        "<= 8 MB",
                        format!("{:.1} MB", kb_to_mb(rss)),
                        rss <= 8 * 1024,
                    );
                }
            }
        }
        if let Some(Ok(rows)) = &self.catch_up {
            for row in rows.iter().filter(|r| r.keys == 100_000) {
                add(
                    format!(
                        "catch-up of {:.1} MB ({} keys)",
                        row.bytes as f64 / 1e6,
                        row.keys
                    ),
                    "<= 300 ms",
                    format!("{} ms", fmt_ms(row.catch_up)),
                    row.verified && row.catch_up <= Duration::from_millis(300),
                );
            }
        }
        if let Some(Ok(rows)) = &self.scale {
            for row in rows.iter().filter(|r| r.nodes == 100) {
                add(
                    "100-node cluster elects after a leader crash".into(),
                    "<= 2 s",
                    format!("{} ms", fmt_ms(row.elect)),
                    row.elect <= Duration::from_secs(2),
                );
            }
        }
        targets
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "simple-raft bench, {}: `{}`", self.date, self.command);
        let _ = writeln!(
            out,
            "machine: {} CPUs ({}), {} MB memory, Linux {}",
            m.cpus, m.cpu_model, m.memory_mb, m.kernel
        );
        let _ = writeln!(out, "writes: {}", self.write_path());
        let _ = writeln!(out, "durability: {}", self.durability());
        if self.quick {
            let _ = writeln!(
                out,
                "--quick: fewer writes, kills and nodes, shorter windows"
            );
        }
        let mut section = |title: &str, body: Result<String, &String>| {
            let _ = writeln!(out, "\n{title}");
            match body {
                Ok(body) => out.push_str(&body),
                Err(error) => {
                    let _ = writeln!(out, "  failed: {error}");
                }
            }
        };
        if let Some(latency) = &self.latency {
            section(
                "1. commit latency, sequential single-key writes",
                latency.as_ref().map(|rows| latency_table(rows)),
            );
        }
        if let Some(throughput) = &self.throughput {
            section(
                "2. throughput, concurrent writers through the leader",
                throughput.as_ref().map(|rows| throughput_table(rows)),
            );
        }
        if let Some(failover) = &self.failover {
            section(
                if self.storage.is_some() {
                    "3. failover: until a write through a survivor commits; \
                     then the old leader restarted until it is back"
                } else {
                    "3. failover: until a write through a survivor commits"
                },
                failover.as_ref().map(|rows| failover_table(rows)),
            );
        }
        if let Some(idle) = &self.idle {
            section("4. idle cost, per node", idle.as_ref().map(idle_table));
        }
        if let Some(catch_up) = &self.catch_up {
            section(
                "5. catch-up of a new node (100-byte values), and writes with the map loaded",
                catch_up.as_ref().map(|rows| catch_up_table(rows)),
            );
        }
        if let Some(scale) = &self.scale {
            section(
                "6. scale (in process, writes through Node::set, default timing)",
                scale.as_ref().map(|rows| scale_table(rows)),
            );
        }
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "\ntargets");
            let rows: Vec<Vec<String>> = targets
                .iter()
                .map(|t| {
                    vec![
                        t.what.clone(),
                        t.goal.clone(),
                        t.figure.clone(),
                        if t.met { "met" } else { "MISSED" }.to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(&["target", "goal", "figure", ""], &rows));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let m = &self.machine;
        let section = |s: &Section<Value>| match s {
            None => Value::Null,
            Some(Ok(value)) => value.clone(),
            Some(Err(error)) => json!({ "error": error }),
        };
        let latency = self.latency.as_ref().map(|r| {
            r.as_ref()
                .map(|rows| Value::Array(rows.iter().map(latency_json).collect()))
                .map_err(Clone::clone)
        });
        let throughput = self.throughput.as_ref().map(|r| {
            r.as_ref()
                .map(|rows| Value::Array(rows.iter().map(throughput_json).collect()))
                .map_err(Clone::clone)
        });
        let failover = self.failover.as_ref().map(|r| {
            r.as_ref()
                .map(|rows| Value::Array(rows.iter().map(failover_json).collect()))
                .map_err(Clone::clone)
        });
        let idle = self
            .idle
            .as_ref()
            .map(|r| r.as_ref().map(idle_json).map_err(Clone::clone));
        let catch_up = self.catch_up.as_ref().map(|r| {
            r.as_ref()
                .map(|rows| Value::Array(rows.iter().map(catch_up_json).collect()))
                .map_err(Clone::clone)
        });
        let scale = self.scale.as_ref().map(|r| {
            r.as_ref()
                .map(|rows| Value::Array(rows.iter().map(scale_json).collect()))
                .map_err(Clone::clone)
        });
        let targets: Vec<Value> = self
            .targets()
            .iter()
            .map(|t| json!({"what": t.what, "goal": t.goal, "figure": t.figure, "met": t.met}))
            .collect();
        json!({
            "date": self.date,
            "command": self.command,
            "machine": {
                "cpus": m.cpus,
                "cpu_model": m.cpu_model,
                "memory_mb": m.memory_mb,
                "kernel": m.kernel,
            },
            "nodes_run": if self.in_process { "in-process" } else { "processes" },
            "write_path": self.write_path(),
            "durable": self.storage.is_some(),
            "storage": self.storage.as_ref().map(|storage| json!({
                "data_dirs": "one per node, under the system's temporary directory",
                "filesystem": storage.filesystem,
                "fsync_probes": storage.fsync.len(),
                "fsync_p50_us": us(storage.fsync.median()),
                "fsync_p99_us": us(storage.fsync.percentile(99.0)),
                "fsync_max_us": us(storage.fsync.max()),
            })),
            "quick": self.quick,
            "latency": section(&latency),
            "throughput": section(&throughput),
            "failover": section(&failover),
            "idle": section(&idle),
            "catch_up": section(&catch_up),
            "scale": section(&scale),
            "targets": targets,
        })
    }
}

fn err<T>(section: &Section<T>) -> Option<&String> {
    match section {
        Some(Err(error)) => Some(error),
        _ => None,
    }
}

/// Right-aligned columns (the first left-aligned), two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            text.push(' ');
            if i == 0 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
            text.push(' ');
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn latency_table(rows: &[LatencyRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{} nodes, via the {}", r.nodes, r.via),
                r.latencies.len().to_string(),
                fmt_us(r.latencies.median()),
                fmt_us(r.latencies.percentile(99.0)),
                fmt_us(r.latencies.max()),
            ]
        })
        .collect();
    table(&["", "writes", "p50 us", "p99 us", "max us"], &rows)
}

fn latency_json(r: &LatencyRow) -> Value {
    json!({
        "nodes": r.nodes,
        "via": r.via,
        "writes": r.latencies.len(),
        "p50_us": us(r.latencies.median()),
        "p99_us": us(r.latencies.percentile(99.0)),
        "max_us": us(r.latencies.max()),
    })
}

fn throughput_table(rows: &[ThroughputRow]) -> String {
    let synced = rows.iter().any(|r| r.syncs.is_some());
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                format!("{} nodes, {} writers", r.nodes, r.writers),
                r.latencies.len().to_string(),
                format!("{:.1}", r.window.as_secs_f64()),
                format!("{:.0}", r.commits_per_s()),
                fmt_us(r.latencies.median()),
                fmt_us(r.latencies.percentile(99.0)),
                r.errors.to_string(),
            ];
            if synced {
                let (leader, follower) = r
                    .commits_per_sync()
                    .map_or(("-".to_string(), "-".to_string()), |(leader, follower)| {
                        (format!("{leader:.1}"), format!("{follower:.1}"))
                    });
                row.extend([leader, follower]);
            }
            row
        })
        .collect();
    let mut header = vec![
        "",
        "commits",
        "s",
        "commits/s",
        "p50 us",
        "p99 us",
        "errors",
    ];
    if synced {
        header.extend(["commits/fsync leader", "follower"]);
    }
    table(&header, &rows)
}

fn throughput_json(r: &ThroughputRow) -> Value {
    let mut value = json!({
        "nodes": r.nodes,
        "writers": r.writers,
        "commits": r.latencies.len(),
        "seconds": r.window.as_secs_f64(),
        "commits_per_s": r.commits_per_s(),
        "p50_us": us(r.latencies.median()),
        "p99_us": us(r.latencies.percentile(99.0)),
        "errors": r.errors,
    });
    if let (Some(syncs), Value::Object(fields)) = (&r.syncs, &mut value) {
        fields.insert("leader_fsyncs".into(), json!(syncs.leader));
        fields.insert("follower_fsyncs".into(), json!(syncs.followers));
        if let Some((leader, follower)) = r.commits_per_sync() {
            fields.insert("commits_per_leader_fsync".into(), json!(leader));
            fields.insert("commits_per_follower_fsync".into(), json!(follower));
        }
    }
    value
}

fn failover_table(rows: &[FailoverRow]) -> String {
    let restarts = rows.iter().any(|r| r.back.is_some());
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let what = match (r.kind, restarts) {
                ("crash", _) => format!("kill -9 the leader, {} timing", r.timing.label()),
                (_, false) => format!("graceful leave of the leader, {} timing", r.timing.label()),
                (_, true) => format!("graceful stop of the leader, {} timing", r.timing.label()),
            };
            let mut row = vec![
                what,
                r.samples.len().to_string(),
                fmt_ms(r.samples.percentile(0.0)),
                fmt_ms(r.samples.median()),
                fmt_ms(r.samples.max()),
                r.failed.to_string(),
            ];
            if restarts {
                let back = r.back.clone().unwrap_or_default();
                row.push(fmt_ms(back.median()));
                row.push(fmt_ms(back.max()));
            }
            row
        })
        .collect();
    let mut header = vec!["", "runs", "min ms", "median ms", "max ms", "failed"];
    if restarts {
        header.extend(["back median ms", "back max ms"]);
    }
    table(&header, &rows)
}

fn failover_json(r: &FailoverRow) -> Value {
    let mut value = json!({
        "kind": r.kind,
        "heartbeat_ms": r.timing.heartbeat_ms,
        "leader_timeout_ms": r.timing.leader_timeout_ms,
        "election_timeout_ms": r.timing.election_timeout_ms,
        "runs": r.samples.len(),
        "failed": r.failed,
        "min_ms": ms(r.samples.percentile(0.0)),
        "median_ms": ms(r.samples.median()),
        "max_ms": ms(r.samples.max()),
        "samples_ms": r.samples.samples().iter().map(|d| ms(*d)).collect::<Vec<_>>(),
    });
    if let (Some(back), Value::Object(fields)) = (&r.back, &mut value) {
        fields.insert(
            "restart".into(),
            json!({
                "what": "the stopped leader restarted with its data directory, until it is \
                         the same member again (same id, a voter, following the new leader, \
                         every committed write)",
                "runs": back.len(),
                "median_ms": ms(back.median()),
                "max_ms": ms(back.max()),
                "samples_ms": back.samples().iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            }),
        );
    }
    value
}

fn idle_table(idle: &Idle) -> String {
    let mut out = format!(
        "  {} ms heartbeat, {} ms leader timeout, over {:.0} s\n",
        idle.timing.heartbeat_ms,
        idle.timing.leader_timeout_ms,
        idle.window.as_secs_f64()
    );
    let rows: Vec<Vec<String>> = idle
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.role.to_string(),
                format!("{:.1}", n.datagrams_out_per_s),
                format!("{:.0}", n.bytes_out_per_s),
                format!("{:.1}", n.datagrams_in_per_s),
                format!("{:.0}", n.bytes_in_per_s),
                format!("{:.2}", n.cpu_percent),
                n.rss_peak_kb
                    .map_or("-".into(), |kb| format!("{:.1}", kb_to_mb(kb))),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "",
            "datagrams/s out",
            "B/s out",
            "datagrams/s in",
            "B/s in",
            "CPU %",
            "peak RSS MB",
        ],
        &rows,
    ));
    if let Some(kb) = idle.shared_rss_peak_kb {
        let _ = writeln!(
            out,
            "  the nodes share this process: its peak RSS is {:.1} MB",
            kb_to_mb(kb)
        );
    }
    out
}

fn idle_json(idle: &Idle) -> Value {
    json!({
        "heartbeat_ms": idle.timing.heartbeat_ms,
        "leader_timeout_ms": idle.timing.leader_timeout_ms,
        "window_s": idle.window.as_secs_f64(),
        "shared_process_peak_rss_kb": idle.shared_rss_peak_kb,
        "nodes": idle.nodes.iter().map(|n| json!({
            "role": n.role,
            "datagrams_out_per_s": n.datagrams_out_per_s,
            "udp_payload_bytes_out_per_s": n.bytes_out_per_s,
            "datagrams_in_per_s": n.datagrams_in_per_s,
            "udp_payload_bytes_in_per_s": n.bytes_in_per_s,
            "cpu_percent": n.cpu_percent,
            "peak_rss_kb": n.rss_peak_kb,
        })).collect::<Vec<_>>(),
    })
}

fn catch_up_table(rows: &[CatchUpRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{} keys", r.keys),
                format!("{:.2}", r.bytes as f64 / 1e6),
                fmt_ms(r.load),
                fmt_ms(r.catch_up),
                fmt_ms(r.voter),
                if r.verified { "yes" } else { "NO" }.to_string(),
                fmt_us(r.writes.median()),
                fmt_us(r.writes.percentile(99.0)),
                r.leader_rss_kb
                    .map_or("-".into(), |kb| format!("{:.1}", kb_to_mb(kb))),
            ]
        })
        .collect();
    table(
        &[
            "",
            "MB",
            "load ms",
            "catch-up ms",
            "to voter ms",
            "same map",
            "write p50 us",
            "write p99 us",
            "leader RSS MB",
        ],
        &rows,
    )
}

fn catch_up_json(r: &CatchUpRow) -> Value {
    json!({
        "keys": r.keys,
        "bytes": r.bytes,
        "load_ms": ms(r.load),
        "catch_up_ms": ms(r.catch_up),
        "to_voter_ms": ms(r.voter),
        "verified": r.verified,
        "write_p50_us": us(r.writes.median()),
        "write_p99_us": us(r.writes.percentile(99.0)),
        "leader_rss_kb": r.leader_rss_kb,
    })
}

fn scale_table(rows: &[ScaleRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{} nodes", r.nodes),
                fmt_ms(r.form),
                format!("{:.2}", r.leader_cpu_percent),
                format!("{:.0}", r.leader_datagrams_out_per_s),
                fmt_us(r.commits.median()),
                fmt_us(r.commits.percentile(99.0)),
                fmt_ms(r.elect),
                fmt_ms(r.write_after),
                r.rss_per_node_kb
                    .map_or("-".into(), |kb| format!("{:.2}", kb_to_mb(kb))),
            ]
        })
        .collect();
    table(
        &[
            "",
            "form ms",
            "leader CPU %",
            "leader dgrams/s",
            "commit p50 us",
            "commit p99 us",
            "re-elect ms",
            "write ms",
            "MB/node",
        ],
        &rows,
    )
}

fn scale_json(r: &ScaleRow) -> Value {
    json!({
        "nodes": r.nodes,
        "form_ms": ms(r.form),
        "leader_idle_cpu_percent": r.leader_cpu_percent,
        "leader_idle_datagrams_out_per_s": r.leader_datagrams_out_per_s,
        "idle_window_s": r.idle_window.as_secs_f64(),
        "commits": r.commits.len(),
        "commit_p50_us": us(r.commits.median()),
        "commit_p99_us": us(r.commits.percentile(99.0)),
        "elect_after_crash_ms": ms(r.elect),
        "write_after_crash_ms": ms(r.write_after),
        "rss_per_node_kb": r.rss_per_node_kb,
    })
}
