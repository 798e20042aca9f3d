//! Defers work on the Python thread while a batch of events is dispatched (or inside `ws.atomic`):
//! each connection that got output is woken once, at the end, instead of once per send; and plain
//! publishes to one topic made one after another wait in a run that is fanned out in one pass (each
//! subscriber's queue locked once for the run instead of once per message).
//!
//! Subscription changes made meanwhile reach the broker task (if any) together, at the end (see
//! `backplane::InterestHold`).
//!
//! A held run goes out before anything that could see it missing: the end of the cork, and any send,
//! close, subscription change or read of a connection's buffered bytes on this thread (`flush_publishes`).

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::Python;

use super::engine::EngineShared;
use super::publish;
use crate::backplane::InterestHold;
use crate::bridge::EventQueue;
use crate::net::ConnHandle;
use crate::pubsub::PublishRun;

#[derive(Default)]
struct Cork {
    depth: u32,
    /// Connections that got output while corked.
    pending: Vec<Arc<ConnHandle>>,
    /// The event queue of the first of them: the only one written from here (see `CorkGuard::drop`).
    first_events: Option<Arc<EventQueue>>,
    /// Connections that got output while one of their own messages was handled, when replies are
    /// written from this thread (the batch's connections are read here, see `net/inline.rs`).
    replies: Vec<Arc<ConnHandle>>,
    /// Replies are written here in this batch.
    write_replies: bool,
    /// The connection whose message is being handled (0: none).
    answering: u64,
    run: Option<HeldRun>,
}

/// A run of publishes and the engine whose subscribers it goes to.
struct HeldRun {
    shared: Arc<EngineShared>,
    run: PublishRun,
}

thread_local! {
    static CORK: RefCell<Cork> = RefCell::new(Cork::default());
}

/// Whether this thread is corked.
pub fn is_corked() -> bool {
    CORK.with(|cork| cork.borrow().depth > 0)
}

/// Adds a plain publish to the held run when it continues it (same engine, topic and exclusion, room
/// left). Returns whether it did.
pub fn join_run(
    shared: &Arc<EngineShared>,
    topic: &str,
    exclude: Option<u64>,
    opcode: u8,
    payload: &[u8],
) -> bool {
    CORK.with(|cork| match &mut cork.borrow_mut().run {
        Some(held) if Arc::ptr_eq(&held.shared, shared) && held.run.takes(topic, exclude) => {
            held.run.push(opcode, payload);
            true
        }
        _ => false,
    })
}

/// Holds `run` until the cork ends or something on this thread needs it out (none may be held already).
pub fn hold_run(shared: &Arc<EngineShared>, run: PublishRun) {
    CORK.with(|cork| {
        let previous = cork.borrow_mut().run.replace(HeldRun {
            shared: Arc::clone(shared),
            run,
        });
        debug_assert!(previous.is_none(), "a held run was replaced, not flushed");
    });
}

/// Fans out the held run, if any.
pub fn flush_publishes() {
    let Some(HeldRun { shared, run }) = CORK.with(|cork| cork.borrow_mut().run.take()) else {
        return;
    };
    Python::attach(|py| publish::fan_out(py, &shared, run));
}

/// Wakes `conn`'s writer now, or when the outermost cork on this thread ends.
pub fn wake(conn: &Arc<ConnHandle>, events: &Arc<EventQueue>) {
    let deferred = CORK.with(|cork| {
        let mut cork = cork.borrow_mut();
        if cork.depth > 0 {
            if cork.pending.is_empty() && cork.replies.is_empty() {
                cork.first_events = Some(Arc::clone(events));
            }
            if cork.write_replies && cork.answering == conn.id {
                cork.replies.push(Arc::clone(conn));
            } else {
                cork.pending.push(Arc::clone(conn));
            }
            true
        } else {
            false
        }
    });
    if !deferred {
        conn.wake();
    }
}

/// Holds wake-ups, runs of publishes and subscription changes for the broker while alive; nests.
pub struct CorkGuard {
    _interest: InterestHold,
}

/// Runs `handle` (the listeners of a message from connection `id`): output it gives that connection is
/// its reply.
pub fn answering<R>(id: u64, handle: impl FnOnce() -> R) -> R {
    let outer = CORK.with(|cork| std::mem::replace(&mut cork.borrow_mut().answering, id));
    let result = handle();
    CORK.with(|cork| cork.borrow_mut().answering = outer);
    result
}

impl CorkGuard {
    /// A batch whose connections are read on this thread: replies are written here at its end.
    pub fn begin_writing_replies() -> Self {
        let guard = Self::begin();
        CORK.with(|cork| {
            let mut cork = cork.borrow_mut();
            if cork.depth == 1 {
                cork.write_replies = true;
            }
        });
        guard
    }

    pub fn begin() -> Self {
        CORK.with(|cork| cork.borrow_mut().depth += 1);
        Self {
            _interest: InterestHold::begin(),
        }
    }
}

impl Drop for CorkGuard {
    fn drop(&mut self) {
        if CORK.with(|cork| cork.borrow().depth == 1) {
            // Still corked: the run's wake-ups join the others.
            flush_publishes();
        }
        let (pending, replies, first_events) = CORK.with(|cork| {
            let mut cork = cork.borrow_mut();
            cork.depth -= 1;
            if cork.depth == 0 {
                cork.write_replies = false;
                (
                    std::mem::take(&mut cork.pending),
                    std::mem::take(&mut cork.replies),
                    cork.first_events.take(),
                )
            } else {
                (Vec::new(), Vec::new(), None)
            }
        });
        let Some(events) = first_events else {
            return;
        };
        // Replies to messages read on this thread: written here, so that a request read, handled and
        // answered never leaves it. One connection's output (a reply, in request-reply): written here
        // too, sparing the wake-up of its task. Other output for many (fan-out): their tasks write it,
        // and the later of it gathers more per write while this thread goes on with the next batch
        // (writing it all here lost 25-35 % of pipelined echo and fan-out throughput; see
        // docs/architecture.md).
        replies.iter().for_each(|conn| conn.write_or_wake(&events));
        match pending.as_slice() {
            [conn] => conn.write_or_wake(&events),
            _ => pending.iter().for_each(|conn| conn.wake()),
        }
    }
}
