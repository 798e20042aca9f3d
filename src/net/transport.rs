//! The socket of an upgraded connection as its task drives it: readiness, non-blocking reads and
//! vectored writes, over TCP or over TLS. rustls is driven in place (its unbuffered API, see
//! `tls/stream.rs`), so a TLS connection keeps the task's readiness loop: records are read and written
//! with the same non-blocking calls as plain bytes.

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::task::{Context, Poll};

use std::os::fd::{AsRawFd, RawFd};

use bytes::BytesMut;
use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::tls::TlsStream;

pub(super) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    /// A plain socket read by the asyncio thread (`inline.rs`): registered with the runtime for room
    /// to write only, so that input never wakes an I/O thread.
    TcpWrites(AsyncFd<std::net::TcpStream>),
}

impl Transport {
    /// The same plain socket, registered for room to write only (see `TcpWrites`), and its descriptor.
    pub(super) fn watching_writes_only(self) -> io::Result<(Self, RawFd)> {
        let tcp = match self {
            Self::Tcp(tcp) => tcp.into_std()?,
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let socket = tcp.as_raw_fd();
        // SAFETY: the AsyncFd owns the stream, whose descriptor stays open and unchanged until it drops.
        let watched = unsafe { AsyncFd::register_with_interest(tcp, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok((Self::TcpWrites(watched), socket))
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
            Self::TcpWrites(fd) => fd.poll_write_ready(cx).map_ok(drop),
        }
    }

    /// Whether the peer's input waits unread in the socket of a connection read by another thread.
    pub(super) fn has_unread_input(&self) -> bool {
        match self {
            Self::TcpWrites(fd) => fd.get_ref().peek(&mut [0]).is_ok_and(|n| n > 0),
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
            Self::TcpWrites(fd) => {
                fd.try_io(Interest::WRITABLE, |mut tcp| tcp.write_vectored(slices))
            }
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
            Self::TcpWrites(fd) => {
                let _ = fd.get_ref().shutdown(Shutdown::Write);
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
