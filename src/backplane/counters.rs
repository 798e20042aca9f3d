//! The broker counters that `server.stats()` reports, updated by the broker task and the publishers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    /// Messages sent to the broker.
    pub published: AtomicU64,
    /// Messages from other nodes delivered to this node's subscribers (each once).
    pub received: AtomicU64,
    /// Messages from other nodes dropped on arrival: this node could not deliver them as fast as they
    /// came, and its queue of received messages was full.
    pub received_dropped: AtomicU64,
    /// Messages for the broker dropped: the outgoing queue was full, or the broker down or refusing them.
    pub dropped: AtomicU64,
    /// Connections to the broker made again after one was lost.
    pub reconnects: AtomicU64,
    /// Subscriptions this node holds on the broker.
    pub subscriptions: AtomicUsize,
    pub connected: AtomicBool,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    pub fn set_subscriptions(&self, n: usize) {
        self.subscriptions.store(n, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}
