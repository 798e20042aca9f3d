//! The socket of an upgraded connection as its task drives it: readiness, non-blocking reads and
//! vectored writes, over TCP or over TLS. rustls is driven in place (its unbuffered API, see
//! `tls/stream.rs`), so a TLS connection keeps the task's readiness loop: records are read and written
//! with the same non-blocking calls as plain bytes.

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::BytesMut;
use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::tls::TlsStream;

pub(super) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    /// A plain socket read by the asyncio thread (`inline.rs`).
    TcpWrites(WriteOnly),
}

/// A plain socket whose task only writes. It is registered with the runtime, for room to write only (so
/// that input never wakes an I/O thread), the first time the task has to wait for room: most
/// connections never do, and registering and unregistering cost two `epoll_ctl`s.
pub(super) struct WriteOnly {
    /// Declared before `tcp`, so dropped, and unregistered, before the descriptor is closed.
    room: OnceLock<io::Result<AsyncFd<Descriptor>>>,
    tcp: std::net::TcpStream,
}

/// The socket's descriptor, for the registration; `WriteOnly::tcp` owns it.
struct Descriptor(RawFd);

impl AsRawFd for Descriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl WriteOnly {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let room = self.room.get_or_init(|| {
            let descriptor = Descriptor(self.tcp.as_raw_fd());
            // SAFETY: `tcp` keeps the descriptor open and unchanged for as long as the registration
            // lives: `room` is dropped before it.
            unsafe { AsyncFd::register_with_interest(descriptor, Interest::WRITABLE) }
                .map_err(io::Error::from)
        });
        match room {
            Ok(fd) => fd.poll_write_ready(cx).map_ok(drop),
            Err(e) => Poll::Ready(Err(e.kind().into())),
        }
    }

    fn write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.room.get() {
            // Registered: the write clears the readiness it used up when the socket is full.
            Some(Ok(fd)) => fd.try_io(Interest::WRITABLE, |_| (&self.tcp).write_vectored(slices)),
            _ => (&self.tcp).write_vectored(slices),
        }
    }
}

impl Transport {
    /// A plain socket out of the runtime's registration until a write must wait (see `WriteOnly`), and
    /// its descriptor.
    pub(super) fn writes_only(tcp: std::net::TcpStream) -> (Self, RawFd) {
        let socket = tcp.as_raw_fd();
        let room = OnceLock::new();
        (Self::TcpWrites(WriteOnly { room, tcp }), socket)
    }

    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(tcp) => tcp.poll_read_ready(cx),
            Self::Tls(tls) if tls.has_input() => Poll::Ready(Ok(())),
            Self::Tls(tls) => tls.tcp().poll_read_ready(cx),
            Self::TcpWrites(_) => Poll::Pending,
        }
    }

    pub(super) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(tcp) => tcp.poll_write_ready(cx),
            Self::Tls(tls) => tls.tcp().poll_write_ready(cx),
            Self::TcpWrites(socket) => socket.poll_write_ready(cx),
        }
    }

    /// Whether the peer's input waits unread in the socket of a connection read by another thread.
    pub(super) fn has_unread_input(&self) -> bool {
        match self {
            Self::TcpWrites(socket) => socket.tcp.peek(&mut [0]).is_ok_and(|n| n > 0),
            _ => false,
        }
    }

    /// Whether output waits in the transport itself (TLS records not yet written).
    pub(super) fn wants_write(&self) -> bool {
        match self {
            Self::Tls(tls) => tls.wants_write(),
            _ => false,
        }
    }

    /// Reads at most `ask` bytes of what the peer sent (decrypted) onto the end of `buf`. `Ok(0)` at the
    /// end of the stream; `WouldBlock` when nothing is there.
    pub(super) fn try_read(&mut self, buf: &mut BytesMut, ask: usize) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => read_tcp(tcp, buf, ask),
            Self::Tls(tls) => tls.read_plaintext(buf, ask),
            Self::TcpWrites(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Writes what it can of `slices` (encrypted, over TLS). `WouldBlock` when the socket takes nothing.
    pub(super) fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => tcp.try_write_vectored(slices),
            Self::Tls(tls) => tls.write_plaintext(slices),
            Self::TcpWrites(socket) => socket.write_vectored(slices),
        }
    }

    /// Writes the transport's own pending output (TLS records: alerts, tickets, key updates) as far as
    /// the socket takes it.
    pub(super) fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(_) | Self::TcpWrites(_) => Ok(()),
            Self::Tls(tls) => match tls.write_records() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                other => other,
            },
        }
    }

    /// Ends our side of the stream (TLS close_notify, then FIN); the socket stays open for reading.
    pub(super) fn shutdown_write(&mut self) {
        match self {
            Self::Tcp(tcp) => {
                let _ = SockRef::from(&*tcp).shutdown(Shutdown::Write);
            }
            Self::TcpWrites(socket) => {
                let _ = socket.tcp.shutdown(Shutdown::Write);
            }
            Self::Tls(tls) => tls.shutdown_write(),
        }
    }
}

/// [`Transport::try_read`] over TCP. A read that returns less than it asked for emptied the socket's
/// receive queue (Linux's TCP read copies until the queue is empty or the request is met), so the
/// socket is marked not readable without the read that would only say `WouldBlock`: one syscall less
/// per message when clients send one message and wait for the answer. That is safe because the
/// readiness cleared is the one seen before the read: data arriving after it is a new edge of the
/// (edge-triggered) epoll registration, which marks the socket readable again with a new tick that
/// this clear does not touch, and a FIN already seen stays (tokio never clears read-closed), so the
/// next turn reads the end of the stream.
fn read_tcp(tcp: &TcpStream, buf: &mut BytesMut, ask: usize) -> io::Result<usize> {
    use bytes::BufMut;
    let mut read = 0;
    let outcome = tcp.try_io(Interest::READABLE, || {
        // Limited: the buffer may have more spare room than asked, and reads must stay bounded.
        read = tcp.try_read_buf(&mut (&mut *buf).limit(ask))?;
        if read > 0 && read < ask {
            // Makes try_io clear the readiness it saw before this read.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(read)
        }
    });
    match outcome {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
        other => other,
    }
}
