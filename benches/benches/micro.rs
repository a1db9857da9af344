//! Micro-benchmarks of the pieces of the SendData path: the frame codec (DATA and
//! CONNECT, through `peergraph_engine::wire`) and the connection-table lookup that finds a
//! connection's outbox (a `DashMap<ConnectionId, _>` get and a clone of a small value).
//!
//! `cargo bench -p peergraph-benches`; add a filter to run one group, e.g.
//! `cargo bench -p peergraph-benches -- table`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use peergraph::{ConnectionId, DataType, GraphId, PeerId};
use peergraph_engine::wire::{
    encode_data_header, Connect, FrameDecoder, Message, PROTOCOL_VERSION,
};
use peergraph_transport::DataFrame;
use tokio::sync::{mpsc, Semaphore};

const DATA_TYPE: DataType = DataType::from_u128(0x7065_6572_6772_6170_6862_656e_6368_0001);

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for len in [64usize, 64 * 1024] {
        let payload = Bytes::from(vec![0x5a; len]);
        let message = Message::Data {
            data_type: DATA_TYPE,
            payload: payload.clone(),
        };
        group.throughput(Throughput::Bytes(len as u64));
        // What SendData builds per call: the 21-byte header in its own buffer, the payload
        // shared.
        group.bench_with_input(BenchmarkId::new("data_frame_new", len), &payload, |b, p| {
            b.iter(|| DataFrame::new(DATA_TYPE, black_box(p).clone()))
        });
        group.bench_with_input(BenchmarkId::new("encode_data", len), &message, |b, m| {
            let mut buf = BytesMut::with_capacity(len + 64);
            b.iter(|| {
                buf.clear();
                black_box(m).encode(&mut buf);
                black_box(buf.len())
            })
        });
        let encoded = message.to_bytes();
        group.bench_with_input(BenchmarkId::new("decode_data", len), &encoded, |b, e| {
            b.iter_batched(|| e.clone(), decode_first, BatchSize::SmallInput)
        });
    }
    // The reader's case for small messages: many frames in one received chunk.
    let frames = 1000usize;
    let mut stream = BytesMut::new();
    for _ in 0..frames {
        encode_data_header(DATA_TYPE, 64, &mut stream);
        stream.extend_from_slice(&[0x5a; 64]);
    }
    let stream = stream.freeze();
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function("decode_data_stream/1000x64", |b| {
        b.iter_batched(
            || stream.clone(),
            |chunk| {
                let mut decoder = FrameDecoder::new();
                decoder.push(chunk);
                let mut count = 0;
                while let Ok(Some(message)) = decoder.next_message() {
                    black_box(message);
                    count += 1;
                }
                count
            },
            BatchSize::SmallInput,
        )
    });
    let connect = connect_message();
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_connect", |b| {
        let mut buf = BytesMut::with_capacity(256);
        b.iter(|| {
            buf.clear();
            black_box(&connect).encode(&mut buf);
            black_box(buf.len())
        })
    });
    let encoded = connect.to_bytes();
    group.bench_function("decode_connect", |b| {
        b.iter_batched(|| encoded.clone(), decode_first, BatchSize::SmallInput)
    });
    group.finish();
}

/// The first message in `chunk`, as the reader decodes a frame that arrives in one chunk.
fn decode_first(chunk: Bytes) -> Option<Message> {
    let mut decoder = FrameDecoder::new();
    decoder.push(chunk);
    decoder.next_message().ok().flatten()
}

fn connect_message() -> Message {
    let id = |text: &str| PeerId::new(text).expect("a valid peer id");
    Message::Connect(Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: ConnectionId::new(0x1234_5678_9abc_def0).expect("nonzero"),
        graph_id: GraphId::new("bench-graph").expect("a valid graph id"),
        source_peer_id: id("alice@example"),
        target_peer_id: id("bob@example"),
        proof: Bytes::new(),
    })
}

/// What the table hands SendData: like the engine's outbox, a channel sender and the
/// byte budget's semaphore, cloned out so that no map lock is held while sending. Only
/// cloned here, never used.
#[derive(Clone)]
#[allow(dead_code)]
struct Outbox {
    frames: mpsc::Sender<Bytes>,
    budget: Arc<Semaphore>,
}

/// A table entry the size of the engine's: the outbox and some connection info.
struct Entry {
    outbox: Outbox,
    _info: [u64; 8],
}

/// Spreads ids over the 64-bit space as the engine's random ids are.
fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

fn table(c: &mut Criterion) {
    let mut group = c.benchmark_group("table");
    let (frames, _receiver) = mpsc::channel(1024);
    let budget = Arc::new(Semaphore::new(1 << 21));
    for size in [1usize, 1_000, 10_000] {
        let table: DashMap<ConnectionId, Entry> = DashMap::new();
        let ids: Vec<u64> = (0..size as u64).map(spread).collect();
        for &raw in &ids {
            let outbox = Outbox {
                frames: frames.clone(),
                budget: budget.clone(),
            };
            let id = ConnectionId::new(raw).expect("nonzero");
            table.insert(
                id,
                Entry {
                    outbox,
                    _info: [raw; 8],
                },
            );
        }
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("get_clone", size), &ids, |b, ids| {
            let mut next = 0;
            b.iter(|| {
                next = (next + 1) % ids.len();
                let id = ConnectionId::new(ids[next]).expect("nonzero");
                let outbox = table.get(&id).map(|entry| entry.outbox.clone());
                black_box(outbox)
            })
        });
        group.bench_with_input(BenchmarkId::new("get_miss", size), &ids, |b, ids| {
            let mut next = 0;
            b.iter(|| {
                next = (next + 1) % ids.len();
                let id = ConnectionId::new(ids[next] ^ 2).expect("nonzero");
                black_box(table.get(&id).is_some())
            })
        });
    }
    group.finish();
}

// `criterion_group!` defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::{codec, table};

    criterion::criterion_group!(benches, codec, table);
}

// What `criterion_main!` expands to, written out so that its `main` needs no allowance.
fn main() {
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
