//! Messages on their way to the broker: a queue filled by the publishers (any thread) and emptied by the
//! broker task in order, so one publisher's messages keep their order. It is bounded in messages and in
//! bytes; past either bound, and while the broker is down, messages are dropped and counted rather than
//! held.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::counters::Counters;
use super::envelope::Envelope;
use super::queue::{self, Weighed, BATCH, BATCH_BYTES, CAPACITY, CAPACITY_BYTES};

/// One publish for the broker.
#[derive(Debug)]
pub struct Outgoing {
    pub topic: Box<str>,
    pub binary: bool,
    pub compress: bool,
    pub payload: Bytes,
}

impl Outgoing {
    pub fn envelope(&self, node: u64) -> Vec<u8> {
        Envelope {
            node,
            binary: self.binary,
            compress: self.compress,
            topic: &self.topic,
            payload: &self.payload,
        }
        .encode()
    }
}

impl Weighed for Outgoing {
    fn weight(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// The publishers' end of the queue.
#[derive(Debug)]
pub struct Outbox {
    sender: queue::Sender<Outgoing>,
    counters: Arc<Counters>,
}

/// The broker task's end of the queue.
pub type Receiver = queue::Receiver<Outgoing>;

impl Outbox {
    pub fn new(counters: Arc<Counters>) -> (Self, Receiver) {
        Self::with_capacity(counters, CAPACITY)
    }

    /// A queue of `messages` at most (a test under Miri takes fewer than [`CAPACITY`]).
    fn with_capacity(counters: Arc<Counters>, messages: usize) -> (Self, Receiver) {
        let (sender, receiver) = queue::bounded(messages, CAPACITY_BYTES);
        (Self { sender, counters }, receiver)
    }

    /// Queues `message` for the broker, or drops and counts it when the queue is full (in messages or in
    /// bytes), or while the broker is down (what is queued then would be dropped anyway, after it had
    /// waited).
    pub fn push(&self, message: Outgoing) {
        if !self.counters.is_connected() || !self.sender.push(message) {
            Counters::add(&self.counters.dropped, 1);
        }
    }
}

/// Drops and counts what reaches the queue for `delay` (the broker is down meanwhile).
pub async fn discard_for(delay: Duration, receiver: &mut Receiver, counters: &Counters) {
    let deadline = tokio::time::sleep(delay);
    tokio::pin!(deadline);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            () = &mut deadline => return,
            n = receiver.next_batch(&mut batch, BATCH, BATCH_BYTES) => {
                if n == 0 {
                    // The engine is gone: nothing will be queued again.
                    return deadline.await;
                }
                Counters::add(&counters.dropped, n);
                batch.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn message(n: usize) -> Outgoing {
        Outgoing {
            topic: "t".into(),
            binary: false,
            compress: false,
            payload: Bytes::from(n.to_string()),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_keeps_the_order() {
        let counters = Arc::new(Counters::default());
        counters.connected.store(true, Ordering::Release);
        // Miri interprets each send and receive: 16 Ki of each take it minutes, so a smaller queue there.
        let capacity = if cfg!(miri) { 128 } else { CAPACITY };
        let (outbox, mut receiver) = Outbox::with_capacity(Arc::clone(&counters), capacity);
        for n in 0..capacity + 5 {
            outbox.push(message(n));
        }
        assert_eq!(Counters::read(&counters.dropped), 5);
        for n in 0..capacity {
            let queued = receiver.try_take().expect("queued");
            assert_eq!(queued.payload, n.to_string());
        }
        assert!(receiver.try_take().is_none(), "the last five were dropped");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_taking_a_batch_makes_room() {
        let counters = Arc::new(Counters::default());
        counters.connected.store(true, Ordering::Release);
        let (outbox, mut receiver) = Outbox::new(Arc::clone(&counters));
        let megabyte = |n: u8| Outgoing {
            topic: "t".into(),
            binary: true,
            compress: false,
            payload: Bytes::from(vec![n; BATCH_BYTES - 1]),
        };
        let fitting = CAPACITY_BYTES / BATCH_BYTES;
        for n in 0..=fitting {
            outbox.push(megabyte(n as u8));
        }
        assert_eq!(
            Counters::read(&counters.dropped),
            1,
            "the one past the bound"
        );
        let mut batch = Vec::new();
        let taken = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(receiver.next_batch(&mut batch, 256, BATCH_BYTES));
        assert_eq!(taken, 1, "a batch stops at a megabyte");
        outbox.push(megabyte(99));
        assert_eq!(Counters::read(&counters.dropped), 1, "room was made");
    }

    #[test]
    fn nothing_is_queued_while_the_broker_is_down() {
        let counters = Arc::new(Counters::default());
        let (outbox, mut receiver) = Outbox::new(Arc::clone(&counters));
        outbox.push(message(1));
        assert_eq!(Counters::read(&counters.dropped), 1);
        assert!(receiver.try_take().is_none());
    }

    #[test]
    fn the_envelope_names_the_node_and_keeps_the_flags() {
        let outgoing = Outgoing {
            topic: "a/b".into(),
            binary: true,
            compress: true,
            payload: Bytes::from_static(b"x"),
        };
        let bytes = outgoing.envelope(9);
        let envelope = Envelope::decode(&bytes).expect("an envelope");
        assert_eq!(
            (envelope.node, envelope.binary, envelope.compress),
            (9, true, true)
        );
        assert_eq!((envelope.topic, envelope.payload), ("a/b", &b"x"[..]));
    }
}
