//! The `simple-raft` command line: run a node, talk to a cluster, watch
//! an in-process demo, or measure a cluster. See `simple-raft --help`.
//!
//! A crate of its own, so that a service embedding the library builds none
//! of what only the command line needs (argument parsing, JSON, a log
//! formatter, the cluster benchmark).
//!
//! Exit status: 0 success, 1 an operational failure (no leader, timeout,
//! unreachable node, refused request) with a one-line reason on stderr,
//! 2 a usage error.

#![forbid(unsafe_code)]

mod bench;
mod client;
mod decode;
mod demo;
mod mapfile;
mod run;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps a small replicated state (members, a string map, an election
/// number) in sync across a LAN cluster with Raft.
#[derive(Debug, Parser)]
#[command(name = "simple-raft", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a cluster in this process on loopback and narrate it: election,
    /// writes, a leader crash and failover, a join with catch-up.
    Demo(DemoArgs),
    /// Run a node in the foreground until SIGINT or SIGTERM, then leave
    /// the cluster gracefully (a leader hands over first).
    Run(RunArgs),
    /// Show a node's view of the cluster: role, term, leader, members,
    /// version.
    Status(StatusArgs),
    /// Read one key or the whole map from a node.
    Get(GetArgs),
    /// Set a key; returns once the change is committed.
    Put(PutArgs),
    /// Remove a key; returns once the change is committed.
    Delete(DeleteArgs),
    /// Replace the whole map with a JSON object of strings read from a
    /// file; returns once the change is committed.
    Update(UpdateArgs),
    /// Explain a frame captured off the wire, given in hex.
    Decode(decode::DecodeArgs),
    /// Measure a cluster on loopback: commit latency, throughput, failover,
    /// idle cost, catch-up and scale, as a table or JSON.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// How many nodes to start (3 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=9))]
    nodes: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address to listen on, UDP and TCP on the same port (ip:port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Address the others reach this node at, when not --listen (NAT, port
    /// mapping, relay); it names the node in the member list.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Members to join through, comma-separated; none founds a new cluster.
    #[arg(long, value_name = "ADDR,ADDR...", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// Directory for term, vote, log and state (created if missing): a
    /// restarted node comes back as the same member with everything it
    /// acknowledged. Without it, a restart rejoins as a new member.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Interval between the leader's heartbeats.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    heartbeat_ms: u64,
    /// A follower that hears no leader for a random time between this and
    /// one and a half times this holds an election.
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    leader_timeout_ms: u64,
    /// An election round lasts a random time between this and one and a half times this.
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    election_timeout_ms: u64,
    /// Keeps clusters on one network apart; frames of other ids are dropped.
    #[arg(long, value_name = "N", default_value_t = 0)]
    cluster_id: u32,
    /// File with the cluster keys, one a line, the primary first: 64 hex
    /// digits each (`#` comments). Every frame is signed and checked with
    /// them. SIGHUP reads the file again (key rotation without downtime).
    #[arg(long, value_name = "F")]
    cluster_key_file: Option<PathBuf>,
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Options shared by the subcommands that talk to a node.
#[derive(Debug, Clone, Args)]
struct NodeArgs {
    /// Any node of the cluster (ip:port).
    #[arg(long, value_name = "ADDR")]
    node: SocketAddr,
    /// The cluster's id.
    #[arg(long, value_name = "N", default_value_t = 0)]
    cluster_id: u32,
    /// File with the cluster keys, as for `run`: requests are signed with
    /// the first, answers checked with any.
    #[arg(long, value_name = "F")]
    cluster_key_file: Option<PathBuf>,
    /// How long to wait for the answer, connecting included.
    #[arg(long, value_name = "N", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GetArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key; without it, the whole map.
    #[arg(value_name = "KEY")]
    key: Option<String>,
    /// Print JSON: the map as one object, or {"key": K, "value": V}.
    #[arg(long)]
    json: bool,
    /// Confirm with a quorum first, so the read includes every write
    /// committed before it (slower than the default local read).
    #[arg(long)]
    linearizable: bool,
}

#[derive(Debug, Args)]
struct PutArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key.
    #[arg(value_name = "KEY")]
    key: String,
    /// The value.
    #[arg(value_name = "VALUE", allow_hyphen_values = true)]
    value: String,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key.
    #[arg(value_name = "KEY")]
    key: String,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// A JSON object of strings: the whole new map.
    #[arg(long, value_name = "MAP.json")]
    file: PathBuf,
}

/// Why a command failed, and so its exit status.
#[derive(Debug)]
pub enum Failure {
    /// Exit status 2: the command line cannot work.
    Usage(String),
    /// Exit status 1: the command ran and failed.
    Operational(String),
}

impl Failure {
    fn op(message: impl Into<String>) -> Failure {
        Failure::Operational(message.into())
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }
}

/// What a command returns.
type Outcome = Result<(), Failure>;

/// Parses the command line, runs the command and returns its exit status.
fn main() -> ExitCode {
    // Help, version and usage errors print and exit here (0 or 2).
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args.nodes.into()),
        Command::Run(args) => run::run(args),
        Command::Status(args) => client::status(args),
        Command::Get(args) => client::get(args),
        Command::Put(args) => client::put(args),
        Command::Delete(args) => client::delete(args),
        Command::Update(args) => client::update(args),
        Command::Decode(args) => decode::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Operational(message)) => {
            report(&message);
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            report(&message);
            ExitCode::from(2)
        }
    }
}

/// Writes a one-line reason to stderr.
fn report(message: &str) {
    let line = one_line(message);
    let _ = writeln!(std::io::stderr().lock(), "simple-raft: {line}");
}

/// Folds a message onto one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes to stdout. A closed pipe (`| head`) ends the output quietly;
/// other write errors are failures.
fn print(text: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::op(format!("cannot write output: {e}"))),
    }
}

/// Writes one line to stdout, as [`print`].
fn println(line: &str) -> Outcome {
    print(&format!("{line}\n"))
}

/// A runtime for one command.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Failure::op(format!("cannot start the async runtime: {e}")))
}
