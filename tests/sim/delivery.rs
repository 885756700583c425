//! How transmits travel: datagrams through the fault model, stream frames
//! and fetched snapshots in order per link, and each delivered to its core.

use std::net::SocketAddr;

use bytes::Bytes;
use simple_raft::core::Transmit;
use simple_raft::wire::{
    decode_snapshot, EncodedSnapshot, Snapshot, SnapshotAssembly, SnapshotChunk,
};

use super::clients::Request;
use super::cluster::Sim;
use super::network::{decode, Millis};
use super::node::{Held, Status};
use super::report::describe;
use super::trace::hash_of;

/// Something scheduled on the virtual clock.
#[derive(Debug)]
pub(super) enum Action {
    Datagram {
        from: usize,
        to: usize,
        bytes: Bytes,
        corrupt: bool,
    },
    Stream {
        from: usize,
        to: usize,
        to_incarnation: u64,
        bytes: Bytes,
    },
    Snapshot {
        from: usize,
        to: usize,
        to_incarnation: u64,
        snapshot: Box<Snapshot>,
    },
    Retry {
        node: usize,
        request: Request,
    },
    Resume {
        node: usize,
    },
}

impl Sim {
    pub(super) fn schedule(&mut self, at: Millis, action: Action) {
        self.seq += 1;
        self.queue.insert((at, self.seq), action);
    }

    pub(super) fn perform(&mut self, action: Action) {
        match action {
            Action::Datagram {
                from,
                to,
                bytes,
                corrupt,
            } => {
                if self.nodes[to].status != Status::Up || self.net.is_cut(from, to) {
                    return;
                }
                if corrupt && decode(&bytes).is_some() {
                    self.fail(to, "a corrupted frame passed the decoder".into());
                }
                if !corrupt && !self.net.admit(self.now, from, to, false, &bytes) {
                    self.trace
                        .record(self.now, "filtered", to, from as u64, String::new);
                    return;
                }
                if self.nodes[to].paused {
                    let held = Held::Datagram {
                        from,
                        bytes,
                        corrupt,
                    };
                    self.hold(to, held);
                    return;
                }
                self.handle_datagram(from, to, &bytes, corrupt);
            }
            Action::Stream {
                from,
                to,
                to_incarnation,
                bytes,
            } => {
                if !self.stream_open(from, to, to_incarnation)
                    || !self.net.admit(self.now, from, to, true, &bytes)
                {
                    return;
                }
                if self.nodes[to].paused {
                    self.hold(to, Held::Stream { from, bytes });
                    return;
                }
                self.handle_stream(from, to, &bytes);
            }
            Action::Snapshot {
                from,
                to,
                to_incarnation,
                snapshot,
            } => {
                if !self.stream_open(from, to, to_incarnation) {
                    self.trace
                        .record(self.now, "snap cut", to, from as u64, String::new);
                    return;
                }
                if self.nodes[to].paused {
                    self.hold(to, Held::Snapshot { snapshot });
                    return;
                }
                self.handle_snapshot(to, *snapshot);
            }
            Action::Retry { node, request } => {
                if self.nodes[node].status == Status::Up {
                    let mut request = request;
                    request.incarnation = self.nodes[node].incarnation;
                    self.send_request(request);
                } else {
                    self.clients.dropped(request, self.now);
                }
            }
            Action::Resume { node } => {
                if self.now >= self.nodes[node].paused_until {
                    self.resume(node);
                }
            }
        }
    }

    /// A stream connection works when both ends run and the link is not cut.
    pub(super) fn stream_open(&self, from: usize, to: usize, to_incarnation: u64) -> bool {
        let to_node = &self.nodes[to];
        to_node.status == Status::Up
            && to_node.incarnation == to_incarnation
            && self.nodes[from].status == Status::Up
            && !self.net.is_cut(from, to)
    }

    /// Delivers a datagram; a corrupted one must be refused (and counted)
    /// by the core's decoder.
    pub(super) fn handle_datagram(&mut self, from: usize, to: usize, bytes: &[u8], corrupt: bool) {
        let now = self.now;
        let from_addr = self.nodes[from].addr;
        self.trace.record(now, "datagram", to, from as u64, || {
            format!("from n{from} {}", describe(bytes))
        });
        let clock = self.clock(to);
        let core = self.nodes[to].core.as_mut().expect("running");
        let refused = core.metrics().decode_errors_total();
        core.handle_datagram(clock, from_addr, bytes);
        if corrupt && core.metrics().decode_errors_total() != refused + 1 {
            self.fail(to, "the core did not refuse a corrupted datagram".into());
        }
        self.drain(to);
    }

    pub(super) fn handle_stream(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let now = self.now;
        let from_addr = self.nodes[from].addr;
        self.trace.record(now, "stream", to, from as u64, || {
            format!("from n{from} {}", describe(bytes))
        });
        let clock = self.clock(to);
        self.nodes[to]
            .core
            .as_mut()
            .expect("running")
            .handle_stream_frame(clock, from_addr, bytes);
        self.drain(to);
    }

    pub(super) fn handle_snapshot(&mut self, to: usize, snapshot: Snapshot) {
        let now = self.now;
        self.trace
            .record(now, "snapshot", to, hash_of(&snapshot), || {
                format!(
                    "{:?} {} members {} keys",
                    snapshot.last,
                    snapshot.members.len(),
                    snapshot.map.len()
                )
            });
        let clock = self.clock(to);
        self.nodes[to]
            .core
            .as_mut()
            .expect("running")
            .handle_snapshot(clock, snapshot);
        self.drain(to);
    }

    pub(super) fn send(&mut self, from: usize, t: Transmit) {
        let now = self.now;
        self.trace
            .record(now, "send", from, hash_of(&t.bytes[..]), || {
                let to = t.to;
                format!(
                    "to {to} {}{}",
                    describe(&t.bytes),
                    if t.stream { " (stream)" } else { "" }
                )
            });
        let Some(to) = self.index_of(t.to) else {
            return;
        };
        if t.stream {
            if self.nodes[to].status != Status::Up || self.net.is_cut(from, to) {
                return;
            }
            let at = self.net.stream(now, from, to);
            let to_incarnation = self.nodes[to].incarnation;
            self.schedule(
                at,
                Action::Stream {
                    from,
                    to,
                    to_incarnation,
                    bytes: t.bytes,
                },
            );
            return;
        }
        let limit = simple_raft::wire::DATAGRAM_BYTES_MAX_DEFAULT;
        if t.bytes.len() > limit {
            self.fail(
                from,
                format!(
                    "sent a {} byte datagram; the limit is {limit}",
                    t.bytes.len()
                ),
            );
        }
        if self.net.is_cut(from, to) {
            return;
        }
        for (at, bytes, corrupt) in self.net.datagram(now, &t.bytes) {
            self.schedule(
                at,
                Action::Datagram {
                    from,
                    to,
                    bytes,
                    corrupt,
                },
            );
        }
    }
    /// Models a snapshot fetch over TCP: works when the source runs, is
    /// not paused and the link is open both ways.
    pub(super) fn fetch_snapshot(&mut self, to: usize, from_addr: SocketAddr) {
        let Some(from) = self.index_of(from_addr) else {
            return;
        };
        if !self.running(from) || self.net.is_cut(from, to) || self.net.is_cut(to, from) {
            self.trace
                .record(self.now, "no fetch", to, from as u64, String::new);
            return;
        }
        let snapshot = Box::new(through_chunks(self.core(from).snapshot()));
        let at = self.net.stream(self.now, from, to);
        let to_incarnation = self.nodes[to].incarnation;
        self.schedule(
            at,
            Action::Snapshot {
                from,
                to,
                to_incarnation,
                snapshot,
            },
        );
    }
}

/// Bytes of each chunk a simulated fetch cuts a snapshot into: small, so
/// that every snapshot but the emptiest travels in several.
const SIM_CHUNK_BYTES: usize = 61;

/// `snapshot` as a fetching node gets it: encoded, cut into chunks, put
/// back together and decoded, as over TCP (the frames around the chunks
/// are the wire tests' concern).
fn through_chunks(snapshot: Snapshot) -> Snapshot {
    let encoded = EncodedSnapshot::new(&snapshot);
    let mut assembly = SnapshotAssembly::new(encoded.bytes().len());
    for chunk in encoded.chunks(SIM_CHUNK_BYTES) {
        let chunk = SnapshotChunk {
            total_bytes: chunk.total_bytes,
            offset: chunk.offset,
            digest: *chunk.digest,
            bytes: chunk.bytes.to_vec(),
        };
        if let Some(whole) = assembly
            .push(&chunk)
            .expect("a served snapshot reassembles")
        {
            let decoded = decode_snapshot(&whole).expect("a served snapshot decodes");
            assert_eq!(decoded, snapshot, "chunking changes nothing");
            return decoded;
        }
    }
    panic!("the chunks of a snapshot end in a whole");
}
