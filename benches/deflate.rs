//! Benchmarks of permessage-deflate: compressing a message on its own (what `compression="shared"` and a
//! compressed publish do), with a kept context (`"dedicated"`), and inflating with the size limit, with a
//! decompressor made for the message (the client keeps no context) or kept.
//!
//! Run with `cargo bench --bench deflate` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperws::protocol::deflate::{compress_shared, Compressor, Decompressor};

/// A JSON-like market update of about `size` bytes: what real-time apps send, and compresses well.
fn message(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u32;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                r#"{{"symbol":"S{:03}","bid":{}.{:02},"ask":{}.{:02}}},"#,
                i % 500,
                100 + i % 7,
                i % 100,
                101 + i % 5,
                (i * 7) % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

const SIZES: [usize; 3] = [32, 1024, 16 * 1024];

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    for size in SIZES {
        let input = message(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("shared {size}B"), |b| {
            let mut out = Vec::with_capacity(2 * size + 64);
            b.iter(|| {
                out.clear();
                compress_shared(15, black_box(&input), &mut out);
            });
        });
        group.bench_function(format!("dedicated {size}B"), |b| {
            let mut compressor = Compressor::new(15, false);
            let mut out = Vec::with_capacity(2 * size + 64);
            b.iter(|| {
                out.clear();
                compressor.compress(black_box(&input), &mut out);
            });
        });
    }
    group.finish();
}

fn decompress(c: &mut Criterion) {
    let mut group = c.benchmark_group("decompress");
    for size in SIZES {
        let mut compressed = Vec::new();
        compress_shared(15, &message(size), &mut compressed);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("fresh {size}B"), |b| {
            let mut out = BytesMut::with_capacity(2 * size);
            b.iter(|| {
                out.clear();
                Decompressor::new(15)
                    .decompress(black_box(&compressed), true, &mut out, 1 << 20)
                    .expect("valid data");
            });
        });
        group.bench_function(format!("kept {size}B"), |b| {
            let mut decompressor = Decompressor::new(15);
            let mut out = BytesMut::with_capacity(2 * size);
            b.iter(|| {
                out.clear();
                decompressor
                    .decompress(black_box(&compressed), true, &mut out, 1 << 20)
                    .expect("valid data");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, compress, decompress);
criterion_main!(benches);
