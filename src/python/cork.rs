//! Defers writer wake-ups on the Python thread: while a batch of events is dispatched (or inside
//! `ws.atomic`), each connection that got output is woken once, at the end, instead of once per send.

use std::cell::RefCell;
use std::sync::Arc;

use crate::net::ConnHandle;

#[derive(Default)]
struct Cork {
    depth: u32,
    pending: Vec<Arc<ConnHandle>>,
}

thread_local! {
    static CORK: RefCell<Cork> = RefCell::new(Cork::default());
}

/// Wakes `conn`'s writer now, or when the outermost cork on this thread ends.
pub fn wake(conn: &Arc<ConnHandle>) {
    let deferred = CORK.with(|cork| {
        let mut cork = cork.borrow_mut();
        if cork.depth > 0 {
            cork.pending.push(Arc::clone(conn));
            true
        } else {
            false
        }
    });
    if !deferred {
        conn.wake();
    }
}

/// Holds wake-ups while alive; nests.
pub struct CorkGuard(());

impl CorkGuard {
    pub fn begin() -> Self {
        CORK.with(|cork| cork.borrow_mut().depth += 1);
        Self(())
    }
}

impl Drop for CorkGuard {
    fn drop(&mut self) {
        let pending = CORK.with(|cork| {
            let mut cork = cork.borrow_mut();
            cork.depth -= 1;
            if cork.depth == 0 {
                std::mem::take(&mut cork.pending)
            } else {
                Vec::new()
            }
        });
        for conn in pending {
            conn.wake();
        }
    }
}
