//! One task per connection: reads and decodes client frames into events, writes the outbound queue with
//! vectored writes, answers pings, runs the close handshake and the idle timer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::{ConnHandle, Queued, ServerConfig};
use crate::bridge::{Event, EventQueue, Traffic};
use crate::protocol::{
    encode, Decoder, Inbound, CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_NO_STATUS,
};

/// Bytes asked of the socket per read when no frame needs more.
const READ_CHUNK: usize = 16 * 1024;
/// The most asked of the socket per read, reached when reads keep filling what they were given.
const MAX_READ: usize = 256 * 1024;
/// Reads per wake-up before yielding to other connections.
const READS_PER_TURN: usize = 4;
/// Buffers handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// Runs the connection until it ends; returns the code and reason for the 'close' event.
pub(super) async fn run(
    stream: TcpStream,
    conn: Arc<ConnHandle>,
    early_bytes: BytesMut,
    events: &EventQueue,
    config: &ServerConfig,
) -> (u16, Bytes) {
    let mut connection = Connection {
        decoder: Decoder::new(conn.route.max_payload_length).with_deflate(conn.deflate),
        stream,
        conn,
        events,
        close_timeout: config.close_timeout,
        // The handshake's buffer is kept only if the client sent frames right behind its request.
        read_buf: if early_bytes.is_empty() {
            BytesMut::new()
        } else {
            early_bytes
        },
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
    };
    let outcome = connection.serve().await;
    connection.conn.end();
    outcome
}

struct Connection<'a> {
    stream: TcpStream,
    conn: Arc<ConnHandle>,
    events: &'a EventQueue,
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
}

impl Connection<'_> {
    async fn serve(&mut self) -> (u16, Bytes) {
        let mut deadline = self.next_deadline();
        let timer = sleep_until(deadline.unwrap_or_else(far_future));
        tokio::pin!(timer);
        if !self.read_buf.is_empty() {
            self.decode_input();
        }
        loop {
            if let Some(end) = self.after_activity().await {
                return end;
            }
            let next = self.next_deadline();
            if next != deadline {
                deadline = next;
                timer.as_mut().reset(deadline.unwrap_or_else(far_future));
            }
            let wake = tokio::select! {
                biased;
                _ = self.conn.woken() => Wake::Queue,
                ready = self.stream.readable(), if self.may_read() => match ready {
                    Ok(()) => Wake::Readable,
                    Err(_) => return self.abnormal(),
                },
                ready = self.stream.writable(), if !self.in_flight.is_empty() => match ready {
                    Ok(()) => Wake::Writable,
                    Err(_) => return self.abnormal(),
                },
                () = &mut timer, if deadline.is_some() => Wake::Timer,
            };
            match wake {
                Wake::Readable => match self.read_input() {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return self.abnormal(),
                },
                Wake::Timer => {
                    if self.on_timer() {
                        return self.abnormal();
                    }
                }
                Wake::Queue | Wake::Writable => {}
            }
        }
    }

    /// Writes what is queued and decides whether the connection is over.
    async fn after_activity(&mut self) -> Option<(u16, Bytes)> {
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
                self.close_deadline = Some(Instant::now() + self.close_timeout);
            }
        }
        let close_written = self.sent_close && self.in_flight.is_empty();
        if close_written && self.received_close {
            let _ = self.stream.shutdown().await;
            return self.outcome.take();
        }
        if close_written && self.undecodable && !self.write_shut {
            // The client's close frame cannot be framed after a protocol error: end our side (FIN) so the
            // client closes too, and wait for its end of stream, bounded by the close deadline.
            self.write_shut = true;
            let _ = self.stream.shutdown().await;
        }
        None
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
        for turn in 0..READS_PER_TURN {
            if turn > 0 && !self.events.backlog().may_read(&self.conn) {
                break; // Python is behind: what was read is enough for now
            }
            let ask = self
                .read_size
                .max(self.decoder.wanted().saturating_sub(self.read_buf.len()));
            self.read_buf.reserve(ask);
            // Limited: the buffer may have more spare room than asked, and reads must stay bounded.
            match self
                .stream
                .try_read_buf(&mut (&mut self.read_buf).limit(ask))
            {
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
                    self.decode_input();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Ok(true)
    }

    fn decode_input(&mut self) {
        if self.undecodable || self.received_close {
            self.read_buf.clear();
            return;
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
                            if let Queued::Closed = self.conn.send_unlimited(encode::PONG, &data) {
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
                                self.close_deadline = Some(Instant::now() + self.close_timeout);
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
                    self.close_deadline = Some(Instant::now() + self.close_timeout);
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
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self) -> io::Result<super::conn_handle::Taken> {
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
            match self.stream.try_write_vectored(&slices[..count]) {
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

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let front = self
                .in_flight
                .front_mut()
                .expect("wrote more than was in flight");
            if written >= front.len() {
                written -= front.len();
                self.in_flight.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::RouteConfig;

    #[test]
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
                index: 0,
                max_payload_length: 1024,
                idle_timeout: Some(Duration::from_secs(30)),
                max_lifetime: None,
                send_pings_automatically: true,
                max_backpressure: 1024,
                close_on_backpressure_limit: false,
                intercept: false,
                upgrade_timeout: std::time::Duration::from_secs(10),
                origins: None,
                compression: crate::protocol::deflate::Compression::Disabled,
            });
            let conn = Arc::new(ConnHandle::new(
                1,
                stream.local_addr().unwrap(),
                route,
                None,
            ));
            let events = EventQueue::new(1024, 1024).unwrap();
            let config = ServerConfig::default();
            let task = run(stream, conn, BytesMut::new(), &events, &config);
            let size = std::mem::size_of_val(&task);
            assert!(
                size <= 1536,
                "the per-connection task state grew to {size} bytes"
            );
        });
    }
}
