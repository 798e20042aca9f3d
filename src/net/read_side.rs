//! The reading half of a connection: the bytes read and not yet decoded, the decoder, and where the close
//! handshake stands. The connection's task reads into it, or, for a connection read on the asyncio thread
//! (`inline.rs`), that thread does; it lives behind a mutex in the connection's `ConnHandle` so that either
//! may.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{ConnHandle, Queued};
use crate::bridge::{Event, EventQueue, Traffic};
use crate::protocol::deflate::DeflateParams;
use crate::protocol::{grow_within, Decoder, Inbound, CLOSE_NORMAL, CLOSE_NO_STATUS};

/// The least asked of the socket per read.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// The most asked of the socket per read, reached when reads keep filling what they were given.
pub(super) const MAX_READ: usize = 256 * 1024;
/// The most a read copies out of the scratch room (`read_into_own_room`).
const SMALL_READ: usize = READ_CHUNK / 4;
/// Reads per wake-up before yielding to other connections.
const READS_PER_TURN: usize = 4;
/// `socket` when the asyncio thread may not read.
pub(super) const NO_SOCKET: RawFd = -1;

thread_local! {
    /// Where a connection with nothing buffered reads first (see `read_into_own_room`).
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

#[derive(Debug)]
pub struct ReadSide {
    /// Empty (no allocation) while the connection is idle.
    read_buf: BytesMut,
    /// Bytes asked of the socket per read (adapts between READ_CHUNK and MAX_READ).
    read_size: usize,
    decoder: Decoder,
    pub(super) last_read: Instant,
    pub(super) pinged: bool,
    /// The code and reason the 'close' event reports: whoever closed first.
    pub(super) outcome: Option<(u16, Bytes)>,
    pub(super) sent_close: bool,
    pub(super) received_close: bool,
    /// A protocol error was found: what follows cannot be framed, so input is discarded.
    pub(super) undecodable: bool,
    pub(super) close_deadline: Option<Instant>,
    /// Read on the asyncio thread: the plain socket, while the task owns it (`NO_SOCKET` otherwise).
    pub(super) socket: RawFd,
    /// Read on the asyncio thread: the end of the stream or a read error was met; the task ends the
    /// connection.
    pub(super) ended: bool,
    /// Read on the asyncio thread: reading stopped because Python is behind (see `inline.rs`).
    pub(super) paused: bool,
}

/// Where the events of a read go: to the queue with a wake-up of the consumer (an I/O thread), or to the
/// queue of the thread that consumes it and is about to drain it (the asyncio thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    IoThread,
    Consumer,
}

impl ReadSide {
    pub(super) fn new(max_payload_length: usize, deflate: Option<DeflateParams>) -> Self {
        Self {
            read_buf: BytesMut::new(),
            read_size: READ_CHUNK,
            decoder: Decoder::new(max_payload_length).with_deflate(deflate),
            last_read: Instant::now(),
            pinged: false,
            outcome: None,
            sent_close: false,
            received_close: false,
            undecodable: false,
            close_deadline: None,
            socket: NO_SOCKET,
            ended: false,
            paused: false,
        }
    }

    /// Takes what the client sent right behind its upgrade request and decodes it.
    pub(super) fn start(
        &mut self,
        early_bytes: BytesMut,
        conn: &Arc<ConnHandle>,
        events: &EventQueue,
        close_timeout: Duration,
    ) {
        self.read_buf = keep_if_frames(early_bytes);
        if !self.read_buf.is_empty() {
            let consumed = self.decode(conn, events, close_timeout, Reader::IoThread);
            self.release_read_room(consumed);
        }
    }

    /// A close handshake starts now: it must be over within `close_timeout`.
    pub(super) fn start_close_deadline(&mut self, close_timeout: Duration) {
        self.close_deadline = Some(Instant::now() + close_timeout);
    }

    /// Reads what the socket has through `read` (at most the bytes asked, onto the buffer's end; `Ok(0)`
    /// at the end of the stream) and decodes it. Returns Ok(false) at end of stream.
    pub(super) fn read_with(
        &mut self,
        conn: &Arc<ConnHandle>,
        events: &EventQueue,
        close_timeout: Duration,
        reader: Reader,
        mut read: impl FnMut(&mut BytesMut, usize) -> io::Result<usize>,
    ) -> io::Result<bool> {
        let mut consumed = 0;
        let mut outcome = Ok(true);
        for turn in 0..READS_PER_TURN {
            if turn > 0 && !events.backlog().may_read(conn) {
                break; // Python is behind: what was read is enough for now
            }
            let ask = self.read_size;
            let result = if self.read_buf.is_empty() && ask == READ_CHUNK {
                read_into_own_room(&mut self.read_buf, ask, &mut read)
            } else {
                make_room(&mut self.read_buf, ask, self.decoder.wanted());
                read(&mut self.read_buf, ask)
            };
            match result {
                Ok(0) => {
                    outcome = Ok(false);
                    break;
                }
                Ok(n) => {
                    // Large messages or a busy client: ask for more per read; small ones: less.
                    if n >= self.read_size {
                        self.read_size = (self.read_size * 2).min(MAX_READ);
                    } else if n < self.read_size / 4 {
                        self.read_size = (self.read_size / 2).max(READ_CHUNK);
                    }
                    self.last_read = Instant::now();
                    self.pinged = false;
                    consumed += self.decode(conn, events, close_timeout, reader);
                    if n < ask {
                        break; // the socket is empty
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.release_read_room(consumed);
        outcome
    }

    /// Lets go of read buffer room that no frame needs: an empty buffer is dropped, and a partial frame
    /// left in a much larger allocation (a client that went silent mid-frame) moves to an exact copy.
    /// The allocation is what the buffer can still hold plus what was split off it (`consumed`): the
    /// frames split off share it, and once Python has taken them the partial frame alone keeps it. The
    /// copy is less than a quarter of that, so reading a large message over many reads stays linear.
    fn release_read_room(&mut self, consumed: usize) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        } else if mostly_spare(self.read_buf.len(), self.read_buf.capacity() + consumed) {
            self.read_buf = BytesMut::from(&self.read_buf[..]);
        }
    }

    /// Decodes what the read buffer holds into events; returns how many bytes it took off the buffer.
    fn decode(
        &mut self,
        conn: &Arc<ConnHandle>,
        events: &EventQueue,
        close_timeout: Duration,
        reader: Reader,
    ) -> usize {
        let held = self.read_buf.len();
        if self.undecodable || self.received_close {
            self.read_buf.clear();
            return held;
        }
        let id = conn.id;
        let mut batch = Vec::new();
        let mut cost = 0;
        let (mut messages, mut bytes) = (0, 0);
        let mut wake_task = false;
        loop {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(None) => break,
                Ok(Some(inbound)) => {
                    let event = match inbound {
                        Inbound::Text(data) => Event::Message {
                            id,
                            data,
                            binary: false,
                        },
                        Inbound::Binary(data) => Event::Message {
                            id,
                            data,
                            binary: true,
                        },
                        Inbound::Ping(data) => {
                            match conn.send_pong(&data) {
                                Queued::Closed => continue,
                                // Off the task, the parked task must be told of its pong.
                                Queued::Yes { wake: true } => {
                                    wake_task |= reader == Reader::Consumer
                                }
                                _ => {}
                            }
                            Event::Ping { id, data }
                        }
                        Inbound::Pong(data) => Event::Pong { id, data },
                        Inbound::Close(close) => {
                            self.received_close = true;
                            self.read_buf.clear();
                            // Off the task, the task must learn that the handshake moved on.
                            wake_task = reader == Reader::Consumer;
                            if !self.sent_close {
                                // Answered through the queue, after the replies to earlier messages.
                                let code = if close.code == CLOSE_NO_STATUS {
                                    CLOSE_NORMAL
                                } else {
                                    close.code
                                };
                                self.outcome.get_or_insert((close.code, close.reason));
                                self.start_close_deadline(close_timeout);
                                batch.push(Event::Shutdown {
                                    conn: Arc::clone(conn),
                                    code,
                                    reason: "",
                                });
                            }
                            break;
                        }
                    };
                    if !self.sent_close {
                        cost += event.cost();
                        if let Event::Message { data, .. } = &event {
                            messages += 1;
                            bytes += data.len();
                        }
                        batch.push(event);
                    }
                }
                Err(error) => {
                    self.undecodable = true;
                    self.read_buf.clear();
                    wake_task = reader == Reader::Consumer;
                    self.start_close_deadline(close_timeout);
                    let (code, reason) = (error.code, error.reason);
                    batch.push(Event::Shutdown {
                        conn: Arc::clone(conn),
                        code,
                        reason,
                    });
                    break;
                }
            }
        }
        // Counted before the push, so that Python never consumes more than was added.
        events.backlog().add(conn, cost);
        let traffic = events.traffic();
        Traffic::add(&traffic.messages_in, messages);
        Traffic::add(&traffic.bytes_in, bytes);
        match reader {
            Reader::IoThread => events.push_all(&mut batch),
            Reader::Consumer => events.push_from_consumer(&mut batch),
        }
        if wake_task {
            conn.wake();
        }
        held - self.read_buf.len()
    }
}

/// Reads into this thread's scratch room; a small read is copied into an allocation of its own size, which
/// the message keeps until Python has it, instead of costing a READ_CHUNK allocation per read (allocating
/// and freeing those churned the allocator's pages: see docs/performance.md). A larger read takes the
/// room itself, as reading straight into `read_buf` would have.
fn read_into_own_room(
    read_buf: &mut BytesMut,
    ask: usize,
    read: &mut impl FnMut(&mut BytesMut, usize) -> io::Result<usize>,
) -> io::Result<usize> {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        scratch.reserve(ask);
        let result = read(scratch, ask);
        *read_buf = match result {
            Ok(n) if n > SMALL_READ => std::mem::take(scratch),
            Ok(n) if n > 0 => BytesMut::from(&scratch[..]),
            _ => BytesMut::new(),
        };
        result
    })
}

/// What the client sent right behind its request, copied out of the handshake's larger buffer.
fn keep_if_frames(early_bytes: BytesMut) -> BytesMut {
    if early_bytes.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&early_bytes[..])
    }
}

/// Whether an allocation of `allocated` bytes holding `held` is mostly spare room.
fn mostly_spare(held: usize, allocated: usize) -> bool {
    allocated > 4 * held
}

/// Makes room in the read buffer for a read of `ask` bytes. The room grows as bytes arrive, never to the
/// size a frame header announces (`wanted`: the client may never send it, and reserving it would cost
/// that much per connection), and doubling stops at that size (a large frame is not read into twice
/// its size).
fn make_room(read_buf: &mut BytesMut, ask: usize, wanted: usize) {
    let needed = read_buf.len() + ask;
    grow_within(read_buf, needed, needed.max(wanted));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_room_grows_with_the_bytes_not_with_the_announced_size() {
        let mut announced = BytesMut::from(&[0u8; 1024][..]);
        make_room(&mut announced, READ_CHUNK, 16 << 20);
        assert_eq!(announced.capacity(), 1024 + READ_CHUNK);

        let frame = 1_000_000;
        let mut arriving = BytesMut::new();
        while arriving.len() < frame {
            make_room(&mut arriving, MAX_READ, frame);
            let read = MAX_READ.min(frame - arriving.len());
            arriving.extend_from_slice(&vec![1; read]);
        }
        assert!(
            arriving.capacity() <= frame + MAX_READ,
            "{}",
            arriving.capacity()
        );
    }

    #[test]
    fn a_buffer_is_copied_out_only_when_it_is_mostly_spare() {
        assert!(mostly_spare(2, READ_CHUNK), "two bytes of a header");
        assert!(!mostly_spare(4096, READ_CHUNK));
        assert!(!mostly_spare(600_000, 1 << 20), "a large message under way");
    }

    #[test]
    fn a_small_read_gets_an_allocation_of_its_size_and_a_large_one_the_room() {
        let fill = |size: usize| {
            move |buf: &mut BytesMut, ask: usize| {
                assert!(buf.capacity() >= ask);
                buf.extend_from_slice(&vec![7; size]);
                Ok(size)
            }
        };
        let mut small = BytesMut::new();
        assert_eq!(
            read_into_own_room(&mut small, READ_CHUNK, &mut fill(38)).unwrap(),
            38
        );
        assert_eq!((small.len(), small.capacity()), (38, 38));

        let mut large = BytesMut::new();
        let read = read_into_own_room(&mut large, READ_CHUNK, &mut fill(SMALL_READ + 1)).unwrap();
        assert_eq!((read, large.len()), (SMALL_READ + 1, SMALL_READ + 1));
        assert!(
            large.capacity() >= READ_CHUNK,
            "the room, for the rest of a frame"
        );

        let mut nothing = BytesMut::from(&b"stale"[..]);
        let would_block =
            read_into_own_room(&mut nothing, READ_CHUNK, &mut |_: &mut BytesMut, _| {
                Err(io::ErrorKind::WouldBlock.into())
            });
        assert!(would_block.is_err());
        assert_eq!(nothing.capacity(), 0);
    }

    #[test]
    fn early_bytes_are_copied_to_their_size() {
        let mut handshake = BytesMut::with_capacity(16 * 1024);
        handshake.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n\x82\xfe");
        let early = handshake.split_off(18);
        drop(handshake);
        let kept = keep_if_frames(early);
        assert_eq!((&kept[..], kept.capacity()), (&b"\x82\xfe"[..], 2));
        assert_eq!(keep_if_frames(BytesMut::new()).capacity(), 0);
    }
}
