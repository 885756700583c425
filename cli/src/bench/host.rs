//! The nodes a bench runs, and clusters of them: each node either in this
//! process on a thread of its own (with its own single-threaded runtime, so
//! its CPU time can be read per thread) or as a child process of this
//! binary (`run`, or the metered node of `bench node`). Every child is
//! killed and every thread stopped when its handle is dropped.
//!
//! With a [`DataRoot`] every node keeps a data directory of its own under
//! the bench's temporary directory: it listens on a fixed port, comes back
//! as the same member when restarted, and its directory is removed once the
//! node is stopped.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use simple_raft::wire::{ClientOp, ClientReply};
use simple_raft::{Client, Config, Error, Node, SharedMap, State, Status};

use super::sample;

/// The three timings of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub leader_timeout_ms: u64,
    pub election_timeout_ms: u64,
}

impl Timing {
    /// The library's defaults.
    pub const DEFAULT: Timing = Timing {
        heartbeat_ms: 50,
        leader_timeout_ms: 500,
        election_timeout_ms: 500,
    };

    pub fn with_heartbeat(self, heartbeat_ms: u64) -> Timing {
        Timing {
            heartbeat_ms,
            ..self
        }
    }

    pub fn with_leader_timeout(self, leader_timeout_ms: u64) -> Timing {
        Timing {
            leader_timeout_ms,
            ..self
        }
    }

    /// `50/500`: heartbeat and leader timeout.
    pub fn label(&self) -> String {
        format!("{}/{}", self.heartbeat_ms, self.leader_timeout_ms)
    }

    /// The same flags `run` takes.
    fn flags(&self) -> [String; 6] {
        [
            "--heartbeat-ms".into(),
            self.heartbeat_ms.to_string(),
            "--leader-timeout-ms".into(),
            self.leader_timeout_ms.to_string(),
            "--election-timeout-ms".into(),
            self.election_timeout_ms.to_string(),
        ]
    }
}

/// A node's settings as `run` makes them from its flags.
pub fn node_config(
    listen: SocketAddr,
    join: Vec<SocketAddr>,
    timing: Timing,
    data_dir: Option<PathBuf>,
) -> Config {
    let mut config = Config::new(listen, join);
    config.data_dir = data_dir;
    config.heartbeat_ms = timing.heartbeat_ms;
    config.leader_timeout_ms = timing.leader_timeout_ms;
    config.election_timeout_ms = timing.election_timeout_ms;
    config.member_silence_ms = config
        .member_silence_ms
        .map(|ms| ms.max(2 * timing.leader_timeout_ms));
    config
}

/// Where the cluster's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In this process, each node on a thread of its own.
    InProcess,
    /// Child processes running `run`.
    Run,
    /// Child processes running the metered node (`bench node`), which
    /// report their counters when asked.
    Metered,
}

/// The bench's directory for the nodes' data directories: a fresh
/// directory under the system's temporary directory, removed with
/// everything in it when the last handle to it is dropped.
#[derive(Debug)]
pub struct DataRoot {
    path: PathBuf,
    next: AtomicUsize,
}

impl DataRoot {
    /// Creates `simple-raft-bench-<pid>-<n>` in the temporary directory,
    /// with the first `n` not taken.
    pub fn create() -> Result<DataRoot, String> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..100 {
            let path = base.join(format!("simple-raft-bench-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(DataRoot {
                        path,
                        next: AtomicUsize::new(0),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!(
            "no free name for the bench's directory in {}",
            base.display()
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path for one more node's data directory (the node creates it).
    fn node_dir(self: &Arc<DataRoot>) -> NodeDir {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        NodeDir {
            path: self.path.join(format!("node-{n}")),
            _root: self.clone(),
        }
    }
}

impl Drop for DataRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One node's data directory, removed when dropped; it keeps the root
/// alive until then.
#[derive(Debug)]
struct NodeDir {
    path: PathBuf,
    _root: Arc<DataRoot>,
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How nodes are started: where they run, and whether each keeps a data
/// directory (under `data`) or none.
#[derive(Debug, Clone)]
pub struct Launch {
    pub mode: Mode,
    pub data: Option<Arc<DataRoot>>,
}

impl Launch {
    /// The same data directories, nodes run another way.
    pub fn as_mode(&self, mode: Mode) -> Launch {
        Launch {
            mode,
            data: self.data.clone(),
        }
    }
}

/// What the bench needs from a node's status, read without copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Its member id, once joined.
    pub id: Option<u32>,
    pub leading: bool,
    pub term: u64,
    pub leader: Option<SocketAddr>,
    pub members: usize,
    pub voters: usize,
    /// This node is a voting member in its own view.
    pub voter: bool,
    pub version: u64,
}

impl View {
    fn of_status(status: &Status) -> View {
        let own = status.addr.to_string();
        View {
            id: status.id.map(|id| id.0),
            leading: status.state == State::Leader,
            term: status.term,
            leader: status.leader,
            members: status.members.len(),
            voters: status.members.iter().filter(|m| m.voter).count(),
            voter: status.members.iter().any(|m| m.addr == own && m.voter),
            version: status.version,
        }
    }
}

/// Datagram and byte counters of a node, and the fsyncs of its data
/// directory (if it has one and reports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_out: u64,
    pub bytes_out: u64,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub syncs: Option<u64>,
}

/// Writes through one node: the library handle in process, a TCP client
/// otherwise (which keeps its connection between writes, as an embedding
/// service's client would).
#[derive(Clone)]
pub enum Writer {
    Node(Arc<Node>),
    Client(Client),
}

impl Writer {
    /// A writer of its own for one of several concurrent writers: the same
    /// node handle, or a client with a connection of its own.
    pub fn own(&self) -> Writer {
        match self {
            Writer::Node(node) => Writer::Node(node.clone()),
            Writer::Client(client) => Writer::Client(Client::new(client.addr(), 0)),
        }
    }

    pub async fn set(&self, key: String, value: String, timeout: Duration) -> Result<u64, String> {
        match self {
            Writer::Node(node) => match tokio::time::timeout(timeout, node.set(key, value)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".to_string()),
            },
            Writer::Client(client) => client
                .clone()
                .with_timeout(timeout)
                .write(ClientOp::Set { key, value })
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// A linearizable read of `key` (in process, of the whole map: the
    /// node hands it out shared, not copied).
    pub async fn read_linearizable(&self, key: String, timeout: Duration) -> Result<(), String> {
        match self {
            Writer::Node(node) => {
                match tokio::time::timeout(timeout, node.read_linearizable()).await {
                    Ok(result) => result.map(|_| ()).map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            }
            Writer::Client(client) => {
                let reply = client
                    .clone()
                    .with_timeout(timeout)
                    .request(ClientOp::Get {
                        key: Some(key),
                        linearizable: true,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                match reply {
                    ClientReply::Value { .. } => Ok(()),
                    other => Err(format!("unexpected answer {other:?}")),
                }
            }
        }
    }
}

/// A node in this process, on its own thread and runtime: its driver and
/// connection tasks all run there, and stopping the thread drops them all
/// at once (a crash).
pub struct ThreadNode {
    node: Option<Arc<Node>>,
    tid: Option<u32>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadNode {
    async fn start(config: Config) -> Result<ThreadNode, Attempt> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-node".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send((Err(Attempt::Failed(e.to_string())), None));
                        return;
                    }
                };
                let tid = sample::current_thread_id();
                runtime.block_on(async move {
                    let started = Node::start(config).await.map_err(|e| match e {
                        // A port taken since it was chosen, or the data
                        // directory still locked by the node's previous run.
                        Error::Bind { .. } | Error::Storage(_) => Attempt::Busy(e.to_string()),
                        other => Attempt::Failed(other.to_string()),
                    });
                    let _ = ready_tx.send((started, tid));
                    // Runs the node's tasks until told to stop (or the
                    // handle is gone).
                    let _ = stop_rx.await;
                });
                // The runtime is dropped here, and with it every task of
                // the node.
            })
            .map_err(|e| Attempt::Failed(format!("cannot start a node thread: {e}")))?;
        let mut host = ThreadNode {
            node: None,
            tid: None,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        let (started, tid) = ready_rx.await.map_err(|_| {
            Attempt::Failed("the node thread ended before the node started".to_string())
        })?;
        host.node = Some(Arc::new(started?));
        host.tid = tid;
        Ok(host)
    }

    /// Stops the thread, dropping the node's tasks and sockets at once.
    fn crash(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Bounded: the thread only drops its runtime.
            let _ = thread.join();
        }
        self.node = None;
    }
}

impl Drop for ThreadNode {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A child process of this binary running one node.
pub struct ChildNode {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<std_mpsc::Receiver<String>>,
}

impl ChildNode {
    fn spawn(
        mode: Mode,
        addr: SocketAddr,
        join: &[SocketAddr],
        timing: Timing,
        data_dir: Option<&Path>,
    ) -> Result<ChildNode, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to start nodes: {e}"))?;
        let mut command = Command::new(exe);
        match mode {
            Mode::Metered => command.args(["bench", "node"]),
            _ => command.arg("run"),
        };
        command.arg("--listen").arg(addr.to_string());
        if !join.is_empty() {
            let join: Vec<String> = join.iter().map(ToString::to_string).collect();
            command.arg("--join").arg(join.join(","));
        }
        if let Some(dir) = data_dir {
            command.arg("--data-dir").arg(dir);
        }
        command
            .args(timing.flags())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        if mode == Mode::Metered {
            command.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start a node process: {e}"))?;
        let stdin = child.stdin.take();
        let lines = child.stdout.take().map(|stdout| {
            let (tx, rx) = std_mpsc::channel();
            // Ends when the child's stdout closes.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Ok(ChildNode {
            child,
            stdin,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM: `run` leaves the cluster, a leader handing over first.
    fn terminate(&mut self) -> Result<(), String> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .map_err(|e| format!("cannot send SIGTERM: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -TERM {} failed: {status}", self.pid()))
        }
    }

    /// Asks a metered node for its counters.
    fn counters(&mut self) -> Result<Counters, String> {
        let (Some(stdin), Some(lines)) = (self.stdin.as_mut(), self.lines.as_ref()) else {
            return Err("only the metered node reports its counters".into());
        };
        writeln!(stdin, "metrics")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot ask the node for its counters: {e}"))?;
        let line = lines
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the node did not report its counters".to_string())?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("bad counters {line:?}: {e}"))?;
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_u64);
        Ok(Counters {
            frames_out: field("frames_out").ok_or("no frames_out")?,
            bytes_out: field("bytes_out").ok_or("no bytes_out")?,
            frames_in: field("frames_in").ok_or("no frames_in")?,
            bytes_in: field("bytes_in").ok_or("no bytes_in")?,
            syncs: field("syncs"),
        })
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        // Closing stdin stops a metered node by itself; kill in any case.
        self.stdin = None;
        self.kill();
    }
}

enum Host {
    Thread(ThreadNode),
    Child(ChildNode),
}

/// Why starting a node failed.
enum Attempt {
    /// The address or the data directory was in use: another try (on
    /// another address, or a moment later) may work.
    Busy(String),
    Failed(String),
}

impl Attempt {
    fn message(self) -> String {
        match self {
            Attempt::Busy(message) | Attempt::Failed(message) => message,
        }
    }
}

/// Starts one node at `addr` (port 0 only in process, without a data
/// directory); the address it listens on.
async fn start_host(
    mode: Mode,
    addr: SocketAddr,
    join: &[SocketAddr],
    timing: Timing,
    data_dir: Option<&Path>,
) -> Result<(Host, SocketAddr), Attempt> {
    if mode == Mode::InProcess {
        let config = node_config(addr, join.to_vec(), timing, data_dir.map(Path::to_owned));
        let host = ThreadNode::start(config).await?;
        let addr = host
            .node
            .as_ref()
            .map(|n| n.addr())
            .ok_or_else(|| Attempt::Failed("no node".into()))?;
        return Ok((Host::Thread(host), addr));
    }
    let mut child =
        ChildNode::spawn(mode, addr, join, timing, data_dir).map_err(Attempt::Failed)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.exited() {
            return Err(Attempt::Busy(format!(
                "a node process on {addr} exited at once ({status})"
            )));
        }
        if status_of(addr, Duration::from_millis(200)).await.is_ok() {
            return Ok((Host::Child(child), addr));
        }
        if Instant::now() >= deadline {
            return Err(Attempt::Failed(format!(
                "the node process on {addr} did not answer in 5 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One node of a cluster.
pub struct Member {
    host: Host,
    addr: SocketAddr,
    /// Crashed or stopped: no longer counted.
    pub gone: bool,
    mode: Mode,
    join: Vec<SocketAddr>,
    timing: Timing,
    /// After `host`, so that it is removed once the node has stopped.
    dir: Option<NodeDir>,
}

impl Member {
    /// Starts a node that joins through `join` (none: it founds a cluster),
    /// with a fresh data directory when `launch` has a root for them.
    pub async fn start(
        launch: &Launch,
        join: &[SocketAddr],
        timing: Timing,
    ) -> Result<Member, String> {
        let mode = launch.mode;
        let dir = launch.data.as_ref().map(DataRoot::node_dir);
        let path = dir.as_ref().map(|dir| dir.path.as_path());
        // A node process, and a node with a data directory, need a fixed
        // port; a port taken between choosing and binding: try another.
        let fixed = mode != Mode::InProcess || path.is_some();
        let mut last_error = String::new();
        for _ in 0..4 {
            let addr = if fixed {
                free_addr()?
            } else {
                SocketAddr::from(([127, 0, 0, 1], 0))
            };
            match start_host(mode, addr, join, timing, path).await {
                Ok((host, addr)) => {
                    return Ok(Member {
                        host,
                        addr,
                        gone: false,
                        mode,
                        join: join.to_vec(),
                        timing,
                        dir,
                    })
                }
                Err(Attempt::Busy(error)) if fixed => last_error = error,
                Err(attempt) => return Err(attempt.message()),
            }
        }
        Err(last_error)
    }

    /// Whether the node keeps a data directory.
    pub fn durable(&self) -> bool {
        self.dir.is_some()
    }

    /// Starts a crashed or stopped node again, on its address and with its
    /// data directory: it comes back as the same member.
    pub async fn restart(&mut self) -> Result<(), String> {
        if !self.gone {
            return Err(format!("{} is still running", self.addr));
        }
        let path = self
            .dir
            .as_ref()
            .map(|dir| dir.path.clone())
            .ok_or("without a data directory a node comes back as a new member")?;
        // The stopped node's sockets and lock go with its process or
        // runtime; wait a little if they have not yet.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match start_host(self.mode, self.addr, &self.join, self.timing, Some(&path)).await {
                Ok((host, _)) => {
                    self.host = host;
                    self.gone = false;
                    return Ok(());
                }
                Err(Attempt::Busy(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(attempt) => {
                    return Err(format!("restarting {}: {}", self.addr, attempt.message()))
                }
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's view, if it answers.
    pub async fn view(&self) -> Result<View, String> {
        match &self.host {
            Host::Thread(host) => {
                let node = host.node.as_ref().ok_or("the node has stopped")?;
                let status = node.subscribe();
                let view = View::of_status(&status.borrow());
                Ok(view)
            }
            Host::Child(_) => status_of(self.addr, Duration::from_secs(1)).await,
        }
    }

    pub fn writer(&self) -> Writer {
        match &self.host {
            Host::Thread(host) => match &host.node {
                Some(node) => Writer::Node(node.clone()),
                None => Writer::Client(Client::new(self.addr, 0)),
            },
            Host::Child(_) => Writer::Client(Client::new(self.addr, 0)),
        }
    }

    /// A shared handle of an in-process node, for tasks of its own.
    pub fn node_handle(&self) -> Option<Arc<Node>> {
        match &self.host {
            Host::Thread(host) => host.node.clone(),
            Host::Child(_) => None,
        }
    }

    /// The library handle of an in-process node.
    pub fn node(&self) -> Option<&Node> {
        match &self.host {
            Host::Thread(host) => host.node.as_deref(),
            Host::Child(_) => None,
        }
    }

    /// Replaces the whole map; returns the committed version.
    pub async fn update(&self, map: &SharedMap, timeout: Duration) -> Result<u64, String> {
        match &self.host {
            Host::Thread(host) => {
                let node = host.node.as_ref().ok_or("the node has stopped")?;
                tokio::time::timeout(timeout, node.update(map.clone()))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())
            }
            Host::Child(_) => {
                let map = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                Client::new(self.addr, 0)
                    .with_timeout(timeout)
                    .write(ClientOp::Update { map })
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Whether the node's local map is exactly `expected`.
    pub async fn holds(&self, expected: &SharedMap) -> Result<bool, String> {
        match &self.host {
            Host::Thread(host) => {
                let node = host.node.as_ref().ok_or("the node has stopped")?;
                Ok(node.data().await.map_err(|e| e.to_string())? == *expected)
            }
            Host::Child(_) => {
                let reply = Client::new(self.addr, 0)
                    .with_timeout(Duration::from_secs(30))
                    .request(ClientOp::Get {
                        key: None,
                        linearizable: false,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                match reply {
                    ClientReply::Map { map, .. } => Ok(map.len() == expected.len()
                        && map
                            .iter()
                            .all(|(k, v)| expected.get(k).is_some_and(|e| e == v))),
                    other => Err(format!("unexpected answer {other:?}")),
                }
            }
        }
    }

    /// Kills the node without a goodbye: `kill -9` of its process, or its
    /// thread and runtime dropped at once.
    pub fn crash(&mut self) {
        self.gone = true;
        match &mut self.host {
            Host::Thread(host) => host.crash(),
            Host::Child(child) => child.kill(),
        }
    }

    /// Stops the node gracefully, a leader handing over first: without a
    /// data directory it leaves the cluster; with one it stays a member, to
    /// come back (what `run` does on SIGTERM). For a process this sends
    /// SIGTERM and returns; the rest happens in the background.
    pub async fn leave(&mut self) -> Result<(), String> {
        self.gone = true;
        let durable = self.durable();
        match &mut self.host {
            Host::Thread(host) => {
                let node = host.node.take().ok_or("the node has stopped")?;
                let node = Arc::try_unwrap(node)
                    .map_err(|_| "the node handle is still shared by a writer".to_string())?;
                let result = if durable {
                    node.shutdown().await
                } else {
                    node.leave().await
                };
                host.crash();
                result.map_err(|e| e.to_string())
            }
            Host::Child(child) => child.terminate(),
        }
    }

    /// Sent and received datagram counters (in-process or metered nodes).
    pub async fn counters(&mut self) -> Result<Counters, String> {
        match &mut self.host {
            Host::Thread(host) => {
                let node = host.node.as_ref().ok_or("the node has stopped")?;
                let metrics = node.metrics().await.map_err(|e| e.to_string())?;
                Ok(Counters {
                    frames_out: metrics.core.frames_out,
                    bytes_out: metrics.core.bytes_out,
                    frames_in: metrics.core.frames_in,
                    bytes_in: metrics.core.bytes_in,
                    syncs: metrics.storage.map(|storage| storage.syncs),
                })
            }
            Host::Child(child) => child.counters(),
        }
    }

    /// The `stat` file with this node's CPU time: its process's, or its
    /// thread's.
    pub fn stat_path(&self) -> Option<String> {
        match &self.host {
            Host::Thread(host) => host.tid.map(|tid| format!("/proc/self/task/{tid}/stat")),
            Host::Child(child) => Some(format!("/proc/{}/stat", child.pid())),
        }
    }

    /// The process this node has to itself, if any.
    pub fn pid(&self) -> Option<u32> {
        match &self.host {
            Host::Thread(_) => None,
            Host::Child(child) => Some(child.pid()),
        }
    }

    /// Waits (bounded) for a node process to exit after a leave.
    pub async fn wait_exit(&mut self, within: Duration) -> bool {
        let Host::Child(child) = &mut self.host else {
            return true;
        };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if child.exited().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

/// A node's status over TCP, as the CLI's `status` reads it.
async fn status_of(addr: SocketAddr, timeout: Duration) -> Result<View, String> {
    let reply = Client::new(addr, 0)
        .with_timeout(timeout)
        .request(ClientOp::Status)
        .await
        .map_err(|e| e.to_string())?;
    let ClientReply::Status(status) = reply else {
        return Err(format!("unexpected answer {reply:?}"));
    };
    let own = status.addr.clone();
    Ok(View {
        id: status.id.map(|id| id.0),
        leading: status.state == "leader",
        term: status.term,
        leader: status.leader.as_deref().and_then(|a| a.parse().ok()),
        members: status.members.len(),
        voters: status.members.iter().filter(|m| m.voter).count(),
        voter: status.members.iter().any(|m| m.addr == own && m.voter),
        version: status.version,
    })
}

/// A loopback address free for a node process, below the ephemeral port
/// range so that no client connection takes it before the node binds it.
fn free_addr() -> Result<SocketAddr, String> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (from, to) = if low > 12_000 {
        (10_000, low - 1)
    } else {
        (0, 0)
    };
    for _ in 0..64 {
        let port = if to > from {
            rand::random::<u16>() % (to - from) + from
        } else {
            0
        };
        let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else {
            continue;
        };
        if std::net::TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err("no free port on 127.0.0.1".into())
}

/// Polls `check` every `every` until it gives a value or `within` passes.
pub async fn poll<T>(
    within: Duration,
    every: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("{what} within {} s: {last}", within.as_secs_f64()));
        }
        tokio::time::sleep(every).await;
    }
}

/// A cluster of nodes on loopback.
pub struct Cluster {
    pub mode: Mode,
    pub members: Vec<Member>,
}

/// What the live members agree on.
#[derive(Debug, Clone, Copy)]
pub struct Agreement {
    pub leader: usize,
    pub term: u64,
}

impl Cluster {
    /// Starts `n` nodes: the first founds the cluster, the others join
    /// through it, one after the other (`together`: all at once), and waits
    /// until all are voters agreeing on one leader.
    pub async fn form(
        launch: &Launch,
        n: usize,
        timing: Timing,
        together: bool,
        within: Duration,
    ) -> Result<Cluster, String> {
        let deadline = Instant::now() + within;
        let left = || deadline.saturating_duration_since(Instant::now());
        let founder = Member::start(launch, &[], timing).await?;
        let seed = founder.addr();
        let mut cluster = Cluster {
            mode: launch.mode,
            members: vec![founder],
        };
        for _ in 1..n {
            let member = Member::start(launch, &[seed], timing).await?;
            if !together {
                poll(
                    left(),
                    cluster.poll_every(),
                    "a node to join",
                    async || match member.view().await? {
                        view if view.voter => Ok(()),
                        view => Err(format!("still {view:?}")),
                    },
                )
                .await?;
            }
            cluster.members.push(member);
        }
        cluster.agreed(left()).await?;
        Ok(cluster)
    }

    /// How often to poll statuses: over TCP less often than in process.
    pub fn poll_every(&self) -> Duration {
        let n = self.members.len().max(1) as u64;
        match self.mode {
            Mode::InProcess => Duration::from_millis(1 + n / 10),
            _ => Duration::from_millis(5),
        }
    }

    pub fn live(&self) -> impl Iterator<Item = (usize, &Member)> {
        self.members.iter().enumerate().filter(|(_, m)| !m.gone)
    }

    /// Waits until every live member is a voter, all see the same number of
    /// voters as there are live members, and all agree on one live leader
    /// and term.
    pub async fn agreed(&self, within: Duration) -> Result<Agreement, String> {
        let every = self.poll_every();
        poll(
            within,
            every,
            "the nodes to agree on a leader",
            async || self.agreement().await,
        )
        .await
    }

    pub async fn agreement(&self) -> Result<Agreement, String> {
        let live = self.live().count();
        let mut agreed: Option<(SocketAddr, u64)> = None;
        for (_, member) in self.live() {
            let view = member.view().await?;
            if !view.voter || view.voters != live || view.members != live {
                return Err(format!("{} sees {view:?}", member.addr()));
            }
            let Some(leader) = view.leader else {
                return Err(format!("{} knows no leader", member.addr()));
            };
            match agreed {
                None => agreed = Some((leader, view.term)),
                Some(seen) if seen == (leader, view.term) => {}
                Some(seen) => {
                    return Err(format!(
                        "{} follows {leader} in term {}, another {} in term {}",
                        member.addr(),
                        view.term,
                        seen.0,
                        seen.1
                    ))
                }
            }
        }
        let (leader_addr, term) = agreed.ok_or("no live member")?;
        let (leader, member) = self
            .live()
            .find(|(_, m)| m.addr() == leader_addr)
            .ok_or_else(|| format!("the leader {leader_addr} is not live"))?;
        if !member.view().await?.leading {
            return Err(format!("{leader_addr} does not lead yet"));
        }
        Ok(Agreement { leader, term })
    }

    /// Waits until every live member has committed `version`.
    pub async fn converged(&self, version: u64, within: Duration) -> Result<(), String> {
        poll(
            within,
            self.poll_every(),
            "the nodes to commit",
            async || {
                for (_, member) in self.live() {
                    let view = member.view().await?;
                    if view.version < version {
                        return Err(format!("{} at {}", member.addr(), view.version));
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// The live members other than `except`.
    pub fn others(&self, except: usize) -> Vec<usize> {
        self.live()
            .map(|(i, _)| i)
            .filter(|i| *i != except)
            .collect()
    }
}
