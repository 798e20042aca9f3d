//! Writes from the thread that queued the output (the asyncio thread, at the end of a batch that gave
//! output to one connection), when the connection's task is parked with nothing of its own in flight on a
//! plain socket. A reply then reaches the socket without waking the task: one thread switch less per
//! round trip (see docs/architecture.md, "Writes from the queueing thread"). What the socket does not take
//! is left to the task, woken as before.

use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, RawFd};

use bytes::Buf;
use socket2::SockRef;

use super::{advance_queue, ConnHandle, OutState, Phase, NO_SOCKET};
use crate::bridge::{Event, EventQueue, Traffic};

/// At most this many buffers per write, as the task's own writes.
const WRITE_SLICES: usize = 64;

impl ConnHandle {
    /// The task owns `socket` (a plain TCP socket) from now until `detach_socket`.
    pub(in crate::net) fn attach_socket(&self, socket: RawFd) {
        self.state().socket = socket;
    }

    /// The task is about to close the socket: nothing may write to it any more.
    pub(in crate::net) fn detach_socket(&self) {
        self.state().socket = NO_SOCKET;
    }

    /// Writes what is queued from this thread when the task may be left parked; otherwise, and for
    /// whatever the socket does not take, wakes the task. For the thread that was told to wake it
    /// (`Queued::Yes { wake: true }`).
    pub fn write_or_wake(&self, events: &EventQueue) {
        let mut state = self.state();
        if !may_write_through(&state) {
            drop(state);
            self.wake();
            return;
        }
        // An error (WouldBlock, or one the task meets again on its next read or write and ends the
        // connection for) leaves everything to the task.
        let mut drained = false;
        if let Ok(written) = write_queued(&mut state) {
            Traffic::add(&events.traffic().bytes_out, written);
            drained = self.count_written(&state, written);
            if state.chunks.is_empty() && state.tail.is_empty() {
                // Everything went: the task stays parked, waiting for the next wake-up or input.
                state.writer_parked = true;
                state.owed_pong = 0;
                state.tail = Default::default();
            }
        }
        let parked = state.writer_parked;
        drop(state);
        if drained {
            events.push(Event::Drain { id: self.id });
        }
        if !parked {
            self.wake();
        }
    }
}

/// The task is parked with nothing in flight, the connection open on a plain socket, and something
/// queued. Held frames (a streamed message's) are not in the queue, so they are never written early.
fn may_write_through(state: &OutState) -> bool {
    state.socket != NO_SOCKET
        && !state.task_writing
        && !state.destroy
        && state.phase == Phase::Open
        && !(state.chunks.is_empty() && state.tail.is_empty())
}

/// One vectored write of the queue (chunks, then the tail) to the socket, with the queue's lock held so
/// that the task cannot take and write later output first; what was written leaves the queue.
fn write_queued(state: &mut OutState) -> io::Result<usize> {
    // SAFETY: `socket` is the task's open socket: the task clears it under this lock (which is held here)
    // before it closes the socket, so the descriptor cannot be closed or reused during this write.
    let socket = unsafe { BorrowedFd::borrow_raw(state.socket) };
    let socket = SockRef::from(&socket);
    // MSG_NOSIGNAL: a peer that is gone is an error here, not a SIGPIPE (CPython ignores that signal, but
    // an app may restore it).
    let flags = libc::MSG_NOSIGNAL;
    let written = if state.chunks.is_empty() {
        // A reply alone (the usual case): `send`, which the kernel serves with less work than `sendmsg`.
        socket.send_with_flags(&state.tail, flags)?
    } else {
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        socket.send_vectored_with_flags(queued_slices(state, &mut slices), flags)?
    };
    advance(state, written);
    Ok(written)
}

/// The queue as slices for one vectored write: chunks, then the tail when every chunk fits.
fn queued_slices<'a>(
    state: &'a OutState,
    slices: &'a mut [IoSlice<'a>; WRITE_SLICES],
) -> &'a [IoSlice<'a>] {
    let mut count = 0;
    for chunk in state.chunks.iter().take(WRITE_SLICES - 1) {
        slices[count] = IoSlice::new(chunk);
        count += 1;
    }
    if !state.tail.is_empty() && count == state.chunks.len() {
        slices[count] = IoSlice::new(&state.tail);
        count += 1;
    }
    &slices[..count]
}

fn advance(state: &mut OutState, written: usize) {
    let into_tail = advance_queue(&mut state.chunks, written);
    state.tail.advance(into_tail);
}
