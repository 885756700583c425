//! The request path of a node, shared by the [`crate::Node`] handle and the
//! TCP connections of clients: a command goes to the node's task, and a
//! write this node cannot commit (it does not lead) is forwarded to the
//! leader with a [`Client`].

use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::{Inbound, LocalRead, Shared};
use crate::client::Client;
use crate::core::{Command, RequestError};
use crate::error::Error;
use crate::status::Status;
use crate::wire::{ClientOp, ClientReply, WriteTag};

/// Sends requests to the node's task, forwarding writes to the leader and
/// retrying until the request timeout. Shared by [`crate::Node`] and the TCP
/// connections of CLI clients.
#[derive(Clone)]
pub(crate) struct Requester {
    pub(crate) shared: Shared,
}

impl Requester {
    pub(crate) fn new(shared: Shared) -> Requester {
        Requester { shared }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.shared.cfg.request_timeout_ms)
    }

    pub(crate) async fn command(
        &self,
        command: Command,
        tag: Option<WriteTag>,
    ) -> Result<Result<u64, RequestError>, Error> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .inbox
            .send(Inbound::Command {
                command,
                tag,
                reply,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    pub(crate) async fn local_read(&self, key: Option<String>) -> Result<LocalRead, Error> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .inbox
            .send(Inbound::Read { key, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// A status receiver with the current status marked seen: taken before
    /// an attempt, so that a change during the attempt (a new leader while a
    /// write was being forwarded) ends the wait after it at once.
    fn status_seen(&self) -> watch::Receiver<Status> {
        let mut status = self.shared.status.clone();
        status.borrow_and_update();
        status
    }

    /// Waits (at most until `deadline`, and at most two heartbeats) for the
    /// status to change since `status` was last seen, e.g. for a leader to
    /// be known.
    async fn wait_for_change(&self, status: &mut watch::Receiver<Status>, deadline: Instant) {
        let cap = Duration::from_millis(2 * self.shared.cfg.heartbeat_ms);
        let wait = deadline.saturating_duration_since(Instant::now()).min(cap);
        let _ = tokio::time::timeout(wait, status.changed()).await;
    }

    /// A write in this node's session: local if this node leads, else
    /// forwarded to the leader; sent again after an unknown outcome until
    /// it commits or the request timeout passes. The session makes every
    /// attempt after the first apply as nothing if an earlier one applied.
    pub(crate) async fn write(&self, command: Command) -> Result<u64, Error> {
        let deadline = Instant::now() + self.timeout();
        let generation = self.shared.status.borrow().generation;
        let write = self
            .shared
            .session
            .begin(generation, |id| {
                self.attempts(Command::OpenSession { id }, None, deadline)
            })
            .await?;
        let result = self.attempts(command, Some(write.tag), deadline).await;
        if matches!(result, Err(Error::SessionExpired)) {
            self.shared.session.expired(&write);
        }
        result
    }

    /// A write in its client's session (`tag` came with it): forwarded and
    /// sent again like [`Requester::write`], always with that tag.
    pub(crate) async fn write_tagged(&self, command: Command, tag: WriteTag) -> Result<u64, Error> {
        let deadline = Instant::now() + self.timeout();
        self.attempts(command, Some(tag), deadline).await
    }

    /// Sends `command` (with `tag`, for a session write) to the core, or to
    /// the leader when this node does not lead, until it commits or
    /// `deadline` passes. Without a tag only a command that may apply
    /// twice (opening a session) is sent again after an unknown outcome.
    async fn attempts(
        &self,
        command: Command,
        tag: Option<WriteTag>,
        deadline: Instant,
    ) -> Result<u64, Error> {
        let mut outcome_unknown = false;
        loop {
            if Instant::now() >= deadline {
                return Err(if outcome_unknown {
                    Error::Timeout
                } else {
                    Error::NoLeader
                });
            }
            let mut status = self.status_seen();
            match self.command(command.clone(), tag).await? {
                Ok(version) => return Ok(version),
                Err(RequestError::NotLeader {
                    leader: Some(leader),
                }) if leader != self.shared.addr => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let keys = self.shared.keys.get().map(|keys| (*keys).clone());
                    let client = Client::new(leader, self.shared.cfg.cluster_id)
                        .with_pool(self.shared.pool.clone())
                        .with_keys(keys)
                        .with_timeout(remaining)
                        .with_frame_bytes_max(self.shared.cfg.stream_frame_bytes_max);
                    match client.write_tagged(to_op(&command), tag).await {
                        Ok(version) => return Ok(version),
                        Err(Error::Timeout) => outcome_unknown = true,
                        // It reached the leader, which may have committed it.
                        Err(Error::NoAnswer { .. }) => {
                            outcome_unknown = true;
                            self.wait_for_change(&mut status, deadline).await;
                        }
                        Err(
                            Error::NoLeader
                            | Error::Unreachable { .. }
                            | Error::Stopped
                            | Error::NotMember,
                        ) => self.wait_for_change(&mut status, deadline).await,
                        Err(error) => return Err(error),
                    }
                }
                Err(RequestError::NotLeader { .. }) => {
                    self.wait_for_change(&mut status, deadline).await
                }
                Err(RequestError::Uncertain | RequestError::Timeout) => {
                    outcome_unknown = true;
                    self.wait_for_change(&mut status, deadline).await;
                }
                Err(RequestError::Busy { .. }) => self.wait_for_change(&mut status, deadline).await,
                Err(error) => return Err(Error::from_request(error)),
            }
        }
    }

    /// Confirms with a quorum, retrying while there is no leader; returns
    /// the version the node's state has reached.
    pub(crate) async fn read_linearizable(&self) -> Result<u64, Error> {
        let deadline = Instant::now() + self.timeout();
        loop {
            if Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            let mut status = self.status_seen();
            match self.command(Command::ReadLinearizable, None).await? {
                Ok(version) => return Ok(version),
                Err(RequestError::NotLeader { .. } | RequestError::Timeout) => {
                    self.wait_for_change(&mut status, deadline).await
                }
                Err(error) => return Err(Error::from_request(error)),
            }
        }
    }

    /// Serves a client's request; `tag` is the session request a write is.
    pub(crate) async fn client(&self, op: ClientOp, tag: Option<WriteTag>) -> ClientReply {
        let command = match op {
            ClientOp::Status => {
                return ClientReply::Status(self.shared.status.borrow().to_wire());
            }
            ClientOp::Get { key, linearizable } => {
                return self
                    .client_get(key, linearizable)
                    .await
                    .unwrap_or_else(failed);
            }
            ClientOp::OpenSession { id } => {
                let deadline = Instant::now() + self.timeout();
                return self
                    .attempts(Command::OpenSession { id }, None, deadline)
                    .await
                    .map_or_else(failed, |version| ClientReply::Written { version });
            }
            ClientOp::Set { key, value } => Command::Set { key, value },
            ClientOp::Remove { key } => Command::Remove { key },
            ClientOp::Update { map } => Command::Update {
                map: map.into_iter().collect(),
            },
        };
        let written = match tag {
            Some(tag) => self.write_tagged(command, tag).await,
            // In a keyed cluster a recorded request stays valid forever:
            // only a session write is safe to take from the network, as a
            // copy sent again applies as nothing.
            None if self.shared.keys.get().is_some() => Err(Error::Invalid(
                "a cluster with keys takes writes only in a session (this client is too old)"
                    .into(),
            )),
            None => self.write(command).await,
        };
        written.map_or_else(failed, |version| ClientReply::Written { version })
    }

    async fn client_get(
        &self,
        key: Option<String>,
        linearizable: bool,
    ) -> Result<ClientReply, Error> {
        if linearizable {
            self.read_linearizable().await?;
        }
        let single = key.is_some();
        let read = self.local_read(key).await?;
        Ok(if single {
            ClientReply::Value {
                version: read.version,
                value: read.value,
            }
        } else {
            let map = read.map.unwrap_or_default();
            ClientReply::Map {
                version: read.version,
                map: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }
        })
    }
}

/// A failed request as a client is told of it.
fn failed(error: Error) -> ClientReply {
    ClientReply::Failed {
        failure: error.failure(),
        message: error.to_string(),
    }
}

fn to_op(command: &Command) -> ClientOp {
    match command {
        Command::Set { key, value } => ClientOp::Set {
            key: key.clone(),
            value: value.clone(),
        },
        Command::Remove { key } => ClientOp::Remove { key: key.clone() },
        Command::Update { map } => ClientOp::Update {
            map: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        },
        Command::OpenSession { id } => ClientOp::OpenSession { id: *id },
        // Only writes are forwarded.
        Command::ReadLinearizable | Command::Leave | Command::TransferLeadership => {
            ClientOp::Status
        }
    }
}
