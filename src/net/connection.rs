//! One task per connection: reads and decodes client frames into events, writes the outbound queue with
//! vectored writes, answers pings, runs the close handshake and the idle timer.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{sleep_until, Instant, Sleep};

use super::conn_handle::advance_queue;
use super::inline::InlineReads;
use super::read_side::{ReadSide, Reader};
use super::transport::Transport;
use super::ConnHandle;
use crate::bridge::{Event, EventQueue, Traffic};
use crate::protocol::{encode, CLOSE_ABNORMAL, CLOSE_GOING_AWAY};

/// Buffers handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// One upgraded connection, served by its task until it ends.
pub(super) struct Connection {
    transport: Transport,
    conn: Arc<ConnHandle>,
    events: Arc<EventQueue>,
    close_timeout: Duration,
    /// Taken from the queue, not yet accepted by the socket.
    in_flight: VecDeque<Bytes>,
    started: Instant,
    write_shut: bool,
    /// Set when the asyncio thread reads this connection: its task never reads.
    inline: Option<Arc<InlineReads>>,
}

/// What a turn's writes left: the connection's end, or when its timer is due next.
enum Activity {
    Ended((u16, Bytes)),
    Goes(Option<Instant>),
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
        if let Some(inline) = &self.inline {
            inline.remove(&self.conn);
        }
    }
}

impl Connection {
    pub(super) fn new(
        transport: Transport,
        conn: Arc<ConnHandle>,
        early_bytes: BytesMut,
        events: Arc<EventQueue>,
        close_timeout: Duration,
        inline: Option<(Arc<InlineReads>, RawFd)>,
    ) -> Self {
        match (&transport, &inline) {
            (Transport::Tcp(tcp), _) => conn.attach_socket(tcp.as_raw_fd()),
            (_, Some((_, socket))) => conn.attach_socket(*socket),
            _ => {}
        }
        conn.reading()
            .start(early_bytes, &conn, &events, close_timeout);
        // Read by the asyncio thread from now on (its task's registration watches for room to write only).
        let inline = inline.map(|(inline, socket)| {
            if inline.add(&conn, socket).is_err() {
                conn.reading().ended = true;
                conn.wake();
            }
            inline
        });
        Self {
            transport,
            conn,
            events,
            close_timeout,
            in_flight: VecDeque::new(),
            started: Instant::now(),
            write_shut: false,
            inline,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.conn.id
    }

    /// Serves the connection until it ends; returns the code and reason for the 'close' event.
    pub(super) async fn serve(&mut self) -> (u16, Bytes) {
        let outcome = self.exchange().await;
        // Nothing is read after the end: the 'close' event is the connection's last.
        if let Some(inline) = &self.inline {
            inline.remove(&self.conn);
        }
        self.conn.end();
        outcome
    }

    // The task of every connection keeps this future's state for as long as the connection lives, idle or
    // not: readiness is polled in place (no readiness futures kept) and the task is woken through a waker
    // in its `ConnHandle` (no `Notify` future), which keeps an idle connection's task small.
    async fn exchange(&mut self) -> (u16, Bytes) {
        let mut plan = TimerPlan::new(self.next_deadline(&self.conn.reading()));
        let timer = sleep_until(plan.at());
        tokio::pin!(timer);
        let mut fired = false;
        loop {
            let deadline = match self.after_activity() {
                Activity::Ended(end) => return end,
                Activity::Goes(deadline) => deadline,
            };
            if plan.moves(deadline, fired) {
                timer.as_mut().reset(plan.at());
            }
            fired = false;
            let waiting = Waiting {
                conn: &self.conn,
                transport: &self.transport,
                read: self.inline.is_none() && self.may_read(),
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
                Wake::Queue => {
                    let may_read = || self.events.backlog().may_read(&self.conn);
                    if let Some(inline) = &self.inline {
                        if inline.after_wake(&self.conn, may_read) {
                            return self.abnormal();
                        }
                    }
                }
                Wake::Writable => {}
            }
        }
    }

    /// Ends our side of the stream (FIN); the socket stays open for reading.
    fn shut_write(&mut self) {
        self.transport.shutdown_write();
    }

    /// Writes what is queued and decides whether the connection is over; if not, when the timer is due
    /// next (read under the same lock of the read side).
    fn after_activity(&mut self) -> Activity {
        let taken = match self.flush() {
            Ok(taken) => taken,
            Err(_) => return Activity::Ended(self.abnormal()),
        };
        if taken.destroy {
            return Activity::Ended((CLOSE_ABNORMAL, Bytes::new()));
        }
        let mut reading = self.conn.reading();
        if let Some((code, reason)) = taken.closing {
            if !reading.sent_close {
                reading.sent_close = true;
                reading.outcome.get_or_insert((code, reason));
                reading.start_close_deadline(self.close_timeout);
            }
        }
        let close_written = reading.sent_close && self.in_flight.is_empty();
        if close_written && reading.received_close {
            let outcome = reading.outcome.take();
            drop(reading);
            self.shut_write();
            return match outcome {
                Some(outcome) => Activity::Ended(outcome),
                None => Activity::Goes(self.next_deadline(&self.conn.reading())),
            };
        }
        let deadline = self.next_deadline(&reading);
        if close_written && reading.undecodable && !self.write_shut {
            drop(reading);
            // The client's close frame cannot be framed after a protocol error: end our side (FIN) so the
            // client closes too, and wait for its end of stream, bounded by the close deadline.
            self.write_shut = true;
            self.shut_write();
        }
        Activity::Goes(deadline)
    }

    /// The connection ended without a completed close handshake.
    fn abnormal(&mut self) -> (u16, Bytes) {
        self.conn
            .reading()
            .outcome
            .take()
            .unwrap_or((CLOSE_ABNORMAL, Bytes::new()))
    }

    fn next_deadline(&self, reading: &ReadSide) -> Option<Instant> {
        if let Some(at) = reading.close_deadline {
            return Some(at);
        }
        let route = &self.conn.route;
        let idle = route.idle_timeout.map(|idle| {
            if route.send_pings_automatically && !reading.pinged {
                reading.last_read + idle / 2
            } else {
                reading.last_read + idle
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
        let mut reading = self.conn.reading();
        if !self.events.backlog().may_read(&self.conn) || self.transport.has_unread_input() {
            // Not reading because Python is behind (or, read on the asyncio thread, busy): the client
            // is busy, not idle.
            reading.last_read = now;
        }
        if reading.close_deadline.is_some_and(|at| now >= at) {
            return true;
        }
        let (last_read, pinged) = (reading.last_read, reading.pinged);
        drop(reading);
        if let Some(lifetime) = self.conn.route.max_lifetime {
            if now.duration_since(self.started) >= lifetime {
                self.conn.close(CLOSE_GOING_AWAY, "max lifetime reached");
                return false;
            }
        }
        let Some(idle) = self.conn.route.idle_timeout else {
            return false;
        };
        let silent = now.duration_since(last_read);
        if silent >= idle {
            self.conn.close(CLOSE_GOING_AWAY, "idle timeout");
        } else if self.conn.route.send_pings_automatically && !pinged && silent >= idle / 2 {
            self.conn.reading().pinged = true;
            self.conn.send_unlimited(encode::PING, b"");
        }
        false
    }

    /// Reads what the socket has. Returns Ok(false) at end of stream.
    fn read_input(&mut self) -> io::Result<bool> {
        let transport = &mut self.transport;
        self.conn.reading().read_with(
            &self.conn,
            &self.events,
            self.close_timeout,
            Reader::IoThread,
            |buf, ask| transport.try_read(buf, ask),
        )
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
                    self.advance(written);
                    if self.conn.wrote(written, !self.in_flight.is_empty()) {
                        self.events.push(Event::Drain { id: self.conn.id });
                    }
                }
                Err(e) => {
                    self.conn.write_stopped();
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => Ok(taken),
                        _ => Err(e),
                    };
                }
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
                None,
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
