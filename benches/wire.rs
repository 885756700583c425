//! Wire encode and decode speed for three frames that matter in practice:
//! the heartbeat every leader sends to every follower every interval, a full
//! append batch, and the snapshot a new or lagging member catches up with.
//!
//! Run `cargo bench --bench wire`; `-- --test` runs each benchmark once as
//! a smoke test.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use simple_raft::wire::*;

const CLUSTER_ID: u32 = 0xC0FFEE;
/// Term, version and round of a cluster that has been up for a while, so the
/// header and payload varints have realistic (multi-byte) lengths.
const TERM: u64 = 1000;
const VERSION: u64 = 1_000_000;
/// Values are 32 bytes, about the size of a hash or an address with a port.
const VALUE_BYTES: usize = 32;

fn value(i: usize) -> String {
    format!("{i:0width$}", width = VALUE_BYTES)
}

fn heartbeat() -> Frame {
    Frame::new(
        CLUSTER_ID,
        NodeId(3),
        TERM,
        Message::Heartbeat(Heartbeat {
            last: LogId {
                term: TERM,
                version: VERSION,
            },
            commit: VERSION,
            seq: VERSION,
        }),
    )
}

/// 64 `Set` changes: more than a datagram holds, so it travels over TCP.
fn append_64() -> Frame {
    let entries = (0..64)
        .map(|i| Entry {
            term: TERM,
            change: Change::Set {
                key: format!("key-{i:05}"),
                value: value(i),
            },
        })
        .collect();
    Frame::new(
        CLUSTER_ID,
        NodeId(3),
        TERM,
        Message::Append(Append {
            prev: LogId {
                term: TERM,
                version: VERSION,
            },
            commit: VERSION,
            seq: VERSION,
            entries,
        }),
    )
}

/// A 10 000-key map (sorted, as the wire requires) and three members.
fn snapshot_10k() -> Frame {
    let members = (1..=3)
        .map(|id| Member {
            id: NodeId(id),
            addr: format!("10.0.0.{id}:7400"),
            voter: true,
            incarnation: 1_700_000_000 + u64::from(id),
        })
        .collect();
    let map = (0..10_000)
        .map(|i| (format!("key-{i:06}"), value(i)))
        .collect();
    Frame::new(
        CLUSTER_ID,
        NodeId(3),
        TERM,
        Message::Snapshot(Snapshot {
            generation: 1,
            last: LogId {
                term: TERM,
                version: VERSION,
            },
            members,
            next_member_id: 4,
            map,
            sessions: Vec::new(),
        }),
    )
}

/// Benchmarks `encode`, `decode` and `round_trip` of `frame` in group
/// `name`, reporting bytes per second of encoded frame.
fn bench_frame(c: &mut Criterion, name: &str, frame: &Frame, frame_bytes_max: usize) {
    let limits = DecodeLimits {
        cluster_id: Some(CLUSTER_ID),
        frame_bytes_max,
    };
    let encoded = frame.to_bytes(frame_bytes_max).expect("bench frame fits");
    assert_eq!(decode_frame(&encoded, &limits).as_ref(), Ok(frame));

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    // One buffer for all iterations, as a sender reuses its send buffer: the
    // encode cost, not the allocator's, is what is measured.
    let mut buf = BytesMut::with_capacity(encoded.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(frame).encode(&mut buf, frame_bytes_max).unwrap();
            black_box(&buf);
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_frame(black_box(&encoded), &limits).unwrap())
    });
    group.bench_function("round_trip", |b| {
        b.iter(|| {
            buf.clear();
            black_box(frame).encode(&mut buf, frame_bytes_max).unwrap();
            decode_frame(&buf, &limits).unwrap()
        })
    });
    group.finish();
}

fn wire(c: &mut Criterion) {
    bench_frame(c, "heartbeat", &heartbeat(), DATAGRAM_BYTES_MAX_DEFAULT);
    bench_frame(c, "append_64", &append_64(), STREAM_FRAME_BYTES_MAX_DEFAULT);
    bench_frame(
        c,
        "snapshot_10k",
        &snapshot_10k(),
        STREAM_FRAME_BYTES_MAX_DEFAULT,
    );
}

criterion_group!(benches, wire);
criterion_main!(benches);
