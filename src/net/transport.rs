//! The socket of an upgraded connection as its task drives it: readiness, non-blocking reads and
//! vectored writes, over TCP or over TLS. rustls is driven in place (it is sans-I/O), so a TLS
//! connection keeps the task's readiness loop: records are read and written with the same
//! non-blocking calls as plain bytes.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::ServerConnection;
use socket2::SockRef;
use tokio::net::TcpStream;

pub(super) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsSocket>),
}

pub(super) struct TlsSocket {
    tcp: TcpStream,
    session: ServerConnection,
    /// The last read filled what it was given: rustls may hold more plaintext, readable without the
    /// socket being readable.
    more_plaintext: bool,
}

impl Transport {
    /// A TLS connection whose handshake is done; `early` is ciphertext read before rustls saw it.
    pub(super) fn tls(
        tcp: TcpStream,
        mut session: ServerConnection,
        early: &[u8],
    ) -> io::Result<Self> {
        if !early.is_empty() {
            session.read_tls(&mut &early[..])?;
            session.process_new_packets().map_err(invalid)?;
        }
        Ok(Self::Tls(Box::new(TlsSocket {
            tcp,
            session,
            more_plaintext: !early.is_empty(),
        })))
    }

    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Tcp(tcp) => tcp,
            Self::Tls(tls) => &tls.tcp,
        }
    }

    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tls(tls) if tls.more_plaintext => Poll::Ready(Ok(())),
            _ => self.tcp().poll_read_ready(cx),
        }
    }

    pub(super) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_write_ready(cx)
    }

    /// Whether output waits in the transport itself (TLS records not yet written).
    pub(super) fn wants_write(&self) -> bool {
        match self {
            Self::Tcp(_) => false,
            Self::Tls(tls) => tls.session.wants_write(),
        }
    }

    /// Reads at most `ask` bytes of what the peer sent (decrypted) onto the end of `buf`. `Ok(0)` at the
    /// end of the stream; `WouldBlock` when nothing is there.
    pub(super) fn try_read(&mut self, buf: &mut BytesMut, ask: usize) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => {
                use bytes::BufMut;
                // Limited: the buffer may have more spare room than asked, and reads must stay bounded.
                tcp.try_read_buf(&mut buf.limit(ask))
            }
            Self::Tls(tls) => tls.read_plaintext(buf, ask),
        }
    }

    /// Writes what it can of `slices` (encrypted, over TLS). `WouldBlock` when the socket takes nothing.
    pub(super) fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(tcp) => tcp.try_write_vectored(slices),
            Self::Tls(tls) => tls.write_plaintext(slices),
        }
    }

    /// Writes the transport's own pending output (TLS records: alerts, tickets, key updates) as far as
    /// the socket takes it.
    pub(super) fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(_) => Ok(()),
            Self::Tls(tls) => match tls.write_records() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                other => other,
            },
        }
    }

    /// Ends our side of the stream (TLS close_notify, then FIN); the socket stays open for reading.
    pub(super) fn shutdown_write(&mut self) {
        if let Self::Tls(tls) = self {
            tls.session.send_close_notify();
            let _ = tls.write_records();
        }
        let _ = SockRef::from(self.tcp()).shutdown(Shutdown::Write);
    }
}

impl TlsSocket {
    /// Only the bytes rustls has decrypted are made room for (zeroed) in `buf`, not the whole `ask`: a
    /// small message does not cost a memset of the read size.
    fn read_plaintext(&mut self, buf: &mut BytesMut, ask: usize) -> io::Result<usize> {
        let Some(available) = self.decrypted()? else {
            return Ok(0);
        };
        let n = available.min(ask);
        let start = buf.len();
        buf.resize(start + n, 0);
        self.session.reader().read_exact(&mut buf[start..])?;
        self.more_plaintext = available > n;
        Ok(n)
    }

    /// How many decrypted bytes rustls holds, reading and decrypting records off the socket until there
    /// are some. `None` at the end of the stream (the peer's close_notify, or its FIN without one);
    /// `WouldBlock` when the socket has nothing more.
    fn decrypted(&mut self) -> io::Result<Option<usize>> {
        loop {
            let state = match self.session.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    // rustls queued an alert that tells the peer why.
                    let _ = self.write_records();
                    return Err(invalid(error));
                }
            };
            if state.plaintext_bytes_to_read() > 0 {
                return Ok(Some(state.plaintext_bytes_to_read()));
            }
            if state.peer_has_closed() {
                return Ok(None);
            }
            if self.session.read_tls(&mut SocketIo(&self.tcp))? == 0 {
                return Ok(None);
            }
        }
    }

    fn write_plaintext(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_records()?;
        // rustls takes what fits its bound on unsent records (64 KiB by default).
        let n = self.session.writer().write_vectored(slices)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.write_records() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Writes the records rustls has ready; `WouldBlock` when some remain.
    fn write_records(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            self.session.write_tls(&mut SocketIo(&self.tcp))?;
        }
        Ok(())
    }
}

/// The non-blocking socket as `std::io` sees it, for rustls' `read_tls` and `write_tls`.
struct SocketIo<'a>(&'a TcpStream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
