//! The floor of a bench run: what the machine itself costs for the steps a
//! commit cannot skip, measured in the same run as the figures so that
//! each figure can be given as a ratio to it. Machines (and one machine
//! from one hour to the next, when it is shared) differ; a ratio to a floor
//! measured minutes apart on the same machine differs much less.
//!
//! A write through a leader costs at least one UDP round trip to a
//! follower (the entry out, the ack back) and, through the TCP client, the
//! client's round trip to the node; with data directories at least one
//! fsync on top. The probes here are those steps alone, on blocking
//! sockets and without the library: one datagram echoed on loopback, one
//! request answered over a TCP connection kept open, one small append and
//! fdatasync in the data directories' file system.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sample::{fsync_probe, Latencies};

/// Round trips timed by each network probe.
pub const ROUND_TRIPS: usize = 2_000;
/// Round trips before the timed ones: sockets, caches, CPU frequency.
const WARM_UP: usize = 200;
/// How long one probe's datagram or answer may take before the probe fails.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Appends and fdatasyncs timed in the data directories' file system.
pub const FSYNC_PROBES: usize = 200;
/// Bytes a probe's request and answer carry: about a heartbeat, an ack, a
/// small client request.
const PROBE_BYTES: usize = 64;

/// The floor of one run.
#[derive(Debug, Clone)]
pub struct Floor {
    /// A datagram sent to an echo socket on loopback and back.
    pub udp: Latencies,
    /// A request and its answer over a loopback TCP connection kept open.
    pub tcp: Latencies,
    /// A 64-byte append and an fdatasync in the temporary directory the
    /// data directories are in (`--durable` only).
    pub fsync: Option<Latencies>,
    /// The nodes run in the bench's process: writes do not cross TCP.
    pub in_process: bool,
}

impl Floor {
    /// Measures the network floor, and the fsync floor in `data_dir` (the
    /// data directories' parent) when there is one.
    pub fn measure(data_dir: Option<&Path>, in_process: bool) -> Result<Floor, String> {
        let udp = udp_round_trips(ROUND_TRIPS)?;
        let tcp = tcp_round_trips(ROUND_TRIPS)?;
        let fsync = data_dir
            .map(|dir| fsync_probe(dir, FSYNC_PROBES))
            .transpose()?;
        Ok(Floor {
            udp,
            tcp,
            fsync,
            in_process,
        })
    }

    /// What no commit through the API can beat: one UDP round trip to a
    /// follower, the client's TCP round trip (not in process: `Node::set`
    /// crosses no socket), and one fsync when the nodes are durable.
    pub fn commit(&self) -> Duration {
        self.read()
            + self
                .fsync
                .as_ref()
                .map_or(Duration::ZERO, Latencies::median)
    }

    /// What no linearizable read can beat: the leader confirms its
    /// leadership with a quorum (one UDP round trip), plus the client's TCP
    /// round trip over processes. Nothing is synced for a read.
    pub fn read(&self) -> Duration {
        let tcp = if self.in_process {
            Duration::ZERO
        } else {
            self.tcp.median()
        };
        self.udp.median() + tcp
    }

    /// The terms of [`Floor::commit`], as the report names them.
    pub fn commit_label(&self) -> &'static str {
        match (self.in_process, self.fsync.is_some()) {
            (true, false) => "UDP RTT",
            (true, true) => "UDP RTT + fsync",
            (false, false) => "UDP RTT + TCP RTT",
            (false, true) => "UDP RTT + TCP RTT + fsync",
        }
    }

    /// The terms of [`Floor::read`].
    pub fn read_label(&self) -> &'static str {
        if self.in_process {
            "UDP RTT"
        } else {
            "UDP RTT + TCP RTT"
        }
    }
}

/// `figure / floor`, or none when the floor is zero (not measured).
pub fn ratio(figure: Duration, floor: Duration) -> Option<f64> {
    (!floor.is_zero()).then(|| figure.as_secs_f64() / floor.as_secs_f64())
}

/// An echo thread's handle that joins it when dropped, so that a probe
/// that fails half-way still leaves no thread behind.
struct Echo(Option<JoinHandle<()>>);

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            // Bounded: the echo ends at its read timeout at the latest.
            let _ = thread.join();
        }
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("UDP/TCP floor probe: {what}: {e}")
}

/// `n` datagrams of [`PROBE_BYTES`] to an echo socket on loopback and
/// back, each timed from the send to the answer.
pub fn udp_round_trips(n: usize) -> Result<Latencies, String> {
    let echo = UdpSocket::bind(("127.0.0.1", 0)).map_err(io("bind the echo socket"))?;
    echo.set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(io("set a read timeout"))?;
    let echo_addr = echo.local_addr().map_err(io("the echo address"))?;
    let client = UdpSocket::bind(("127.0.0.1", 0)).map_err(io("bind the client socket"))?;
    client
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(io("set a read timeout"))?;
    client.connect(echo_addr).map_err(io("connect"))?;
    let total = WARM_UP + n;
    // Answers exactly `total` datagrams, or stops at the first silence of
    // PROBE_TIMEOUT.
    let _echo = Echo(Some(std::thread::spawn(move || {
        let mut buf = [0_u8; 2 * PROBE_BYTES];
        for _ in 0..total {
            match echo.recv_from(&mut buf) {
                Ok((len, from)) => {
                    if echo.send_to(&buf[..len], from).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    })));
    let request = [0xa5_u8; PROBE_BYTES];
    let mut answer = [0_u8; 2 * PROBE_BYTES];
    let mut samples = Vec::with_capacity(n);
    for i in 0..total {
        let start = Instant::now();
        client.send(&request).map_err(io("send a datagram"))?;
        let len = client
            .recv(&mut answer)
            .map_err(io("receive the echoed datagram"))?;
        let took = start.elapsed();
        if len != PROBE_BYTES {
            return Err(format!(
                "UDP floor probe: echoed {len} bytes of {PROBE_BYTES}"
            ));
        }
        if i >= WARM_UP {
            samples.push(took);
        }
    }
    Ok(Latencies::new(samples))
}

/// `n` requests of [`PROBE_BYTES`] answered with as many bytes over one
/// loopback TCP connection kept open (no Nagle delay), each timed from
/// the write to the whole answer.
pub fn tcp_round_trips(n: usize) -> Result<Latencies, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(io("bind the listener"))?;
    let addr = listener.local_addr().map_err(io("the listener address"))?;
    let total = WARM_UP + n;
    let (mut client, _echo) = connect_to_echo(listener, addr, move |mut stream| {
        let mut buf = [0_u8; PROBE_BYTES];
        for _ in 0..total {
            if stream.read_exact(&mut buf).is_err() || stream.write_all(&buf).is_err() {
                return;
            }
        }
    })?;
    let request = [0x5a_u8; PROBE_BYTES];
    let mut answer = [0_u8; PROBE_BYTES];
    let mut samples = Vec::with_capacity(n);
    for i in 0..total {
        let start = Instant::now();
        client
            .write_all(&request)
            .and_then(|()| client.read_exact(&mut answer))
            .map_err(io("a request and its answer"))?;
        if i >= WARM_UP {
            samples.push(start.elapsed());
        }
    }
    Ok(Latencies::new(samples))
}

/// `n` times, `bytes` bytes sent over a fresh loopback TCP connection and
/// read to the end on the other side: what moving a snapshot of that size
/// costs without encoding, checking or applying it.
pub fn tcp_bulk_transfers(bytes: usize, n: usize) -> Result<Latencies, String> {
    let mut samples = Vec::with_capacity(n);
    let payload = vec![0x3c_u8; bytes];
    // One unmeasured transfer first, like the round trips' warm-up.
    for i in 0..=n {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(io("bind the listener"))?;
        let addr = listener.local_addr().map_err(io("the listener address"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let start = Instant::now();
        let (mut client, echo) = connect_to_echo(listener, addr, move |mut stream| {
            // Reads everything, then answers one byte: the transfer is over
            // when that byte is back.
            let mut buf = vec![0_u8; 64 * 1024];
            let mut read = 0;
            while read < bytes {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(len) => read += len,
                }
            }
            let _ = tx.send(read);
            let _ = stream.write_all(&[1]);
        })?;
        client.write_all(&payload).map_err(io("send the payload"))?;
        let mut done = [0_u8; 1];
        client
            .read_exact(&mut done)
            .map_err(io("the end of the transfer"))?;
        let took = start.elapsed();
        drop(echo);
        let read = rx.recv().unwrap_or(0);
        if read < bytes {
            return Err(format!(
                "TCP bulk floor probe: {read} bytes arrived of {bytes}"
            ));
        }
        if i > 0 {
            samples.push(took);
        }
    }
    Ok(Latencies::new(samples))
}

/// Connects to `listener` and runs `serve` on the accepted side on a thread
/// of its own; both ends without Nagle's delay and with read timeouts.
fn connect_to_echo(
    listener: TcpListener,
    addr: SocketAddr,
    serve: impl FnOnce(TcpStream) + Send + 'static,
) -> Result<(TcpStream, Echo), String> {
    let client = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(io("connect"))?;
    let (server, _) = listener.accept().map_err(io("accept"))?;
    for stream in [&client, &server] {
        stream.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
        stream
            .set_read_timeout(Some(PROBE_TIMEOUT))
            .map_err(io("set a read timeout"))?;
        stream
            .set_write_timeout(Some(PROBE_TIMEOUT))
            .map_err(io("set a write timeout"))?;
    }
    let echo = Echo(Some(std::thread::spawn(move || serve(server))));
    Ok((client, echo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_round_trips_are_timed_one_per_datagram() {
        let trips = udp_round_trips(50).expect("loopback UDP");
        assert_eq!(trips.len(), 50);
        assert!(trips.median() > Duration::ZERO);
        assert!(trips.median() <= trips.percentile(99.0));
    }

    #[test]
    fn tcp_round_trips_are_timed_over_one_connection() {
        let trips = tcp_round_trips(50).expect("loopback TCP");
        assert_eq!(trips.len(), 50);
        assert!(trips.median() > Duration::ZERO);
    }

    #[test]
    fn a_bulk_transfer_is_timed_until_every_byte_arrived() {
        let transfers = tcp_bulk_transfers(1 << 20, 2).expect("loopback TCP");
        assert_eq!(transfers.len(), 2);
        assert!(transfers.median() > Duration::ZERO);
    }

    #[test]
    fn the_commit_floor_adds_the_tcp_round_trip_only_over_processes() {
        let floor = |in_process, fsync: Option<u64>| Floor {
            udp: Latencies::new(vec![Duration::from_micros(20)]),
            tcp: Latencies::new(vec![Duration::from_micros(30)]),
            fsync: fsync.map(|us| Latencies::new(vec![Duration::from_micros(us)])),
            in_process,
        };
        assert_eq!(floor(false, None).commit(), Duration::from_micros(50));
        assert_eq!(floor(true, None).commit(), Duration::from_micros(20));
        assert_eq!(floor(false, Some(100)).commit(), Duration::from_micros(150));
        // A read syncs nothing.
        assert_eq!(floor(false, Some(100)).read(), Duration::from_micros(50));
        assert_eq!(floor(true, Some(100)).commit_label(), "UDP RTT + fsync");
    }

    #[test]
    fn a_ratio_to_no_floor_is_none() {
        let ms = Duration::from_millis;
        assert_eq!(ratio(ms(3), ms(2)), Some(1.5));
        assert_eq!(ratio(ms(3), Duration::ZERO), None);
    }
}
