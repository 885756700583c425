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
use super::{DriverCounters, Inbound, Requester, Shared};
use crate::net::{read_frame, read_frame_bytes_within, write_frame, write_frame_bytes, ReadError};
use crate::wire::{
    decode_frame_keyed, decode_snapshot, ClientResponse, DecodeLimits, EncodedSnapshot, Frame,
    FrameHead, Keyring, Message, NodeId, Snapshot, SnapshotAssembly, SnapshotRequest,
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
                let Some(frames) = served.encoded(keys, cfg.stream_frame_bytes_max) else {
                    return;
                };
                for frame in frames.iter() {
                    if write_frame_bytes(&mut stream, frame).await.is_err() {
                        return;
                    }
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
/// keeps one of these per committed version, and its chunk frames are
/// encoded once per version and set of keys: a replay then costs a write
/// of bytes that already exist, and nothing new is allocated or computed.
#[derive(Debug)]
pub(crate) struct ServedSnapshot {
    /// The committed version it was taken at.
    pub version: u64,
    cluster_id: u32,
    source: crate::core::SnapshotSource,
    /// The encoded chunk frames (bodies, in order) and the keys they were
    /// signed with.
    encoded: std::sync::Mutex<Option<ChunkFrames>>,
}

/// A snapshot's chunk frames, signed with `keys`.
#[derive(Debug)]
struct ChunkFrames {
    keys: Option<Arc<Keyring>>,
    frames: Arc<[Bytes]>,
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

    /// The chunk frame bodies signed with the keys of now, encoded at most
    /// once per set of keys (concurrent requests wait for the first
    /// encoding). The snapshot is encoded once and cut into chunks of at
    /// most [`crate::wire::SNAPSHOT_CHUNK_BYTES_MAX`], each in a frame of
    /// at most `frame_bytes_max`: its size is bounded by the map's limit,
    /// not by one frame.
    fn encoded(&self, keys: Option<Arc<Keyring>>, frame_bytes_max: usize) -> Option<Arc<[Bytes]>> {
        let mut encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = &*encoded {
            let same = match (&cached.keys, &keys) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if same {
                return Some(cached.frames.clone());
            }
        }
        let snapshot = EncodedSnapshot::new(&self.source.clone().into_snapshot());
        let head = FrameHead {
            cluster_id: self.cluster_id,
            generation: None,
            sender: NodeId::UNASSIGNED,
            term: 0,
        };
        let frames: Arc<[Bytes]> = snapshot
            .chunk_frames(&head, frame_bytes_max, keys.as_deref())
            .ok()?
            .into();
        *encoded = Some(ChunkFrames {
            keys,
            frames: frames.clone(),
        });
        Some(frames)
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

/// The slowest a snapshot may arrive, in bytes per second, before its
/// fetch is given up: a peer that dribbles a byte at a time cannot hold
/// the one fetch a node makes at once for long.
const SNAPSHOT_FETCH_BYTES_PER_S_MIN: u64 = 1024 * 1024;

/// Asks `from` for its snapshot: its chunks, each within `tcp_idle_ms`,
/// the whole within the request timeout plus a second per MiB, and of at
/// most [`crate::Config::snapshot_bytes_max`] bytes.
pub(super) async fn fetch_snapshot(from: SocketAddr, shared: &Shared) -> Result<Snapshot, String> {
    let cfg = &shared.cfg;
    let start = tokio::time::Instant::now();
    let base = Duration::from_millis(cfg.request_timeout_ms.max(cfg.tcp_idle_ms));
    let idle = Duration::from_millis(cfg.tcp_idle_ms);
    let connect = async {
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
        Ok::<_, String>(stream)
    };
    let mut stream = tokio::time::timeout(base, connect)
        .await
        .map_err(|_| "timed out".to_string())??;
    let limits = DecodeLimits {
        cluster_id: Some(cfg.cluster_id),
        frame_bytes_max: cfg.stream_frame_bytes_max,
    };
    let mut assembly = SnapshotAssembly::new(cfg.snapshot_bytes_max());
    let mut deadline = start + base;
    // Bounded: every chunk but an empty snapshot's adds at least a byte,
    // and the assembly takes no more than its limit.
    loop {
        let keys = shared.keys.get();
        let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let read = tokio::time::timeout(wait, read_frame(&mut stream, &limits, keys.as_deref()))
            .await
            .map_err(|_| "timed out".to_string())?;
        let frame = read.map_err(|e| {
            if let ReadError::Decode(error) = &e {
                shared.counters.count_decode_error(error.reason());
            }
            e.to_string()
        })?;
        let chunk = match frame.message {
            // A node of an earlier version sends its snapshot whole.
            Message::Snapshot(snapshot) if assembly.received_bytes() == 0 => return Ok(snapshot),
            Message::SnapshotChunk(chunk) => chunk,
            other => return Err(format!("unexpected {}", other.kind().name())),
        };
        if assembly.received_bytes() == 0 {
            let allowed_s = chunk.total_bytes / SNAPSHOT_FETCH_BYTES_PER_S_MIN;
            deadline = start + base + Duration::from_secs(allowed_s);
        }
        if let Some(bytes) = assembly.push(&chunk).map_err(|e| e.to_string())? {
            // Decoding a large map is long work: off the runtime's threads.
            let decoded = tokio::task::spawn_blocking(move || decode_snapshot(&bytes))
                .await
                .map_err(|e| e.to_string())?;
            return decoded.map_err(|error| {
                shared.counters.count_decode_error(error.reason());
                error.to_string()
            });
        }
    }
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
        assert!(Arc::ptr_eq(&bytes, &replayed), "encoded once");
        // Other keys: signed anew.
        let unkeyed = again.encoded(None, 1 << 20).unwrap();
        assert!(!Arc::ptr_eq(&unkeyed, &bytes));
        // A new commit: a new snapshot.
        set(&mut core, 2, "b");
        let newer = ServedSnapshot::current(&mut cache, &core, 9);
        assert!(!Arc::ptr_eq(&first, &newer));
        assert!(newer.version > first.version);
    }
}
