//! The subcommands that talk to a node over TCP: `status`, `get`, `put`,
//! `delete` and `update`.

use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use simple_raft::wire::{
    encode_stream_frame_signed, ClientFailure, ClientOp, ClientReply, ClientRequest, Frame,
    Keyring, Message, NodeId, NodeStatus, STREAM_FRAME_BYTES_MAX_DEFAULT,
};
use simple_raft::{Client, Error};

use super::run::read_key_file;
use super::{
    mapfile, println, runtime, DeleteArgs, Failure, GetArgs, NodeArgs, Outcome, PutArgs,
    StatusArgs, UpdateArgs,
};

/// Whether a request may change the state: a timed-out write has an
/// unknown outcome, a timed-out read does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// Sends one request and returns the reply, or the failure to report.
fn request(node: &NodeArgs, op: ClientOp) -> Result<ClientReply, Failure> {
    let keys = keys(node)?;
    let kind = match op {
        ClientOp::Status | ClientOp::Get { .. } => Kind::Read,
        ClientOp::Set { .. }
        | ClientOp::Remove { .. }
        | ClientOp::Update { .. }
        | ClientOp::OpenSession { .. } => Kind::Write,
    };
    check_size(node, &op, keys.as_ref())?;
    let client = Client::new(node.node, node.cluster_id)
        .with_keys(keys)
        .with_timeout(Duration::from_millis(node.timeout_ms));
    // A write goes in a session, so that the client's own resend (on a
    // connection that broke) or the node's (forwarding it through a
    // change of leader) applies at most once.
    let reply = runtime(false)?
        .block_on(async {
            match kind {
                Kind::Write => client.write_reply(op).await,
                Kind::Read => client.request(op).await,
            }
        })
        .map_err(|e| transport_failure(node, kind, e))?;
    match reply {
        ClientReply::Failed { failure, message } => Err(refused(node, kind, failure, &message)),
        reply => Ok(reply),
    }
}

/// The cluster keys of `--cluster-key-file`; a file that cannot be used is
/// a usage error.
fn keys(node: &NodeArgs) -> Result<Option<Keyring>, Failure> {
    node.cluster_key_file
        .as_deref()
        .map(read_key_file)
        .transpose()
        .map_err(Failure::usage)
}

/// Refuses a request too large to send, before anything is sent.
fn check_size(node: &NodeArgs, op: &ClientOp, keys: Option<&Keyring>) -> Outcome {
    let frame = Frame::new(
        node.cluster_id,
        NodeId::UNASSIGNED,
        0,
        Message::ClientRequest(ClientRequest {
            request_id: 0,
            op: op.clone(),
            tag: Some(simple_raft::wire::WriteTag {
                session: u64::MAX,
                seq: u64::MAX,
                floor: u64::MAX,
            }),
        }),
    );
    let mut out = BytesMut::new();
    encode_stream_frame_signed(&frame, &mut out, STREAM_FRAME_BYTES_MAX_DEFAULT, keys)
        .map(|_| ())
        .map_err(|e| Failure::op(format!("request too large, nothing changed: {e}")))
}

/// A request that got no answer.
fn transport_failure(node: &NodeArgs, kind: Kind, error: Error) -> Failure {
    let addr = node.node;
    match error {
        Error::Timeout => {
            let outcome = match kind {
                Kind::Read => "",
                Kind::Write => "; the write may or may not have committed",
            };
            Failure::op(format!(
                "no answer from {addr} within {} ms{outcome}",
                node.timeout_ms
            ))
        }
        Error::NoAnswer { message, .. } => {
            let outcome = match kind {
                Kind::Read => "",
                Kind::Write => "; the write may or may not have committed",
            };
            let hint = if message == "closed" {
                format!(
                    " (are --cluster-id {} and {} right?)",
                    node.cluster_id,
                    match &node.cluster_key_file {
                        Some(file) => format!("the keys of --cluster-key-file {}", file.display()),
                        None => "the lack of --cluster-key-file".to_string(),
                    }
                )
            } else {
                format!(": {message}")
            };
            Failure::op(format!(
                "{addr} closed the connection without answering{hint}{outcome}"
            ))
        }
        Error::Unreachable { message, .. } => {
            Failure::op(format!("cannot reach {addr}: {message}"))
        }
        other => Failure::op(format!("{addr}: {other}")),
    }
}

/// A request the node answered with a failure; the node's message says
/// what went wrong (a timed-out write already says its outcome is unknown).
fn refused(node: &NodeArgs, kind: Kind, failure: ClientFailure, message: &str) -> Failure {
    let addr = node.node;
    let uncertain = matches!(failure, ClientFailure::Timeout | ClientFailure::Uncertain);
    if kind == Kind::Write && !uncertain {
        Failure::op(format!("{message} (via {addr}); nothing changed"))
    } else {
        Failure::op(format!("{message} (via {addr})"))
    }
}

fn unexpected(node: &NodeArgs, reply: &ClientReply) -> Failure {
    Failure::op(format!("{}: unexpected answer {reply:?}", node.node))
}

pub fn status(args: StatusArgs) -> Outcome {
    let reply = request(&args.node, ClientOp::Status)?;
    let ClientReply::Status(status) = reply else {
        return Err(unexpected(&args.node, &reply));
    };
    if args.json {
        println(&status_json(&status).to_string())
    } else {
        println(&status_text(&status))
    }
}

/// `id` is the node's address; `member_id` its member number, once joined.
fn status_json(status: &NodeStatus) -> serde_json::Value {
    let members: Vec<&str> = status.members.iter().map(|m| m.addr.as_str()).collect();
    let details: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.id.0,
                "addr": m.addr,
                "voter": m.voter,
                "incarnation": m.incarnation,
            })
        })
        .collect();
    json!({
        "id": status.addr,
        "member_id": status.id.map(|id| id.0),
        "state": status.state,
        "term": status.term,
        "leader": status.leader,
        "members": members,
        "member_details": details,
        "version": status.version,
        "since_heartbeat_ms": status.since_heartbeat_ms,
        "generation": status.generation.map(|g| format!("{g:016x}")),
    })
}

fn status_text(status: &NodeStatus) -> String {
    let member_id = status
        .id
        .map_or_else(|| "not a member yet".to_string(), |id| id.to_string());
    let leader = status.leader.as_deref().unwrap_or("unknown");
    let heartbeat = status
        .since_heartbeat_ms
        .map_or_else(|| "never".to_string(), |ms| format!("{ms} ms ago"));
    let mut lines = vec![
        format!("node       {} ({member_id})", status.addr),
        format!("state      {}", status.state),
        format!("term       {}", status.term),
        format!("leader     {leader}"),
        format!("version    {}", status.version),
        format!("heartbeat  {heartbeat}"),
        format!("members    {}", status.members.len()),
    ];
    for m in &status.members {
        let role = if m.voter { "voter" } else { "non-voter" };
        lines.push(format!("  {} ({}, {role})", m.addr, m.id));
    }
    lines.join("\n")
}

pub fn get(args: GetArgs) -> Outcome {
    let op = ClientOp::Get {
        key: args.key.clone(),
        linearizable: args.linearizable,
    };
    let reply = request(&args.node, op)?;
    match (reply, args.key) {
        (ClientReply::Value { value: None, .. }, Some(key)) => {
            Err(Failure::op(format!("key not found: {key:?}")))
        }
        (
            ClientReply::Value {
                value: Some(value), ..
            },
            Some(key),
        ) => {
            if args.json {
                println(&json!({ "key": key, "value": value }).to_string())
            } else {
                println(&value)
            }
        }
        (ClientReply::Map { map, .. }, None) => {
            if args.json {
                let object: serde_json::Map<String, serde_json::Value> = map
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                println(&serde_json::Value::Object(object).to_string())
            } else {
                let text: String = map.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                super::print(&text)
            }
        }
        (reply, _) => Err(unexpected(&args.node, &reply)),
    }
}

fn write(node: &NodeArgs, op: ClientOp) -> Outcome {
    match request(node, op)? {
        ClientReply::Written { version } => println(&format!("ok version={version}")),
        reply => Err(unexpected(node, &reply)),
    }
}

pub fn put(args: PutArgs) -> Outcome {
    let op = ClientOp::Set {
        key: args.key,
        value: args.value,
    };
    write(&args.node, op)
}

pub fn delete(args: DeleteArgs) -> Outcome {
    write(&args.node, ClientOp::Remove { key: args.key })
}

pub fn update(args: UpdateArgs) -> Outcome {
    keys(&args.node)?;
    let map = mapfile::read(&args.file, STREAM_FRAME_BYTES_MAX_DEFAULT).map_err(Failure::op)?;
    let op = ClientOp::Update {
        map: map.into_iter().collect(),
    };
    write(&args.node, op)
}
