//! The public handle of a running node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::core::{Command, Role};
use crate::driver::{self, Inbound, Requester, SharedMap};
use crate::error::Error;
use crate::status::{Metrics, State, Status};
use crate::wire::Keyring;

/// A running node. Dropping it stops the node at once (as a crash would);
/// [`Node::leave`] and [`Node::shutdown`] stop it gracefully.
pub struct Node {
    requester: Requester,
    data_tx: Arc<watch::Sender<SharedMap>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr()).finish()
    }
}

impl Node {
    /// Starts a node: binds its sockets and joins (or founds) the cluster
    /// in the background. Must be called within a tokio runtime.
    pub async fn start(config: Config) -> Result<Node, Error> {
        let (shared, data_tx, task) = driver::spawn(config).await?;
        Ok(Node {
            requester: Requester::new(shared),
            data_tx,
            task: Some(task),
        })
    }

    /// The original design's `Init(address, nodelist, updateInterval,
    /// leaderTimeout, electionTimeout)`. An empty `nodelist` founds a
    /// cluster.
    pub async fn init(
        address: &str,
        nodelist: &[&str],
        update_interval: Duration,
        leader_timeout: Duration,
        election_timeout: Duration,
    ) -> Result<Node, Error> {
        let parse = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|e| Error::Invalid(format!("address {a:?}: {e}")))
        };
        let join = nodelist
            .iter()
            .map(|a| parse(a))
            .collect::<Result<_, _>>()?;
        let config = Config::new(parse(address)?, join).with_timeouts(
            update_interval,
            leader_timeout,
            election_timeout,
        );
        Node::start(config).await
    }

    /// The node's address in the member list: [`Config::advertise`] when
    /// set, else where it listens (the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.requester.shared.addr
    }

    /// The original's `Update`: the map becomes `map`. Returns the committed
    /// version once a majority has it.
    ///
    /// Takes a [`SharedMap`] or a `BTreeMap<String, String>`. A map derived
    /// from [`Node::data`] (with `insert` and `remove`) costs in proportion
    /// to what changed; any other map costs one comparison pass on the
    /// node, and only the changed pairs are replicated.
    pub async fn update(&self, map: impl Into<SharedMap>) -> Result<u64, Error> {
        self.requester
            .write(Command::Update { map: map.into() })
            .await
    }

    /// Sets one key; returns the committed version.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<u64, Error> {
        let command = Command::Set {
            key: key.into(),
            value: value.into(),
        };
        self.requester.write(command).await
    }

    /// Removes one key; returns the committed version.
    pub async fn remove(&self, key: impl Into<String>) -> Result<u64, Error> {
        self.requester
            .write(Command::Remove { key: key.into() })
            .await
    }

    /// The local value of `key`: fast, and as stale as
    /// [`Status::heartbeat_age`] says.
    pub async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .requester
            .local_read(Some(key.to_string()))
            .await?
            .value)
    }

    /// The local committed map, shared (not copied) while it does not change.
    pub async fn data(&self) -> Result<SharedMap, Error> {
        let read = self.requester.local_read(None).await?;
        Ok(read.map.unwrap_or_default())
    }

    /// The map after confirming with a quorum that it is current: it
    /// includes every write that committed before the call.
    pub async fn read_linearizable(&self) -> Result<SharedMap, Error> {
        self.requester.read_linearizable().await?;
        self.data().await
    }

    /// The node's role.
    pub fn state(&self) -> State {
        self.requester.shared.status.borrow().state
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        self.requester.shared.status.borrow().clone()
    }

    /// A watch that changes with role, term, leader, members or version.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.requester.shared.status.clone()
    }

    /// A watch of the committed map.
    pub fn watch_data(&self) -> watch::Receiver<SharedMap> {
        let receiver = self.data_tx.subscribe();
        // Seed it with the current map: the driver publishes on changes.
        let requester = self.requester.clone();
        let sender = self.data_tx.clone();
        tokio::spawn(async move {
            if let Ok(read) = requester.local_read(None).await {
                sender.send_replace(read.map.unwrap_or_default());
            }
        });
        receiver
    }

    /// Waits until `ready` holds for the status, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&Status) -> bool,
    ) -> Result<Status, Error> {
        let mut status = self.subscribe();
        let wait = async move { status.wait_for(|s| ready(s)).await.map(|s| s.clone()) };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Replaces the cluster keys of the running node (see
    /// [`Config::cluster_keys`]): frames sent from now on are signed with the
    /// new primary, frames received are checked against the new keys. Done
    /// step by step on every node and client, it rotates a key without
    /// downtime (see `docs/WIRE.md`). Returns once the node uses them.
    pub async fn set_cluster_keys(&self, keys: Option<Keyring>) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.requester
            .shared
            .inbox
            .send(Inbound::SetKeys { keys, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Counters of this node.
    pub async fn metrics(&self) -> Result<Metrics, Error> {
        let (reply, answer) = oneshot::channel();
        self.requester
            .shared
            .inbox
            .send(Inbound::Metrics { reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Leaves the cluster (a leader hands over leadership first), then
    /// stops.
    pub async fn leave(mut self) -> Result<(), Error> {
        let result = match self.requester.command(Command::Leave, None).await? {
            Ok(_) => Ok(()),
            Err(error) => Err(Error::from_request(error)),
        };
        self.stop().await;
        result
    }

    /// Stops the node, handing over leadership first if it leads. It stays
    /// a member; the leader removes it once it has been silent for
    /// `member_silence_ms`.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if self.state() == Role::Leader {
            // Best effort: if no voter can take over, stop anyway.
            let _ = self
                .requester
                .command(Command::TransferLeadership, None)
                .await;
        }
        self.stop().await;
        Ok(())
    }

    /// Stops the node at once, without handing anything over: what a crash
    /// looks like to the rest of the cluster.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn stop(&mut self) {
        let _ = self.requester.shared.inbox.send(Inbound::Stop).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
