//! What the tests that spawn the `simple-raft` binary share: a guard that
//! kills and reaps a child process, one bounded invocation of the binary,
//! and free ports on 127.0.0.1.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_simple-raft");
/// Short timings so elections and failover take a fraction of a second.
pub const TIMINGS: [&str; 6] = [
    "--heartbeat-ms",
    "20",
    "--leader-timeout-ms",
    "200",
    "--election-timeout-ms",
    "200",
];
/// The longest a cluster may take to reach a state the test waits for.
pub const SETTLE: Duration = Duration::from_secs(15);
/// The longest one CLI invocation may take.
pub const INVOCATION: Duration = Duration::from_secs(15);

/// A child process, killed and reaped when dropped. Its log, if any, is
/// removed unless the test is failing.
pub struct Proc {
    pub child: Child,
    pub log: Option<PathBuf>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = &self.log {
            if !thread::panicking() {
                let _ = std::fs::remove_file(log);
            }
        }
    }
}

impl Proc {
    /// Waits (bounded) for the process to exit; returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {timeout:?}",
                self.child.id()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// How often the node has logged `line`.
    pub fn logged(&self, line: &str) -> usize {
        let log = self.log.as_ref().expect("a node with a log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(line)
            .count()
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("sh")
            .args([
                "-c",
                "kill -s \"$0\" \"$1\"",
                name,
                &self.child.id().to_string(),
            ])
            .status()
            .expect("run sh");
        assert!(sent.success(), "kill -s {name} failed");
    }
}

/// What one invocation of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn json(&self) -> Option<Value> {
        if !self.ok() {
            return None;
        }
        serde_json::from_str(self.stdout.trim()).ok()
    }

    /// An operational failure: status 1 and exactly one line on stderr.
    pub fn assert_operational_failure(&self, says: &str) {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        assert!(self.stderr.contains(says), "{self:?} should say {says:?}");
    }
}

/// Runs the binary to completion, killing it after [`INVOCATION`].
pub fn cli(args: &[&str]) -> Run {
    let mut proc = Proc {
        child: Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the binary"),
        log: None,
    };
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(proc.child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(proc.child.stderr.take().expect("stderr")));
    let code = proc.wait_exit(INVOCATION);
    Run {
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// A port free on 127.0.0.1 for UDP and TCP alike, released for the
/// caller. Drawn below the kernel's range for outgoing connections, so that
/// a node killed and restarted at the same address does not find its port
/// taken by some connection's local end in between.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        // An unusual range: take any port above it.
        (ephemeral_low.max(1024), u16::MAX)
    };
    for _ in 0..1000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), low..high);
        let udp = UdpSocket::bind(("127.0.0.1", port));
        let tcp = TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP in {low}..{high}");
}

/// `status --json` of the node on `port` with `extra` arguments (cluster
/// keys), if it answers within two seconds.
pub fn status_with(port: u16, extra: &[&str]) -> Option<Value> {
    let node = addr(port);
    let mut args = vec![
        "status",
        "--node",
        node.as_str(),
        "--json",
        "--timeout-ms",
        "2000",
    ];
    args.extend(extra);
    cli(&args).json()
}

/// `status --json` of the node on `port`, if it answers.
pub fn status(port: u16) -> Option<Value> {
    status_with(port, &[])
}

pub fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Starts `simple-raft run` on `port` with the short [`TIMINGS`], joining
/// through `join`, with `extra` arguments; its stderr goes to `log`.
pub fn run_node(port: u16, join: &[u16], extra: &[&str], log: PathBuf) -> Proc {
    eprintln!("node {} logs to {}", addr(port), log.display());
    let listen = addr(port);
    let mut args = vec!["run", "--listen", listen.as_str()];
    args.extend(extra);
    args.extend(TIMINGS);
    let join = join.iter().map(|p| addr(*p)).collect::<Vec<_>>().join(",");
    if !join.is_empty() {
        args.extend(["--join", join.as_str()]);
    }
    Proc {
        child: Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .spawn()
            .expect("spawn a node"),
        log: Some(log),
    }
}

/// Polls `check` every 50 ms until it gives a value or `timeout` passes.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}
