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
use super::stream_io::{
    read_frame, read_frame_bytes_within, write_frame, write_frame_bytes, ReadError,
};
use super::{DriverCounters, Inbound, Shared};
use crate::node::Requester;
use crate::wire::{
    decode_frame_keyed, ClientResponse, DecodeLimits, Frame, Keyring, Message, NodeId, Snapshot,
    SnapshotRequest,
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
    // Until a first frame is complete, its length prefix and every chunk of
    // its body must come within this (never longer than the idle limit):
    // a silent or stalled connection goes soon, a large first frame that
    // keeps arriving (an append from the leader) is read whole.
    let first_frame = Duration::from_millis(cfg.tcp_first_frame_ms.min(cfg.tcp_idle_ms));
    let requester = Requester::new(shared.clone());
    let budget = slot.budget().clone();
    let mut proven = false;
    loop {
        let max = limits.frame_bytes_max;
        let read = async {
            if proven {
                let read = read_frame_bytes_within(&mut stream, max, Some(&budget), None);
                tokio::time::timeout(idle, read).await
            } else {
                let read =
                    read_frame_bytes_within(&mut stream, max, Some(&budget), Some(first_frame));
                Ok(read.await)
            }
        };
        let read = tokio::select! {
            read = read => read,
            _ = &mut slot.evicted, if !proven => {
                shared.counters.tcp_evicted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let body = match read {
            Ok(Err(ReadError::Closed)) => return,
            Ok(Err(ReadError::Stalled)) => {
                // A first frame that does not come: closed, and counted.
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
            if !slot.prove() {
                // Evicted while its first frame was being decoded.
                shared.counters.tcp_evicted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            proven = true;
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
                let Ok(served) = answer.await else {
                    return;
                };
                let keys = shared.keys.get();
                let Some(bytes) = served.encoded(keys, cfg.stream_frame_bytes_max) else {
                    return;
                };
                if write_frame_bytes(&mut stream, &bytes).await.is_err() {
                    return;
                }
                shared
                    .counters
                    .snapshots_served
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Message::ClientRequest(request) => {
                let request_id = request.request_id;
                let reply = requester.client(request.op, request.tag).await;
                Some(Message::ClientResponse(ClientResponse {
                    request_id,
                    reply,
                }))
            }
            Message::Append(append) => {
                // A batch too large for a datagram, decoded here rather than
                // on the node's task: the core takes it as it would a
                // datagram.
                let message = Inbound::StreamFrame {
                    from: peer,
                    frame: Frame {
                        message: Message::Append(append),
                        tag: None,
                        ..frame
                    },
                    bytes: body.len(),
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

/// The committed state at one version, as served to peers that fetch it.
///
/// Every snapshot request is the same bytes (sender 0, term 0, an empty
/// payload), so one recorded copy can be replayed at will, and in a keyed
/// cluster its tag stays valid forever. Without a cache each replay would
/// make the node clone its whole map and encode it again. The node's task
/// keeps one of these per committed version, and its frame is encoded once
/// per version and set of keys: a replay then costs a write of bytes that
/// already exist, and nothing new is allocated or computed.
#[derive(Debug)]
pub(crate) struct ServedSnapshot {
    /// The committed version it was taken at.
    pub version: u64,
    cluster_id: u32,
    source: crate::core::SnapshotSource,
    /// The encoded frame body and the keys it was signed with.
    encoded: std::sync::Mutex<Option<(Option<Arc<Keyring>>, Bytes)>>,
}

impl ServedSnapshot {
    /// The snapshot of `core`'s committed state, from `cache` while the
    /// commit has not moved since it was taken (replacing it otherwise).
    pub(super) fn current(
        cache: &mut Option<Arc<ServedSnapshot>>,
        core: &crate::core::Core,
        cluster_id: u32,
    ) -> Arc<ServedSnapshot> {
        let commit = core.commit();
        if let Some(served) = cache.as_ref().filter(|s| s.version == commit) {
            return served.clone();
        }
        // A pointer copy of the state: the map is copied out and encoded
        // by the connection task that serves it, never on the node's loop.
        let served = Arc::new(ServedSnapshot {
            version: commit,
            cluster_id,
            source: core.snapshot_source(),
            encoded: std::sync::Mutex::new(None),
        });
        *cache = Some(served.clone());
        served
    }

    /// The frame body signed with the keys of now, encoded at most once per
    /// set of keys (concurrent requests wait for the first encoding).
    fn encoded(&self, keys: Option<Arc<Keyring>>, frame_bytes_max: usize) -> Option<Bytes> {
        let mut encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((signed_with, bytes)) = &*encoded {
            let same = match (signed_with, &keys) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if same {
                return Some(bytes.clone());
            }
        }
        let frame = Frame::new(
            self.cluster_id,
            NodeId::UNASSIGNED,
            0,
            Message::Snapshot(self.source.clone().into_snapshot()),
        );
        let mut out = bytes::BytesMut::new();
        frame
            .encode_signed(&mut out, frame_bytes_max, keys.as_deref())
            .ok()?;
        let bytes = out.freeze();
        *encoded = Some((keys, bytes.clone()));
        Some(bytes)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Command, CoreConfig};

    #[test]
    fn a_replayed_snapshot_request_reuses_the_snapshot_and_its_encoding() {
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let cfg = CoreConfig::new(addr, vec![], 1);
        // Founds once it has listened for a cluster that knows it.
        let founded = cfg.found_listen_ms();
        let mut core = crate::core::Core::new(cfg, 1, 0).unwrap();
        core.handle_timeout(founded);
        let set = |core: &mut crate::core::Core, request, value: &str| {
            let command = Command::Set {
                key: "k".into(),
                value: value.into(),
            };
            core.handle_command(founded, request, command);
        };
        set(&mut core, 1, "a");
        let mut cache = None;
        let first = ServedSnapshot::current(&mut cache, &core, 9);
        let again = ServedSnapshot::current(&mut cache, &core, 9);
        assert!(Arc::ptr_eq(&first, &again), "same commit, same snapshot");
        let keys = Some(Arc::new(Keyring::new([7; 32])));
        let bytes = first.encoded(keys.clone(), 1 << 20).unwrap();
        let replayed = again.encoded(keys, 1 << 20).unwrap();
        assert_eq!(bytes.as_ptr(), replayed.as_ptr(), "encoded once");
        // Other keys: signed anew.
        let unkeyed = again.encoded(None, 1 << 20).unwrap();
        assert_ne!(unkeyed.as_ptr(), bytes.as_ptr());
        // A new commit: a new snapshot.
        set(&mut core, 2, "b");
        let newer = ServedSnapshot::current(&mut cache, &core, 9);
        assert!(!Arc::ptr_eq(&first, &newer));
        assert!(newer.version > first.version);
    }
}
