//! One task per connection: reads and decodes client frames into events, writes the outbound queue with
//! vectored writes, answers pings, runs the close handshake and the idle timer.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{sleep_until, Instant, Sleep};

use super::conn_handle::advance_queue;
use super::transport::Transport;
use super::{ConnHandle, Queued};
use crate::bridge::{Event, EventQueue, Traffic};
use crate::protocol::{
    encode, grow_within, Decoder, Inbound, CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_NORMAL,
    CLOSE_NO_STATUS,
};

/// The least asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// The most asked of the socket per read, reached when reads keep filling what they were given.
const MAX_READ: usize = 256 * 1024;
/// Reads per wake-up before yielding to other connections.
const READS_PER_TURN: usize = 4;
/// Buffers handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// One upgraded connection, served by its task until it ends.
pub(super) struct Connection {
    transport: Transport,
    conn: Arc<ConnHandle>,
    events: Arc<EventQueue>,
    decoder: Decoder,
    close_timeout: Duration,
    /// Empty (no allocation) while the connection is idle.
    read_buf: BytesMut,
    /// Bytes asked of the socket per read (adapts between READ_CHUNK and MAX_READ).
    read_size: usize,
    /// Taken from the queue, not yet accepted by the socket.
    in_flight: VecDeque<Bytes>,
    last_read: Instant,
    started: Instant,
    pinged: bool,
    /// The code and reason the 'close' event reports: whoever closed first.
    outcome: Option<(u16, Bytes)>,
    sent_close: bool,
    received_close: bool,
    /// A protocol error was found: what follows cannot be framed, so input is discarded.
    undecodable: bool,
    write_shut: bool,
    close_deadline: Option<Instant>,
}

enum Wake {
    Queue,
    Readable,
    Writable,
    Timer,
    /// The socket reported an error while waiting for readiness.
    Failed,
}

/// What the task waits for between turns.
struct Waiting<'c> {
    conn: &'c ConnHandle,
    transport: &'c Transport,
    /// Input is wanted (Python is not behind).
    read: bool,
    /// Output is in flight, waiting for room in the socket.
    write: bool,
    /// The timer is armed.
    timed: bool,
}

impl Waiting<'_> {
    /// What needs the task next, in order: queued output, input, room to write, the timer.
    fn poll(&self, cx: &mut Context<'_>, timer: Pin<&mut Sleep>) -> Poll<Wake> {
        if self.conn.poll_woken(cx).is_ready() {
            return Poll::Ready(Wake::Queue);
        }
        if self.read {
            if let Poll::Ready(ready) = self.transport.poll_read_ready(cx) {
                return Poll::Ready(ready.map_or(Wake::Failed, |()| Wake::Readable));
            }
        }
        if self.write {
            if let Poll::Ready(ready) = self.transport.poll_write_ready(cx) {
                return Poll::Ready(ready.map_or(Wake::Failed, |()| Wake::Writable));
            }
        }
        if self.timed {
            return timer.poll(cx).map(|()| Wake::Timer);
        }
        Poll::Pending
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Before the socket closes (the fields drop after this): its descriptor may be reused at once.
        self.conn.detach_socket();
    }
}

impl Connection {
    pub(super) fn new(
        transport: Transport,
        conn: Arc<ConnHandle>,
        early_bytes: BytesMut,
        events: Arc<EventQueue>,
        close_timeout: Duration,
    ) -> Self {
        if let Transport::Tcp(tcp) = &transport {
            conn.attach_socket(tcp.as_raw_fd());
        }
        Self {
            decoder: Decoder::new(conn.route.max_payload_length).with_deflate(conn.deflate),
            transport,
            conn,
            events,
            close_timeout,
            read_buf: keep_if_frames(early_bytes),
            read_size: READ_CHUNK,
            in_flight: VecDeque::new(),
            last_read: Instant::now(),
            started: Instant::now(),
            pinged: false,
            outcome: None,
            sent_close: false,
            received_close: false,
            undecodable: false,
            write_shut: false,
            close_deadline: None,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.conn.id
    }

    /// Serves the connection until it ends; returns the code and reason for the 'close' event.
    pub(super) async fn serve(&mut self) -> (u16, Bytes) {
        let outcome = self.exchange().await;
        self.conn.end();
        outcome
    }

    // The task of every connection keeps this future's state for as long as the connection lives, idle or
    // not: readiness is polled in place (no readiness futures kept) and the task is woken through a waker
    // in its `ConnHandle` (no `Notify` future), which keeps an idle connection's task small.
    async fn exchange(&mut self) -> (u16, Bytes) {
        let mut plan = TimerPlan::new(self.next_deadline());
        let timer = sleep_until(plan.at());
        tokio::pin!(timer);
        let mut fired = false;
        if !self.read_buf.is_empty() {
            let consumed = self.decode_input();
            self.release_read_room(consumed);
        }
        loop {
            if let Some(end) = self.after_activity() {
                return end;
            }
            if plan.moves(self.next_deadline(), fired) {
                timer.as_mut().reset(plan.at());
            }
            fired = false;
            let waiting = Waiting {
                conn: &self.conn,
                transport: &self.transport,
                read: self.may_read(),
                write: !self.in_flight.is_empty() || self.transport.wants_write(),
                timed: plan.is_armed(),
            };
            let wake = poll_fn(|cx| waiting.poll(cx, timer.as_mut())).await;
            match wake {
                Wake::Readable => match self.read_input() {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return self.abnormal(),
                },
                Wake::Timer => {
                    fired = true;
                    if self.on_timer() {
                        return self.abnormal();
                    }
                }
                Wake::Failed => return self.abnormal(),
                Wake::Queue | Wake::Writable => {}
            }
        }
    }

    /// Ends our side of the stream (FIN); the socket stays open for reading.
    fn shut_write(&mut self) {
        self.transport.shutdown_write();
    }

    /// Writes what is queued and decides whether the connection is over.
    fn after_activity(&mut self) -> Option<(u16, Bytes)> {
        let taken = match self.flush() {
            Ok(taken) => taken,
            Err(_) => return Some(self.abnormal()),
        };
        if taken.destroy {
            return Some((CLOSE_ABNORMAL, Bytes::new()));
        }
        if let Some((code, reason)) = taken.closing {
            if !self.sent_close {
                self.sent_close = true;
                self.outcome.get_or_insert((code, reason));
                self.start_close_deadline();
            }
        }
        let close_written = self.sent_close && self.in_flight.is_empty();
        if close_written && self.received_close {
            self.shut_write();
            return self.outcome.take();
        }
        if close_written && self.undecodable && !self.write_shut {
            // The client's close frame cannot be framed after a protocol error: end our side (FIN) so the
            // client closes too, and wait for its end of stream, bounded by the close deadline.
            self.write_shut = true;
            self.shut_write();
        }
        None
    }

    /// A close handshake starts now: it must be over within `close_timeout`.
    fn start_close_deadline(&mut self) {
        self.close_deadline = Some(Instant::now() + self.close_timeout);
    }

    /// The connection ended without a completed close handshake.
    fn abnormal(&mut self) -> (u16, Bytes) {
        self.outcome
            .take()
            .unwrap_or((CLOSE_ABNORMAL, Bytes::new()))
    }

    fn next_deadline(&self) -> Option<Instant> {
        if let Some(at) = self.close_deadline {
            return Some(at);
        }
        let route = &self.conn.route;
        let idle = route.idle_timeout.map(|idle| {
            if route.send_pings_automatically && !self.pinged {
                self.last_read + idle / 2
            } else {
                self.last_read + idle
            }
        });
        let end_of_life = route.max_lifetime.map(|lifetime| self.started + lifetime);
        match (idle, end_of_life) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether to read now: not while Python has more than its bound of this connection's (or all)
    /// events to consume. A paused reader is woken by the Python side.
    fn may_read(&self) -> bool {
        let backlog = self.events.backlog();
        backlog.may_read(&self.conn) || !backlog.pause(&self.conn)
    }

    /// Returns true when the connection must be dropped now.
    fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        if !self.events.backlog().may_read(&self.conn) {
            // Not reading because Python is behind: the client is busy, not idle.
            self.last_read = now;
        }
        if self.close_deadline.is_some_and(|at| now >= at) {
            return true;
        }
        if let Some(lifetime) = self.conn.route.max_lifetime {
            if now.duration_since(self.started) >= lifetime {
                self.conn.close(CLOSE_GOING_AWAY, "max lifetime reached");
                return false;
            }
        }
        let Some(idle) = self.conn.route.idle_timeout else {
            return false;
        };
        let silent = now.duration_since(self.last_read);
        if silent >= idle {
            self.conn.close(CLOSE_GOING_AWAY, "idle timeout");
        } else if self.conn.route.send_pings_automatically && !self.pinged && silent >= idle / 2 {
            self.pinged = true;
            self.conn.send_unlimited(encode::PING, b"");
        }
        false
    }

    /// Reads what the socket has. Returns Ok(false) at end of stream.
    fn read_input(&mut self) -> io::Result<bool> {
        let mut consumed = 0;
        for turn in 0..READS_PER_TURN {
            if turn > 0 && !self.events.backlog().may_read(&self.conn) {
                break; // Python is behind: what was read is enough for now
            }
            let ask = self.read_size;
            make_room(&mut self.read_buf, ask, self.decoder.wanted());
            match self.transport.try_read(&mut self.read_buf, ask) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    // Large messages or a busy client: ask for more per read; small ones: less.
                    if n >= self.read_size {
                        self.read_size = (self.read_size * 2).min(MAX_READ);
                    } else if n < self.read_size / 4 {
                        self.read_size = (self.read_size / 2).max(READ_CHUNK);
                    }
                    self.last_read = Instant::now();
                    self.pinged = false;
                    consumed += self.decode_input();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.release_read_room(consumed);
        Ok(true)
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
    fn decode_input(&mut self) -> usize {
        let held = self.read_buf.len();
        if self.undecodable || self.received_close {
            self.read_buf.clear();
            return held;
        }
        let id = self.conn.id;
        let mut batch = Vec::new();
        let mut cost = 0;
        let (mut messages, mut bytes) = (0, 0);
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
                            if let Queued::Closed = self.conn.send_pong(&data) {
                                continue;
                            }
                            Event::Ping { id, data }
                        }
                        Inbound::Pong(data) => Event::Pong { id, data },
                        Inbound::Close(close) => {
                            self.received_close = true;
                            self.read_buf.clear();
                            if !self.sent_close {
                                // Answered through the queue, after the replies to earlier messages.
                                let code = if close.code == CLOSE_NO_STATUS {
                                    CLOSE_NORMAL
                                } else {
                                    close.code
                                };
                                self.outcome.get_or_insert((close.code, close.reason));
                                self.start_close_deadline();
                                let conn = Arc::clone(&self.conn);
                                batch.push(Event::Shutdown {
                                    conn,
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
                    self.start_close_deadline();
                    let (code, reason) = (error.code, error.reason);
                    batch.push(Event::Shutdown {
                        conn: Arc::clone(&self.conn),
                        code,
                        reason,
                    });
                    break;
                }
            }
        }
        // Counted before the push, so that Python never consumes more than was added.
        self.events.backlog().add(&self.conn, cost);
        let traffic = self.events.traffic();
        Traffic::add(&traffic.messages_in, messages);
        Traffic::add(&traffic.bytes_in, bytes);
        self.events.push_all(&mut batch);
        held - self.read_buf.len()
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self) -> io::Result<super::conn_handle::Taken> {
        self.transport.flush_pending()?;
        let mut taken = self.conn.take(&mut self.in_flight);
        loop {
            if taken.destroy {
                return Ok(taken);
            }
            if self.in_flight.is_empty() {
                return Ok(taken);
            }
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let count = self.in_flight.len().min(WRITE_SLICES);
            for (slice, chunk) in slices.iter_mut().zip(self.in_flight.iter()) {
                *slice = IoSlice::new(chunk);
            }
            match self.transport.try_write_vectored(&slices[..count]) {
                Ok(written) => {
                    Traffic::add(&self.events.traffic().bytes_out, written);
                    if self.conn.wrote(written) {
                        self.events.push(Event::Drain { id: self.conn.id });
                    }
                    self.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(taken),
                Err(e) => return Err(e),
            }
            if self.in_flight.is_empty() {
                let closing = taken.closing.take();
                taken = self.conn.take(&mut self.in_flight);
                taken.closing = taken.closing.or(closing);
            }
        }
    }

    fn advance(&mut self, written: usize) {
        let past_end = advance_queue(&mut self.in_flight, written);
        assert_eq!(past_end, 0, "wrote more than was in flight");
    }
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

/// When the connection's one timer moves. Reads push the deadline later all the time; the timer stays where
/// it is then, and moves only when it fired (firing early finds nothing due and re-arms it from the latest
/// deadline) or when the deadline comes earlier (a close handshake started). That keeps the timer wheel out
/// of the read path.
#[derive(Debug, Clone, Copy)]
struct TimerPlan {
    /// The deadline the timer is set to.
    armed: Option<Instant>,
}

impl TimerPlan {
    fn new(deadline: Option<Instant>) -> Self {
        Self { armed: deadline }
    }

    /// Takes the current deadline; returns true when the timer must be reset to `at()`.
    fn moves(&mut self, next: Option<Instant>, fired: bool) -> bool {
        let earlier = match (next, self.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if fired || earlier {
            self.armed = next;
        }
        fired || earlier
    }

    fn at(&self) -> Instant {
        self.armed.unwrap_or_else(far_future)
    }

    fn is_armed(&self) -> bool {
        self.armed.is_some()
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{RouteConfig, ServerConfig};
    use tokio::net::TcpStream;

    #[test]
    fn the_timer_stays_while_deadlines_move_later_and_moves_after_it_fired() {
        let start = Instant::now();
        let at = |secs| Some(start + Duration::from_secs(secs));
        let mut plan = TimerPlan::new(at(10));
        assert!(
            !plan.moves(at(12), false),
            "a read moved the deadline later"
        );
        assert!(!plan.moves(at(15), false));
        assert_eq!(plan.at(), start + Duration::from_secs(10));
        // It fired at 10 with nothing due: re-armed from the latest deadline, even one seen before.
        assert!(plan.moves(at(15), true));
        assert_eq!(plan.at(), start + Duration::from_secs(15));
        assert!(!plan.moves(at(15), false));
    }

    #[test]
    fn the_timer_moves_when_the_deadline_comes_earlier_or_goes() {
        let start = Instant::now();
        let at = |secs| Some(start + Duration::from_secs(secs));
        let mut plan = TimerPlan::new(None);
        assert!(!plan.is_armed());
        assert!(plan.moves(at(30), false), "a first deadline arms it");
        assert!(
            plan.moves(at(5), false),
            "a close handshake's deadline comes first"
        );
        assert_eq!(plan.at(), start + Duration::from_secs(5));
        assert!(
            !plan.moves(None, false),
            "kept: firing with nothing due re-arms it"
        );
        assert!(plan.moves(None, true));
        assert!(!plan.is_armed());
    }

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
    fn early_bytes_are_copied_to_their_size() {
        let mut handshake = BytesMut::with_capacity(16 * 1024);
        handshake.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n\x82\xfe");
        let early = handshake.split_off(18);
        drop(handshake);
        let kept = keep_if_frames(early);
        assert_eq!((&kept[..], kept.capacity()), (&b"\x82\xfe"[..], 2));
        assert_eq!(keep_if_frames(BytesMut::new()).capacity(), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "opens a TCP socket: Miri has no sockets")]
    fn an_idle_connection_task_holds_little_state() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let route = Arc::new(RouteConfig {
                idle_timeout: Some(Duration::from_secs(30)),
                max_backpressure: 1024,
                ..RouteConfig::for_tests()
            });
            let conn = Arc::new(ConnHandle::new(
                1,
                stream.local_addr().unwrap(),
                route,
                None,
            ));
            let events = EventQueue::new(1024, 1024).unwrap();
            let close_timeout = ServerConfig::default().close_timeout;
            let mut connection = Connection::new(
                Transport::Tcp(stream),
                conn,
                BytesMut::new(),
                events,
                close_timeout,
            );
            let serving = connection.serve();
            let size = std::mem::size_of::<Connection>() + std::mem::size_of_val(&serving);
            println!("connection state {size} bytes");
            // What every connection's task keeps while it lives (the spawned future adds the accepted
            // socket's address and the server's handle): keep the task in a small allocation class.
            assert!(
                size <= 512,
                "the per-connection task state grew to {size} bytes"
            );
        });
    }
}
