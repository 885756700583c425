//! `run`: one node in the foreground, until SIGINT or SIGTERM; SIGHUP
//! reloads the cluster key file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use simple_raft::wire::Keyring;
use simple_raft::{Config, Error, Node};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use super::{runtime, Failure, LogFormat, Outcome, RunArgs};

/// A key file is a few lines; anything larger is not one.
const KEY_FILE_BYTES_MAX: u64 = 64 * 1024;

pub fn run(args: RunArgs) -> Outcome {
    let mut config = config(&args);
    if let Some(path) = &args.cluster_key_file {
        config.cluster_keys = Some(read_key_file(path).map_err(Failure::usage)?);
    }
    config
        .validate()
        .map_err(|e| Failure::usage(e.to_string()))?;
    init_logging(args.log_format, "info");
    if let Some(path) = &args.cluster_key_file {
        warn_if_readable_by_others(path);
    }
    runtime(true)?.block_on(serve(config, args.cluster_key_file))
}

/// Reads a cluster key file: one entry a line, the primary first; an entry
/// is 64 hex digits (a 32-byte key) or `unkeyed`; `#` starts a comment.
/// The error names the file and the line, never a key.
pub fn read_key_file(path: &Path) -> Result<Keyring, String> {
    let fail = |what: String| format!("--cluster-key-file {}: {what}", path.display());
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > KEY_FILE_BYTES_MAX {
        return Err(fail(format!(
            "{size} bytes; a key file has at most {KEY_FILE_BYTES_MAX}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    Keyring::parse(&text).map_err(|e| fail(e.to_string()))
}

/// A key file others can read is a key others can use.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                warn!(
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the cluster key file can be read by other users; consider chmod 600"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The node's settings from the command line, library defaults otherwise.
fn config(args: &RunArgs) -> Config {
    let mut config = Config::new(args.listen, args.join.clone());
    config.advertise = args.advertise;
    config.data_dir = args.data_dir.clone();
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

async fn serve(config: Config, key_file: Option<PathBuf>) -> Outcome {
    // Registered before the node starts, so no signal is missed. SIGHUP
    // only with a key file: without one it keeps its default (stop).
    let mut signals = Signals::new(key_file.is_some())?;
    // A leave (with a leader's hand-over) gives up inside the node after
    // four election rounds; this bound only guards against a stuck node.
    let leave_wait =
        Duration::from_millis(4 * (config.election_timeout_ms + config.leader_timeout_ms) + 1_000);
    let join = config.join.clone();
    let durable = config.data_dir.is_some();
    let keys = config
        .cluster_keys
        .as_ref()
        .map_or_else(|| "none".to_string(), Keyring::describe);
    let node = Node::start(config).await.map_err(|e| match e {
        Error::Config(_) => Failure::usage(e.to_string()),
        other => Failure::op(other.to_string()),
    })?;
    info!(addr = %node.addr(), ?join, %keys, "listening");
    let mut status = node.subscribe();
    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop(signal) => {
                    info!(signal, durable, "stopping (leaving the cluster unless durable)");
                    break;
                }
                Signal::Reload => reload_keys(&node, key_file.as_deref()).await,
            },
            _ = async { while status.changed().await.is_ok() {} } => {
                return Err(Failure::op("the node stopped unexpectedly"));
            }
        }
    }
    if durable {
        // A node with a data directory comes back as the same member: it
        // stops without leaving (a leader hands over first).
        tokio::select! {
            stopped = tokio::time::timeout(leave_wait, node.shutdown()) => match stopped {
                Ok(_) => info!("stopped; still a member"),
                Err(_) => warn!("handing over took too long; stopping anyway"),
            },
            signal = signals.next_stop() => warn!(signal, "second signal: stopping at once"),
        }
        return Ok(());
    }
    tokio::select! {
        left = tokio::time::timeout(leave_wait, node.leave()) => match left {
            Ok(Ok(())) => info!("left the cluster"),
            Ok(Err(error)) => warn!(%error, "could not leave the cluster; stopping anyway"),
            Err(_) => warn!(wait_ms = leave_wait.as_millis() as u64,
                            "leaving took too long; stopping anyway"),
        },
        signal = signals.next_stop() => warn!(signal, "second signal: stopping at once"),
    }
    Ok(())
}

/// SIGHUP: reads the key file again and hands its keys to the node; a file
/// that cannot be used leaves the node with the keys it has.
async fn reload_keys(node: &Node, key_file: Option<&Path>) {
    let Some(path) = key_file else {
        return;
    };
    match read_key_file(path) {
        Ok(keys) => {
            let described = keys.describe();
            match node.set_cluster_keys(Some(keys)).await {
                Ok(()) => info!(keys = %described, "cluster keys reloaded"),
                Err(error) => warn!(%error, "cluster keys not reloaded"),
            }
        }
        Err(error) => warn!(%error, "cluster keys not reloaded; keeping the current ones"),
    }
}

/// What a signal asks for.
enum Signal {
    /// Leave and stop (SIGINT, SIGTERM), named.
    Stop(&'static str),
    /// Read the key file again (SIGHUP).
    Reload,
}

/// SIGINT and SIGTERM, and SIGHUP when asked for.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn new(hangup: bool) -> Result<Signals, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| Failure::op(format!("cannot listen for signals: {e}")))
        };
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: if hangup {
                Some(listen(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }

    #[cfg(not(unix))]
    fn new(_hangup: bool) -> Result<Signals, Failure> {
        Ok(Signals {})
    }

    /// Waits for the next signal.
    #[cfg(unix)]
    async fn next(&mut self) -> Signal {
        let hangup = async {
            match &mut self.hangup {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop("SIGINT"),
            _ = self.terminate.recv() => Signal::Stop("SIGTERM"),
            _ = hangup => Signal::Reload,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Signal {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Stop("ctrl-c"),
            // Cannot listen: never stop for a signal.
            Err(_) => std::future::pending().await,
        }
    }

    /// Waits for the next signal that asks to stop, and names it.
    async fn next_stop(&mut self) -> &'static str {
        loop {
            if let Signal::Stop(name) = self.next().await {
                return name;
            }
        }
    }
}
