//! Read-side flow control: bytes received and handed to Python but not yet consumed by its listeners, per
//! connection and in total. A connection over its bound, or any connection while the total is over its
//! bound, stops reading its socket (TCP then pushes back on the client) until Python catches up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::net::ConnHandle;

/// What each event costs on top of its payload, so that floods of empty messages are bounded too.
pub const EVENT_OVERHEAD: usize = 64;

#[derive(Debug)]
pub struct InboundBacklog {
    per_connection: usize,
    total_limit: usize,
    total: AtomicUsize,
    /// Readers waiting for the backlog to shrink; woken from the Python side.
    paused: Mutex<Vec<Arc<ConnHandle>>>,
    paused_count: AtomicUsize,
}

impl InboundBacklog {
    pub fn new(per_connection: usize, total_limit: usize) -> Self {
        Self {
            per_connection,
            total_limit,
            total: AtomicUsize::new(0),
            paused: Mutex::new(Vec::new()),
            paused_count: AtomicUsize::new(0),
        }
    }

    /// Reader side: `bytes` more are on their way to Python for `conn`.
    pub fn add(&self, conn: &ConnHandle, bytes: usize) {
        conn.inbound.fetch_add(bytes, Ordering::SeqCst);
        self.total.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Reader side: whether `conn` may read more now.
    pub fn may_read(&self, conn: &ConnHandle) -> bool {
        conn.inbound.load(Ordering::SeqCst) <= self.per_connection
            && self.total.load(Ordering::SeqCst) <= self.total_limit
    }

    /// Reader side: `conn` stops reading until [`InboundBacklog::resume_ready`] wakes it. Returns false
    /// (and registers nothing) when it may read after all.
    pub fn pause(&self, conn: &Arc<ConnHandle>) -> bool {
        let mut paused = self.paused.lock().expect("backlog poisoned");
        // Checked under the lock that resume_ready takes, so a consumption in between is not missed.
        if self.may_read(conn) {
            return false;
        }
        if !paused.iter().any(|c| Arc::ptr_eq(c, conn)) {
            paused.push(Arc::clone(conn));
            self.paused_count.fetch_add(1, Ordering::SeqCst);
        }
        true
    }

    /// Python side: `bytes` of `conn`'s events were consumed by its listeners.
    pub fn consumed(&self, conn: &ConnHandle, bytes: usize) {
        conn.inbound.fetch_sub(bytes, Ordering::SeqCst);
        self.total.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Python side: events of a connection that Python no longer knows were discarded.
    pub fn consumed_orphan(&self, bytes: usize) {
        self.total.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Python side: wakes the paused readers that may read again. Cheap when none is paused.
    pub fn resume_ready(&self) {
        if self.paused_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut paused = self.paused.lock().expect("backlog poisoned");
        paused.retain(|conn| {
            if self.may_read(conn) || !conn.is_open() {
                conn.wake();
                self.paused_count.fetch_sub(1, Ordering::SeqCst);
                false
            } else {
                true
            }
        });
    }

    /// Bytes waiting for Python in all.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}
