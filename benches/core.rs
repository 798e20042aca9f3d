//! Benchmarks of the pieces that carry the per-message cost: frame decoding with unmasking, UTF-8
//! validation, frame encoding into an outbound queue, and the fan-out of runs of publishes to 10 000 queues.
//!
//! Run with `cargo bench --bench core` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hyperws::net::{ConnHandle, RouteConfig};
use hyperws::protocol::{apply_mask, encode, Decoder, Utf8Validator};
use hyperws::pubsub::{PublishRun, Topics};

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// `count` masked client text frames of `size` bytes each, back to back (what one read brings).
fn client_frames(count: usize, size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::new();
    for _ in 0..count {
        let start = out.len();
        encode::put_header(&mut out, true, encode::TEXT, size);
        out[start + 1] |= 0x80;
        let start = out.len();
        out.extend_from_slice(&KEY);
        out.extend_from_slice(&payload);
        apply_mask(&mut out[start + 4..], KEY);
    }
    out
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (count, size) in [(16usize, 32usize), (4, 16 * 1024)] {
        let input = client_frames(count, size);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("{count}x{size}B"), |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |mut buf| {
                    let mut decoder = Decoder::new(1 << 20);
                    while let Some(message) = decoder.decode(&mut buf).expect("valid frames") {
                        black_box(message);
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let text = "héllo wörld, κόσμε ".repeat(1024);
    let mut group = c.benchmark_group("utf8");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("validate 21 KiB in 4 fragments", |b| {
        b.iter(|| {
            let mut validator = Utf8Validator::default();
            let bytes = text.as_bytes();
            let quarter = bytes.len() / 4;
            for (i, chunk) in bytes.chunks(quarter).enumerate() {
                validator
                    .feed(black_box(chunk), i == 4)
                    .expect("valid text");
            }
        });
    });
    group.finish();
}

fn route() -> Arc<RouteConfig> {
    Arc::new(RouteConfig {
        index: 0,
        pattern: Arc::from("/bench"),
        max_payload_length: 1 << 20,
        idle_timeout: None,
        max_lifetime: None,
        send_pings_automatically: false,
        max_backpressure: usize::MAX,
        close_on_backpressure_limit: false,
        intercept: false,
        upgrade_timeout: std::time::Duration::from_secs(10),
        origins: None,
        compression: hyperws::protocol::deflate::Compression::Disabled,
    })
}

fn send(c: &mut Criterion) {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
    let mut group = c.benchmark_group("send");
    group.throughput(Throughput::Elements(16));
    let payload = [b'x'; 32];
    group.bench_function("16 x 32 B into one queue", |b| {
        b.iter_batched(
            || ConnHandle::new(1, addr, route(), None),
            |conn| {
                for _ in 0..16 {
                    black_box(conn.send(encode::TEXT, &payload));
                }
                conn
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    const RECEIVERS: u64 = 10_000;
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    for messages in [1u64, 16] {
        group.throughput(Throughput::Elements(RECEIVERS * messages));
        let name = format!("a run of {messages} x 32 B publishes to 10 000 queues");
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut run = PublishRun::new("bench/fanout", None).expect("valid topic");
                    for _ in 0..messages {
                        run.push(encode::TEXT, &[b'x'; 32]);
                    }
                    (subscribed(RECEIVERS), run)
                },
                |(topics, run)| {
                    let published = topics.publish_run(run);
                    assert_eq!(published.delivered, (RECEIVERS * messages) as usize);
                    topics
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// A registry with `receivers` connections subscribed to `bench/fanout`.
fn subscribed(receivers: u64) -> Topics {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
    let topics = Topics::new();
    for id in 0..receivers {
        let conn = Arc::new(ConnHandle::new(id, addr, route(), None));
        topics
            .subscribe(&conn, "bench/fanout")
            .expect("valid filter");
    }
    topics
}

criterion_group!(benches, decode, utf8, send, fanout);
criterion_main!(benches);
