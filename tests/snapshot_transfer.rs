//! Snapshots larger than one stream frame, and the limit on the map's
//! size, on real sockets (127.0.0.1, ephemeral ports). Every wait is on a
//! condition with a deadline, and every node a test starts is stopped at
//! its end (a test that panics drops its nodes, which aborts them).

use std::net::SocketAddr;
use std::time::Duration;

use simple_raft::wire::{ClientFailure, ClientOp, ClientReply, Keyring};
use simple_raft::{Client, Config, Error, Node, State};

const WAIT: Duration = Duration::from_secs(20);
/// Frames of at most 256 KiB: the state below is four times that.
const FRAME_BYTES_MAX: usize = 256 * 1024;
/// Values of 64 KiB, sixteen of them: 1 MiB of state.
const VALUE_BYTES: usize = 64 * 1024;
const VALUES: usize = 16;

fn config(join: Vec<SocketAddr>) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), join);
    config.heartbeat_ms = 20;
    config.leader_timeout_ms = 150;
    config.election_timeout_ms = 150;
    config.member_silence_ms = Some(2_000);
    config.stream_frame_bytes_max = FRAME_BYTES_MAX;
    config.value_bytes_max = VALUE_BYTES;
    // Every chunk frame is signed and checked like any other frame.
    config.cluster_keys = Some(Keyring::new([5; 32]));
    config
}

/// Starts the founder, waits for it to lead, then starts `n - 1` more
/// nodes joining through it, each a voter before the next starts.
async fn cluster(n: usize, make: impl Fn(Vec<SocketAddr>) -> Config) -> Vec<Node> {
    let founder = make(vec![]);
    let listen = Duration::from_millis(
        founder.leader_timeout_ms * 3 / 2
            + founder.heartbeat_ms * simple_raft::core::FOUND_LISTEN_HEARTBEATS,
    );
    let first = Node::start(founder).await.unwrap();
    first
        .wait_for(WAIT + listen, |s| s.state == State::Leader)
        .await
        .expect("the first node founds");
    let seed = first.addr();
    let mut nodes = vec![first];
    for i in 1..n {
        let node = Node::start(make(vec![seed])).await.unwrap();
        let addr = node.addr().to_string();
        node.wait_for(WAIT, |s| {
            s.members.len() == i + 1 && s.members.iter().any(|m| m.addr == addr && m.voter)
        })
        .await
        .unwrap_or_else(|e| panic!("{addr} did not become a voter: {e}"));
        nodes.push(node);
    }
    nodes
}

async fn shutdown_all(nodes: Vec<Node>) {
    for node in nodes {
        tokio::time::timeout(WAIT, node.shutdown())
            .await
            .expect("a node stops within the deadline")
            .expect("shutdown succeeds");
    }
}

fn leader_of(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .position(|n| n.state() == State::Leader)
        .expect("a leader")
}

/// Starts a node at `addr`, retrying (bounded) while the address is still
/// held by the node that was just stopped there.
async fn start_at(addr: SocketAddr, join: Vec<SocketAddr>) -> Node {
    let mut config = config(join);
    config.listen = addr;
    for _ in 0..200 {
        match Node::start(config.clone()).await {
            Ok(node) => return node,
            Err(Error::Bind { .. }) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(error) => panic!("starting at {addr}: {error}"),
        }
    }
    panic!("{addr} stayed taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_catch_up_a_state_four_times_larger_than_a_stream_frame_in_chunks() {
    let mut nodes = cluster(3, config).await;
    let leader = leader_of(&nodes);
    let mut version = 0;
    for i in 0..VALUES {
        // One hex digit, repeated: i < 16.
        let value = format!("{i:x}").repeat(VALUE_BYTES);
        version = nodes[leader]
            .set(format!("key-{i:02}"), value)
            .await
            .unwrap();
    }
    let map = nodes[leader].data().await.unwrap();
    let state_bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(state_bytes >= 4 * FRAME_BYTES_MAX, "{state_bytes} bytes");

    // A new member starts with an empty log: it fetches the snapshot.
    let fourth = Node::start(config(vec![nodes[0].addr()])).await.unwrap();
    fourth
        .wait_for(WAIT, |s| s.version >= version)
        .await
        .expect("the new node catches up");
    assert_eq!(fourth.data().await.unwrap(), map);
    let metrics = fourth.metrics().await.unwrap();
    assert!(metrics.snapshots_fetched >= 1, "{metrics:?}");
    assert_eq!(metrics.snapshot_fetch_errors, 0, "{metrics:?}");
    nodes.push(fourth);

    // A follower restarted without a data directory is a new incarnation
    // at the same address: it too catches up through a snapshot, and the
    // cluster gets its voter back.
    let follower = (0..4).find(|i| *i != leader_of(&nodes)).unwrap();
    let addr = nodes[follower].addr();
    nodes.remove(follower).shutdown().await.unwrap();
    let seed = nodes[0].addr();
    let restarted = start_at(addr, vec![seed]).await;
    restarted
        .wait_for(WAIT, |s| {
            s.version >= version
                && s.members
                    .iter()
                    .any(|m| m.addr == addr.to_string() && m.voter)
        })
        .await
        .expect("the restarted node catches up and votes again");
    assert_eq!(restarted.data().await.unwrap(), map);
    assert!(restarted.metrics().await.unwrap().snapshots_fetched >= 1);
    nodes.push(restarted);
    let mut served = 0;
    for node in &nodes {
        served += node.metrics().await.unwrap().snapshots_served;
    }
    assert!(served >= 2, "{served} snapshots served");
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_beyond_state_bytes_max_fails_and_changes_nothing() {
    let make = |join| {
        let mut config = config(join);
        config.value_bytes_max = 32 * 1024;
        config.state_bytes_max = 100 * 1024;
        config
    };
    let nodes = cluster(1, make).await;
    let node = &nodes[0];
    for i in 0..3 {
        node.set(format!("k{i}"), "x".repeat(30 * 1024))
            .await
            .unwrap();
    }
    // The command line's way in: a client, whose session its first write
    // opens.
    let client = Client::new(node.addr(), 0).with_keyring(Keyring::new([5; 32]));
    client
        .write(ClientOp::Remove {
            key: "absent".into(),
        })
        .await
        .unwrap();
    let before = node.data().await.unwrap();
    let version = node.status().version;
    let error = node
        .set("k3", "x".repeat(30 * 1024))
        .await
        .expect_err("beyond state_bytes_max");
    let message = error.to_string();
    assert!(matches!(error, Error::TooLarge(_)), "{error:?}");
    assert!(message.contains("state_bytes_max"), "{message}");
    // The same through the client.
    let reply = client
        .write_reply(ClientOp::Set {
            key: "k3".into(),
            value: "x".repeat(30 * 1024),
        })
        .await
        .unwrap();
    match reply {
        ClientReply::Failed {
            failure: ClientFailure::TooLarge,
            message,
        } => assert!(message.contains("state_bytes_max"), "{message}"),
        other => panic!("expected a TooLarge failure, got {other:?}"),
    }
    assert_eq!(node.status().version, version, "nothing committed");
    assert_eq!(node.data().await.unwrap(), before, "the map is unchanged");
    // Smaller changes still go in; removing makes room again.
    node.set("k0", "small").await.unwrap();
    node.set("k3", "x".repeat(30 * 1024)).await.unwrap();
    shutdown_all(nodes).await;
}
