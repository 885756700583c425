//! The `simple-raft` binary under hostile input from the network: frames
//! with numbers at the edge of their range, and floods of connections. A
//! node may drop what it is sent, but it never panics, never wedges and
//! never locks a legitimate client out. Processes on 127.0.0.1 only, each
//! killed when its guard drops; every wait is bounded.

use std::net::UdpSocket;
use std::path::PathBuf;

use bytes::BytesMut;
use simple_raft::wire::{
    decode_frame, DecodeLimits, Frame, Heartbeat, Introduce, JoinProof, LogId, Message, NodeId,
    PreVoteRequest, VoteRequest, DATAGRAM_BYTES_MAX_DEFAULT, JOIN_TOKEN_BYTES,
};

#[path = "support/process.rs"]
mod process;

use process::{addr, cli, free_port, run_node, status, wait_until, Proc, SETTLE};

fn log_path(name: &str, port: u16) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-logs");
    std::fs::create_dir_all(&dir).expect("create the log directory");
    dir.join(format!("{name}-{port}.log"))
}

/// Three nodes on loopback, the first founding; returns once all three
/// are voters under one leader.
fn three_nodes(name: &str) -> ([u16; 3], Vec<Proc>) {
    let ports = [free_port(), free_port(), free_port()];
    let procs = vec![
        run_node(ports[0], &[], &[], log_path(name, ports[0])),
        run_node(ports[1], &[ports[0]], &[], log_path(name, ports[1])),
        run_node(ports[2], &[ports[0]], &[], log_path(name, ports[2])),
    ];
    wait_until("three voters under one leader", SETTLE, || {
        let statuses: Vec<_> = ports.iter().map(|p| status(*p)).collect::<Option<_>>()?;
        let leaders = statuses.iter().filter(|s| s["state"] == "leader").count();
        let voters = |s: &serde_json::Value| {
            s["member_details"]
                .as_array()
                .is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["voter"] == true))
        };
        (leaders == 1 && statuses.iter().all(voters)).then_some(())
    });
    (ports, procs)
}

/// A write through each node in turn commits (retried within a bound while
/// the cluster settles).
fn writes_commit_through_every_node(ports: &[u16], key: &str) {
    for (i, port) in ports.iter().enumerate() {
        let value = format!("v{i}");
        wait_until(&format!("a write through {port}"), SETTLE, || {
            let put = cli(&[
                "put",
                "--node",
                &addr(*port),
                key,
                &value,
                "--timeout-ms",
                "2000",
            ]);
            (put.ok() && put.stdout.starts_with("ok version=")).then_some(())
        });
    }
}

fn datagram(sender: u32, term: u64, message: Message) -> BytesMut {
    let mut out = BytesMut::new();
    Frame::new(0, NodeId(sender), term, message)
        .encode(&mut out, DATAGRAM_BYTES_MAX_DEFAULT)
        .expect("encodes");
    out
}

#[test]
fn a_burst_of_frames_at_the_largest_term_does_not_wedge_a_cluster() {
    let (ports, _procs) = three_nodes("burst");
    writes_commit_through_every_node(&ports, "before");

    // Unkeyed, well-formed: votes, pre-votes and heartbeats at term
    // 2^64 - 1 from members 1, 2, 3 and a stranger 77, once to each node.
    let last = LogId {
        term: u64::MAX,
        version: u64::MAX,
    };
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a socket");
    for port in ports {
        for sender in [1, 2, 3, 77] {
            for message in [
                Message::VoteRequest(VoteRequest {
                    last,
                    transfer: true,
                }),
                Message::PreVoteRequest(PreVoteRequest { last }),
                Message::Heartbeat(Heartbeat {
                    last: LogId {
                        term: u64::MAX,
                        version: 0,
                    },
                    commit: 0,
                    seq: 1,
                }),
            ] {
                let bytes = datagram(sender, u64::MAX, message);
                socket.send_to(&bytes, addr(port)).expect("send");
            }
        }
    }

    writes_commit_through_every_node(&ports, "after");
    for port in ports {
        let status = status(port).expect("status");
        let term = status["term"].as_u64().expect("a term");
        assert!(term < 1000, "term moved to {term}: {status}");
    }
    // Every node is still running.
    for port in ports {
        assert!(status(port).is_some(), "node {port} answers");
    }
}

/// The addresses of the members `port` reports.
fn member_addrs(port: u16) -> Option<Vec<String>> {
    let status = status(port)?;
    let members = status["member_details"].as_array()?;
    members
        .iter()
        .map(|m| m["addr"].as_str().map(String::from))
        .collect()
}

/// Unkeyed introductions of addresses nobody joins from (loopback
/// addresses with nothing listening, and the sender's own socket, which
/// never answers a challenge), and proofs with made-up tokens, sent to
/// every node: none becomes a member, every answer the sender gets is no
/// larger than what it sent, and a real node still joins.
#[test]
fn a_burst_of_introductions_with_made_up_addresses_adds_no_member_while_a_real_node_joins() {
    let (ports, mut procs) = three_nodes("introduce");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a socket");
    let own = socket.local_addr().expect("an address").to_string();
    let introduce = |addr: String, incarnation: u64| {
        datagram(
            0,
            0,
            Message::Introduce(Introduce {
                addr: addr.clone(),
                incarnation,
                seeds: vec![addr, own.clone()],
            }),
        )
    };
    let mut sent_bytes_min = usize::MAX;
    for i in 0..200u16 {
        let made_up = format!("127.0.{}.{}:{}", 1 + i / 100, 2 + i % 100, 1000 + i);
        let frames = [
            introduce(made_up.clone(), u64::from(i)),
            introduce(own.clone(), u64::from(i)),
            datagram(
                0,
                0,
                Message::JoinProof(JoinProof {
                    addr: made_up,
                    incarnation: u64::from(i),
                    seeds: vec![],
                    token: [i as u8; JOIN_TOKEN_BYTES],
                }),
            ),
        ];
        for bytes in frames {
            sent_bytes_min = sent_bytes_min.min(bytes.len());
            for port in ports {
                socket.send_to(&bytes, addr(port)).expect("send");
            }
        }
    }
    // What came back (challenges to our own address): bounded in count
    // and time, each no larger than the smallest frame sent.
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("a read timeout");
    let mut buf = [0u8; 2048];
    let limits = DecodeLimits::datagram(0);
    let mut answers = 0;
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        assert!(
            len <= sent_bytes_min,
            "a {len}-byte answer to {sent_bytes_min} bytes"
        );
        let frame = decode_frame(&buf[..len], &limits).expect("a well-formed answer");
        assert!(
            matches!(
                frame.message,
                Message::JoinChallenge(_) | Message::Redirect(_)
            ),
            "{:?}",
            frame.message
        );
        answers += 1;
        assert!(answers <= 10_000, "answers without end");
    }
    assert!(
        answers > 0,
        "the leader challenged the sender's own address"
    );

    let new = free_port();
    procs.push(run_node(new, &[ports[1]], &[], log_path("introduce", new)));
    let mut expected: Vec<String> = ports.iter().chain([&new]).map(|p| addr(*p)).collect();
    expected.sort();
    wait_until("the real node joins", SETTLE, || {
        let mut members = member_addrs(new)?;
        members.sort();
        (members == expected).then_some(())
    });
    for port in ports {
        let mut members = member_addrs(port).expect("members");
        members.sort();
        assert_eq!(members, expected, "a made-up address became a member");
    }
}

/// Opens `count` connections to `port` and holds them: every third
/// announces a 64 MiB frame, sends a few bytes of it and stalls; the
/// others send nothing.
fn flood(port: u16, count: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(mut stream) = std::net::TcpStream::connect(addr(port)) else {
            continue;
        };
        if i % 3 == 0 {
            let announced = (64u32 << 20).to_be_bytes();
            let _ = stream.write_all(&announced);
            let _ = stream.write_all(b"SR\x01");
        }
        held.push(stream);
    }
    held
}

#[test]
fn a_flood_of_idle_and_stalled_connections_does_not_lock_clients_out() {
    let (ports, _procs) = three_nodes("flood");
    let leader = wait_until("the leader", SETTLE, || {
        ports
            .iter()
            .copied()
            .find(|p| status(*p).is_some_and(|s| s["state"] == "leader"))
    });
    let follower = *ports.iter().find(|p| **p != leader).unwrap();
    // Far more connections than the 64 slots, on the leader and on the
    // follower a client writes through; all held open during the requests.
    let held: Vec<_> = [leader, follower]
        .iter()
        .map(|port| flood(*port, 300))
        .collect();
    assert!(held.iter().all(|h| h.len() >= 250), "the flood connected");

    // While the flood holds its connections, each request succeeds at its
    // first attempt: through the follower (forwarded to the leader over
    // TCP) and on the leader directly.
    for (port, key) in [(follower, "through-follower"), (leader, "on-leader")] {
        let put = cli(&[
            "put",
            "--node",
            &addr(port),
            key,
            "yes",
            "--timeout-ms",
            "5000",
        ]);
        assert!(
            put.ok() && put.stdout.starts_with("ok version="),
            "{port}: {put:?}"
        );
        let status = cli(&[
            "status",
            "--node",
            &addr(port),
            "--json",
            "--timeout-ms",
            "5000",
        ]);
        assert!(status.json().is_some(), "{port}: {status:?}");
    }
    drop(held);
    writes_commit_through_every_node(&ports, "after-flood");
}
