//! `bench node` (hidden): one node like `run`, which also answers a line
//! `metrics` on stdin with one JSON line of its counters on stdout, so the
//! bench can read what a node in a process of its own sends. It stops at
//! once (as a crash would) when stdin closes, so it never outlives the
//! bench.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use simple_raft::{Error, Node};

use super::host::{node_config, Timing};
use crate::{println, runtime, Failure, Outcome};

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address to listen on, UDP and TCP on the same port (ip:port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Members to join through, comma-separated; none founds a new cluster.
    #[arg(long, value_name = "ADDR,ADDR...", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// Directory for term, vote, log and state, as for `run`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Interval between the leader's heartbeats.
    #[arg(long, value_name = "N", default_value_t = 50)]
    heartbeat_ms: u64,
    /// Leader timeout.
    #[arg(long, value_name = "N", default_value_t = 500)]
    leader_timeout_ms: u64,
    /// Election timeout.
    #[arg(long, value_name = "N", default_value_t = 500)]
    election_timeout_ms: u64,
}

/// Lines read from stdin before the node stops reading.
const STDIN_QUEUE_LINES: usize = 4;

pub fn run(args: NodeArgs) -> Outcome {
    let timing = Timing {
        heartbeat_ms: args.heartbeat_ms,
        leader_timeout_ms: args.leader_timeout_ms,
        election_timeout_ms: args.election_timeout_ms,
    };
    let config = node_config(args.listen, args.join, timing, args.data_dir);
    config
        .validate()
        .map_err(|e| Failure::usage(e.to_string()))?;
    runtime(true)?.block_on(async move {
        let node = Node::start(config).await.map_err(|e| match e {
            Error::Config(_) => Failure::usage(e.to_string()),
            other => Failure::op(other.to_string()),
        })?;
        let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(STDIN_QUEUE_LINES);
        // Ends at EOF (the bench is gone) or when the node stops.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            if line.trim() != "metrics" {
                continue;
            }
            let metrics = node
                .metrics()
                .await
                .map_err(|e| Failure::op(e.to_string()))?;
            let status = node.status();
            let line = json!({
                "state": status.state.as_str(),
                "term": status.term,
                "version": status.version,
                "frames_out": metrics.core.frames_out,
                "bytes_out": metrics.core.bytes_out,
                "frames_in": metrics.core.frames_in,
                "bytes_in": metrics.core.bytes_in,
                "syncs": metrics.storage.map(|storage| storage.syncs),
            });
            println(&line.to_string())?;
        }
        node.abort();
        Ok(())
    })
}
