//! TCP: serving connections (snapshots, client requests, large protocol
//! frames), writing large frames to peers, and fetching snapshots.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::admission::Slot;
use super::replay::unix_ms;
use super::stream_io::{
    read_frame, read_frame_bytes_within, write_frame, write_frame_bytes, ReadError,
};
use super::{DriverCounters, Inbound, Shared};
use crate::node::Requester;
use crate::wire::{
    decode_frame_keyed, ClientFailure, ClientOp, ClientReply, ClientRequest, ClientResponse,
    DecodeLimits, Frame, Message, NodeId, Snapshot, SnapshotRequest,
};

/// Serves one accepted connection until it closes, idles too long, sends
/// something wrong or, before its first complete frame, is evicted by a
/// newer connection (see `admission.rs`).
pub(super) async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: Shared, mut slot: Slot) {
    let _ = stream.set_nodelay(true);
    let cfg = shared.cfg.clone();
    let limits = DecodeLimits {
        cluster_id: Some(cfg.cluster_id),
        frame_bytes_max: cfg.stream_frame_bytes_max,
    };
    let idle = Duration::from_millis(cfg.tcp_idle_ms);
    // Never longer than the idle limit that applies afterwards.
    let first_frame = Duration::from_millis(cfg.tcp_first_frame_ms.min(cfg.tcp_idle_ms));
    let requester = Requester::new(shared.clone());
    let budget = slot.budget().clone();
    let mut proven = false;
    loop {
        let deadline = if proven { idle } else { first_frame };
        let read = tokio::time::timeout(
            deadline,
            read_frame_bytes_within(&mut stream, limits.frame_bytes_max, Some(&budget)),
        );
        let read = tokio::select! {
            read = read => read,
            _ = &mut slot.evicted, if !proven => {
                shared.counters.tcp_evicted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let body = match read {
            Ok(Err(ReadError::Closed)) => return,
            Err(_) if !proven => {
                // No complete frame in time: closed, and counted.
                shared
                    .counters
                    .tcp_first_frame_closed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                // Idle, or stalled inside a frame: closed, and counted.
                shared
                    .counters
                    .tcp_idle_closed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(ReadError::Budget)) => {
                shared
                    .counters
                    .tcp_budget_closed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(error)) => {
                shared
                    .counters
                    .tcp_bad_frames
                    .fetch_add(1, Ordering::Relaxed);
                if let ReadError::Decode(error) = &error {
                    shared.counters.count_decode_error(error.reason());
                }
                debug!(%peer, %error, "closing connection");
                return;
            }
            Ok(Ok(body)) => body,
        };
        // The keys of this moment: a rotation applies from the next frame.
        let keys = shared.keys.get();
        // The tag is checked before any field of the frame is trusted.
        let frame = match decode_frame_keyed(&body, &limits, keys.as_deref()) {
            Ok(frame) => frame,
            Err(error) => {
                shared
                    .counters
                    .tcp_bad_frames
                    .fetch_add(1, Ordering::Relaxed);
                shared.counters.count_decode_error(error.reason());
                debug!(%peer, %error, "closing connection");
                return;
            }
        };
        if matches!(
            frame.message,
            Message::SnapshotRequest(_) | Message::ClientRequest(_) | Message::Append(_)
        ) && !proven
        {
            proven = true;
            slot.prove();
        }
        let answer = match frame.message {
            Message::SnapshotRequest(_) => {
                let (reply, answer) = oneshot::channel();
                if shared
                    .inbox
                    .send(Inbound::ServeSnapshot { reply })
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(snapshot) = answer.await else {
                    return;
                };
                shared
                    .counters
                    .snapshots_served
                    .fetch_add(1, Ordering::Relaxed);
                Some(Message::Snapshot(snapshot))
            }
            Message::ClientRequest(request) => {
                let request_id = request.request_id;
                let reply = match refuse_replay(&shared, &request) {
                    Some(refused) => refused,
                    None => requester.client(request.op).await,
                };
                Some(Message::ClientResponse(ClientResponse {
                    request_id,
                    reply,
                }))
            }
            Message::Append(_) => {
                // A batch too large for a datagram: the core takes it as it
                // would a datagram.
                let message = Inbound::StreamFrame {
                    from: peer,
                    bytes: body,
                };
                if shared.inbox.send(message).await.is_err() {
                    return;
                }
                None
            }
            _ => {
                shared
                    .counters
                    .tcp_bad_frames
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if let Some(message) = answer {
            let frame = Frame::new(cfg.cluster_id, NodeId::UNASSIGNED, 0, message);
            // Signed with the keys of now: a rotation may have happened
            // while the request was served.
            let keys = shared.keys.get();
            if write_frame(
                &mut stream,
                &frame,
                cfg.stream_frame_bytes_max,
                keys.as_deref(),
            )
            .await
            .is_err()
            {
                return;
            }
        }
    }
}

/// In a keyed cluster, a write must be recent and new to this node (see
/// `replay.rs`); returns the refusal to answer, if any. Reads change
/// nothing and are served whenever they come.
fn refuse_replay(shared: &Shared, request: &ClientRequest) -> Option<ClientReply> {
    let write = match request.op {
        ClientOp::Status | ClientOp::Get { .. } => false,
        ClientOp::Set { .. } | ClientOp::Remove { .. } | ClientOp::Update { .. } => true,
    };
    if !write || shared.keys.get().is_none() {
        return None;
    }
    let admitted = shared
        .replay
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(request.request_id, unix_ms());
    let refusal = admitted.err()?;
    debug!(refusal = %refusal.message(), "client write refused");
    let failure = match refusal {
        super::replay::Refusal::Busy => ClientFailure::Busy,
        _ => ClientFailure::Invalid,
    };
    Some(ClientReply::Failed {
        failure,
        message: refusal.message(),
    })
}

/// Writes queued frames to `to` over one connection; ends on the first
/// error or after `idle` without frames (dropping what is queued, which
/// the protocol resends).
pub(super) async fn peer_writer(
    to: SocketAddr,
    mut queue: mpsc::Receiver<Bytes>,
    idle: Duration,
    counters: Arc<DriverCounters>,
) {
    let mut stream = match tokio::time::timeout(idle, TcpStream::connect(to)).await {
        Ok(Ok(stream)) => stream,
        _ => {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    while let Ok(Some(frame)) = tokio::time::timeout(idle, queue.recv()).await {
        if write_frame_bytes(&mut stream, &frame).await.is_err() {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// Asks `from` for its snapshot.
pub(super) async fn fetch_snapshot(from: SocketAddr, shared: &Shared) -> Result<Snapshot, String> {
    let cfg = &shared.cfg;
    let exchange = async {
        let mut stream = TcpStream::connect(from).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let request = Frame::new(
            cfg.cluster_id,
            NodeId::UNASSIGNED,
            0,
            Message::SnapshotRequest(SnapshotRequest),
        );
        let keys = shared.keys.get();
        write_frame(
            &mut stream,
            &request,
            cfg.stream_frame_bytes_max,
            keys.as_deref(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let limits = DecodeLimits {
            cluster_id: Some(cfg.cluster_id),
            frame_bytes_max: cfg.stream_frame_bytes_max,
        };
        let keys = shared.keys.get();
        let read = read_frame(&mut stream, &limits, keys.as_deref()).await;
        match read.map_err(|e| {
            if let ReadError::Decode(error) = &e {
                shared.counters.count_decode_error(error.reason());
            }
            e.to_string()
        })? {
            Frame {
                message: Message::Snapshot(snapshot),
                ..
            } => Ok(snapshot),
            other => Err(format!("unexpected {}", other.message.kind().name())),
        }
    };
    let timeout = Duration::from_millis(cfg.request_timeout_ms.max(cfg.tcp_idle_ms));
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}
