//! The hand-over of a batch of received messages to Python: the I/O side pushes a read turn's events onto
//! the event queue (waking the consumer through its eventfd), the consumer clears the wake-up, swaps the
//! batch out and, per message, builds the `str` and calls a Python listener with `(message, is_binary)`.
//! That is the engine's per-message hand-over without the `Websocket`'s own bookkeeping, which the echo
//! profile in docs/performance.md measures end to end.
//!
//! Run with `cargo bench --bench handover` (add `-- --quick` for a short run).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperws::bridge::{Event, EventQueue};
use pyo3::prelude::*;
use pyo3::types::PyString;

fn handover(c: &mut Criterion) {
    let mut group = c.benchmark_group("handover");
    Python::initialize();
    Python::attach(|py| {
        let listener = py
            .eval(c"lambda message, is_binary: None", None, None)
            .expect("a Python listener");
        for batch_len in [1usize, 64] {
            let queue = EventQueue::new(usize::MAX, usize::MAX).expect("an event queue");
            let data = Bytes::from_static(&[b'x'; 32]);
            let mut pushed = Vec::with_capacity(batch_len);
            let mut taken = Vec::with_capacity(batch_len);
            group.throughput(Throughput::Elements(batch_len as u64));
            let name = format!("a batch of {batch_len} x 32 B text messages to a Python listener");
            group.bench_function(name, |b| {
                b.iter(|| {
                    pushed.extend((0..batch_len).map(|_| Event::Message {
                        id: 1,
                        data: data.clone(),
                        binary: false,
                    }));
                    queue.push_all(&mut pushed);
                    queue.begin_drain();
                    while queue.take(&mut taken) {
                        for event in taken.drain(..) {
                            let Event::Message { data, binary, .. } = event else {
                                unreachable!("only messages are pushed");
                            };
                            let text = std::str::from_utf8(&data).expect("UTF-8");
                            listener
                                .call1((PyString::new(py, text), binary))
                                .expect("the listener returns");
                        }
                    }
                });
            });
        }
    });
    group.finish();
}

criterion_group!(benches, handover);
criterion_main!(benches);
