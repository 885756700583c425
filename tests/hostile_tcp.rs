//! A node's TCP port under connections that never complete a frame: each
//! rule that keeps the port usable (eviction, the first-frame deadline, the
//! read budget) acts and is counted. One node on 127.0.0.1, stopped at the
//! end; every wait is on a condition with a deadline.

use std::time::{Duration, Instant};

use simple_raft::wire::{ClientOp, ClientReply};
use simple_raft::{Client, Config, Metrics, Node, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

async fn metrics_until(node: &Node, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = node.metrics().await.expect("metrics");
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the node closed `stream` (reads end) within `within`.
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stalled_and_greedy_connections_are_closed_and_counted() {
    const SLOTS: usize = 8;
    const FRAME_BYTES_MAX: usize = 1 << 20;
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), vec![]);
    config.heartbeat_ms = 20;
    config.leader_timeout_ms = 150;
    config.election_timeout_ms = 150;
    config.tcp_connections_max = SLOTS;
    config.tcp_first_frame_ms = 300;
    config.stream_frame_bytes_max = FRAME_BYTES_MAX;
    config.tcp_read_bytes_max = FRAME_BYTES_MAX;
    let node = Node::start(config).await.unwrap();
    node.wait_for(WAIT, |s| s.state == State::Leader)
        .await
        .unwrap();
    let addr = node.addr();

    // Eviction: three times the slots, all silent; each one past the
    // slots takes the slot of the oldest.
    let mut idle = Vec::new();
    for _ in 0..3 * SLOTS {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    metrics_until(&node, "evictions", |m| m.tcp_evicted >= 2 * SLOTS as u64).await;
    // A client still gets in, and its connection is kept.
    let reply = Client::new(addr, 0)
        .request(ClientOp::Status)
        .await
        .unwrap();
    assert!(matches!(reply, ClientReply::Status(_)), "{reply:?}");

    // The first-frame deadline: the silent ones that are left are closed.
    metrics_until(&node, "first-frame closes", |m| {
        m.tcp_first_frame_closed >= 1
    })
    .await;
    for stream in &mut idle {
        assert!(closed(stream, WAIT).await, "an idle connection stays open");
    }
    drop(idle);

    // A stalled announcement costs one chunk and is closed at the deadline.
    let before = node.metrics().await.unwrap().tcp_first_frame_closed;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(&(FRAME_BYTES_MAX as u32).to_be_bytes())
        .await
        .unwrap();
    stalled.write_all(b"SR\x01").await.unwrap();
    assert!(
        closed(&mut stalled, WAIT).await,
        "a stalled frame stays open"
    );
    metrics_until(&node, "the stalled close", |m| {
        m.tcp_first_frame_closed > before
    })
    .await;

    // The read budget: two connections each send most of a largest frame;
    // together they need more than the budget, so one of them is closed.
    let chunk = vec![0u8; 64 * 1024];
    let mut greedy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&(FRAME_BYTES_MAX as u32).to_be_bytes())
            .await
            .unwrap();
        greedy.push(stream);
    }
    'send: for _ in 0..12 {
        for stream in &mut greedy {
            if stream.write_all(&chunk).await.is_err() {
                break 'send;
            }
        }
    }
    metrics_until(&node, "a budget close", |m| m.tcp_budget_closed >= 1).await;
    drop(greedy);

    // And the node still serves.
    let reply = Client::new(addr, 0)
        .request(ClientOp::Set {
            key: "after".into(),
            value: "flood".into(),
        })
        .await
        .unwrap();
    assert!(matches!(reply, ClientReply::Written { .. }), "{reply:?}");
    node.shutdown().await.unwrap();
}
