//! `run`: one node in the foreground, until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::time::Duration;

use simple_raft::{Config, Error, Node};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use super::{refuse_unsupported, runtime, Failure, LogFormat, Outcome, RunArgs};

pub fn run(args: RunArgs) -> Outcome {
    if args.data_dir.is_some() {
        return Err(Failure::usage(
            "--data-dir: durable storage is not supported by this version",
        ));
    }
    refuse_unsupported(&args.cluster_key_file)?;
    let config = config(&args);
    config
        .validate()
        .map_err(|e| Failure::usage(e.to_string()))?;
    init_logging(args.log_format, "info");
    runtime(true)?.block_on(serve(config))
}

/// The node's settings from the command line, library defaults otherwise.
fn config(args: &RunArgs) -> Config {
    let mut config = Config::new(args.listen, args.join.clone());
    config.heartbeat_ms = args.heartbeat_ms;
    config.leader_timeout_ms = args.leader_timeout_ms;
    config.election_timeout_ms = args.election_timeout_ms;
    config.cluster_id = args.cluster_id;
    // Silent members are removed after the default time, or after twice
    // the leader timeout when that is longer (the least that can work).
    config.member_silence_ms = config
        .member_silence_ms
        .map(|ms| ms.max(2 * args.leader_timeout_ms));
    config
}

/// Logs to stderr, filtered by RUST_LOG (or `default` when unset).
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Only fails if a subscriber is already installed, which is fine.
    let _ = installed;
}

async fn serve(config: Config) -> Outcome {
    // Registered before the node starts, so no signal is missed.
    let mut signals = Signals::new()?;
    // A leave (with a leader's hand-over) gives up inside the node after
    // four election rounds; this bound only guards against a stuck node.
    let leave_wait =
        Duration::from_millis(4 * (config.election_timeout_ms + config.leader_timeout_ms) + 1_000);
    let join = config.join.clone();
    let node = Node::start(config).await.map_err(|e| match e {
        Error::Config(_) => Failure::usage(e.to_string()),
        other => Failure::op(other.to_string()),
    })?;
    info!(addr = %node.addr(), ?join, "listening");
    let mut status = node.subscribe();
    tokio::select! {
        signal = signals.next() => info!(signal, "stopping: leaving the cluster"),
        _ = async { while status.changed().await.is_ok() {} } => {
            return Err(Failure::op("the node stopped unexpectedly"));
        }
    }
    tokio::select! {
        left = tokio::time::timeout(leave_wait, node.leave()) => match left {
            Ok(Ok(())) => info!("left the cluster"),
            Ok(Err(error)) => warn!(%error, "could not leave the cluster; stopping anyway"),
            Err(_) => warn!(wait_ms = leave_wait.as_millis() as u64,
                            "leaving took too long; stopping anyway"),
        },
        signal = signals.next() => warn!(signal, "second signal: stopping at once"),
    }
    Ok(())
}

/// SIGINT and SIGTERM.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Result<Signals, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| Failure::op(format!("cannot listen for signals: {e}")))
        };
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> Result<Signals, Failure> {
        Ok(Signals {})
    }

    /// Waits for the next signal and names it.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            // Cannot listen: never stop for a signal.
            Err(_) => std::future::pending().await,
        }
    }
}
