//! Nodes on real sockets (127.0.0.1, ephemeral ports). Every wait is on a
//! condition with a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use simple_raft::{Config, Node, State};

const WAIT: Duration = Duration::from_secs(10);

fn config(join: Vec<SocketAddr>) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), join);
    config.heartbeat_ms = 20;
    config.leader_timeout_ms = 150;
    config.election_timeout_ms = 150;
    config.member_silence_ms = Some(2_000);
    config
}

async fn cluster(n: usize) -> Vec<Node> {
    let first = Node::start(config(vec![])).await.unwrap();
    let seed = first.addr();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(Node::start(config(vec![seed])).await.unwrap());
    }
    for node in &nodes {
        node.wait_for(WAIT, |s| {
            s.members.len() == n && s.members.iter().all(|m| m.voter)
        })
        .await
        .unwrap_or_else(|e| panic!("{} did not see {n} voters: {e}", node.addr()));
    }
    nodes
}

fn leaders(nodes: &[Node]) -> Vec<SocketAddr> {
    nodes
        .iter()
        .filter(|n| n.state() == State::Leader)
        .map(|n| n.addr())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_writes_through_a_follower_reach_all() {
    let nodes = cluster(3).await;
    assert_eq!(leaders(&nodes).len(), 1);
    let follower = nodes.iter().find(|n| n.state() != State::Leader).unwrap();
    let version = follower.set("color", "blue").await.unwrap();
    for node in &nodes {
        node.wait_for(WAIT, |s| s.version >= version).await.unwrap();
        assert_eq!(node.get("color").await.unwrap().as_deref(), Some("blue"));
    }
}
