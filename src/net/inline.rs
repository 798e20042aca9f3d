//! Reads on the asyncio thread (`inline_reads`): the plain sockets of upgraded connections are watched by
//! an epoll set of the server's own, which the asyncio loop watches in turn (`loop.add_reader`). A
//! message that arrives while the loop waits wakes the asyncio thread itself, which reads it, decodes it
//! and hands it to its listener at once: no I/O thread in between (see docs/architecture.md, "Reads on
//! the asyncio thread"). The connection's task keeps everything else: writes, timers, the close
//! handshake; its tokio registration watches for room to write only, so input never wakes it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use socket2::SockRef;

use super::read_side::{Reader, NO_SOCKET};
use super::{ConnHandle, ConnIdMap};
use crate::bridge::EventQueue;

/// Ready sockets taken per `epoll_wait`.
const READY_AT_ONCE: usize = 256;

/// The server's epoll set of connections read on the asyncio thread.
#[derive(Debug)]
pub struct InlineReads {
    epoll: OwnedFd,
    conns: Mutex<ConnIdMap<Arc<ConnHandle>>>,
    close_timeout: Duration,
}

impl InlineReads {
    pub(super) fn new(close_timeout: Duration) -> io::Result<Self> {
        // SAFETY: epoll_create1 has no preconditions; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` was just created and nothing else owns it.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            conns: Mutex::default(),
            close_timeout,
        })
    }

    /// How many connections are read here now.
    pub fn connections(&self) -> usize {
        self.conns.lock().expect("inline reads poisoned").len()
    }

    /// The descriptor the asyncio loop watches: readable when a connection in the set has input.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// From now on `socket` (the connection's plain socket, which its task keeps open until `remove`)
    /// is read on the asyncio thread.
    pub(super) fn add(&self, conn: &Arc<ConnHandle>, socket: RawFd) -> io::Result<()> {
        conn.reading().socket = socket;
        self.conns
            .lock()
            .expect("inline reads poisoned")
            .insert(conn.id, Arc::clone(conn));
        self.control(libc::EPOLL_CTL_ADD, socket, conn.id, true)
    }

    /// The task is about to close the socket: it leaves the set, and nothing reads it any more.
    pub(super) fn remove(&self, conn: &ConnHandle) {
        let socket = std::mem::replace(&mut conn.reading().socket, NO_SOCKET);
        if socket != NO_SOCKET {
            let _ = self.control(libc::EPOLL_CTL_DEL, socket, conn.id, false);
        }
        self.conns
            .lock()
            .expect("inline reads poisoned")
            .remove(&conn.id);
    }

    /// Task side, when woken: puts a paused socket back in the set once Python caught up (`may_read`).
    /// Returns true when reading met the end of the stream or an error: the connection is over.
    pub(super) fn after_wake(&self, conn: &ConnHandle, may_read: impl FnOnce() -> bool) -> bool {
        let mut reading = conn.reading();
        if reading.ended {
            return true;
        }
        if reading.paused && reading.socket != NO_SOCKET && may_read() {
            reading.paused = false;
            let _ = self.control(libc::EPOLL_CTL_MOD, reading.socket, conn.id, true);
        }
        false
    }

    /// Asyncio thread: reads every connection that has input, pushing its events to `events` for the
    /// drain that follows.
    pub fn read_ready(&self, events: &EventQueue) {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; READY_AT_ONCE];
        // SAFETY: `ready` is a valid array of READY_AT_ONCE events; timeout 0 never blocks.
        let count = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                ready.as_mut_ptr(),
                READY_AT_ONCE as i32,
                0,
            )
        };
        for event in ready.iter().take(count.max(0) as usize) {
            let id = event.u64;
            let conn = self
                .conns
                .lock()
                .expect("inline reads poisoned")
                .get(&id)
                .cloned();
            if let Some(conn) = conn {
                self.read_one(&conn, events);
            }
        }
    }

    fn read_one(&self, conn: &Arc<ConnHandle>, events: &EventQueue) {
        let mut reading = conn.reading();
        let socket = reading.socket;
        if socket == NO_SOCKET || reading.ended {
            return;
        }
        if !events.backlog().may_read(conn) && events.backlog().pause(conn) {
            // Python is behind: the socket leaves the watch until the backlog resumes the task.
            reading.paused = true;
            let _ = self.control(libc::EPOLL_CTL_MOD, socket, conn.id, false);
            return;
        }
        let outcome = reading.read_with(
            conn,
            events,
            self.close_timeout,
            Reader::Consumer,
            |buf, ask| recv(socket, buf, ask),
        );
        if !matches!(outcome, Ok(true)) {
            reading.ended = true;
            let _ = self.control(libc::EPOLL_CTL_DEL, socket, conn.id, false);
            drop(reading);
            conn.wake();
        }
    }

    fn control(&self, op: i32, socket: RawFd, id: u64, watch: bool) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: if watch {
                (libc::EPOLLIN | libc::EPOLLRDHUP) as u32
            } else {
                0
            },
            u64: id,
        };
        // SAFETY: both descriptors are open (the socket is closed only after `remove`); `event` is valid.
        let done = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, socket, &mut event) };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// One non-blocking read of at most `ask` bytes onto the end of `buf`.
fn recv(socket: RawFd, buf: &mut BytesMut, ask: usize) -> io::Result<usize> {
    // SAFETY: the socket stays open while the read side's lock is held with `socket` set (`remove`).
    let fd = unsafe { BorrowedFd::borrow_raw(socket) };
    let spare: &mut [MaybeUninit<u8>] = &mut buf.spare_capacity_mut()[..ask];
    let read = SockRef::from(&fd).recv(spare)?;
    // SAFETY: recv initialised the first `read` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + read) };
    Ok(read)
}
