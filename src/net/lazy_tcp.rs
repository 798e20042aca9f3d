//! An accepted socket that joins the runtime's epoll set only when a read or a write finds it not ready.
//!
//! The kernel hands a connection over once its first bytes are in (`server.rs`, `defer_accept`), so the
//! upgrade request is usually in the socket when the connection's task first runs. Read at once, it
//! needs no reactor turn to report a fresh registration ready; and a connection then read on the asyncio
//! thread (`inline.rs`) never joins the runtime's set at all, which saves the two `epoll_ctl`s of joining
//! and leaving it and the registration's allocation.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(super) enum LazyTcp {
    /// Not registered yet: every operation so far found the socket ready. Non-blocking.
    Unregistered(std::net::TcpStream),
    Registered(TcpStream),
    /// Registering failed, and the socket was closed.
    Lost,
}

impl LazyTcp {
    /// The socket in the runtime's registration, for a task that waits on it from now on.
    pub(super) fn into_registered(self) -> io::Result<TcpStream> {
        match self {
            Self::Unregistered(tcp) => TcpStream::from_std(tcp),
            Self::Registered(tcp) => Ok(tcp),
            Self::Lost => Err(lost()),
        }
    }

    /// The socket out of the runtime's registration, for another thread to read.
    pub(super) fn into_unregistered(self) -> io::Result<std::net::TcpStream> {
        match self {
            Self::Unregistered(tcp) => Ok(tcp),
            Self::Registered(tcp) => tcp.into_std(),
            Self::Lost => Err(lost()),
        }
    }

    /// The registered socket, registering it first if it is not.
    fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if !matches!(self, Self::Registered(_)) {
            let taken = std::mem::replace(self, Self::Lost);
            *self = Self::Registered(taken.into_registered()?);
        }
        let Self::Registered(tcp) = self else {
            unreachable!("registered just above");
        };
        Ok(tcp)
    }

    /// Runs `attempt` on the unregistered socket; `None` when it would block (the socket must be
    /// registered and waited on).
    fn try_unregistered<R>(
        &mut self,
        mut attempt: impl FnMut(&std::net::TcpStream) -> io::Result<R>,
    ) -> Option<io::Result<R>> {
        let Self::Unregistered(tcp) = self else {
            return None;
        };
        loop {
            match attempt(tcp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                done => return Some(done),
            }
        }
    }
}

impl AsyncRead for LazyTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Self::Unregistered(_) = this {
            let unfilled = buf.initialize_unfilled();
            if let Some(read) = this.try_unregistered(|mut tcp| tcp.read(unfilled)) {
                return Poll::Ready(read.map(|n| buf.advance(n)));
            }
        }
        match this.registered() {
            Ok(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LazyTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(written) = this.try_unregistered(|mut tcp| tcp.write(bytes)) {
            return Poll::Ready(written);
        }
        match this.registered() {
            Ok(tcp) => Pin::new(tcp).poll_write(cx, bytes),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP keeps no output of its own to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unregistered(tcp) => Poll::Ready(tcp.shutdown(Shutdown::Write)),
            Self::Registered(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Lost => Poll::Ready(Err(lost())),
        }
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost when registering it",
    )
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream as StdStream};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connected pair: the server's end as accepted (non-blocking, unregistered) and the client's.
    fn pair() -> (LazyTcp, StdStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (LazyTcp::Unregistered(server), client)
    }

    #[tokio::test]
    async fn what_is_already_there_is_read_without_registering() {
        let (mut server, mut client) = pair();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0; 64];
        let mut read = 0;
        while read < 18 {
            read += server.read(&mut buf[read..]).await.unwrap();
        }
        assert_eq!(&buf[..read], b"GET / HTTP/1.1\r\n\r\n");
        server.write_all(b"answer").await.unwrap();
        assert!(matches!(server, LazyTcp::Unregistered(_)));
        let mut answer = [0; 6];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"answer");
    }

    #[tokio::test]
    async fn a_read_that_must_wait_registers_and_gets_what_comes_later() {
        let (mut server, mut client) = pair();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            client.write_all(b"later").unwrap();
            client
        });
        let mut buf = [0; 5];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"later");
        assert!(matches!(server, LazyTcp::Registered(_)));
        // Out of the registration again, for the asyncio thread: still the same open socket.
        let std = server.into_unregistered().unwrap();
        let mut client = writer.join().unwrap();
        (&std).write_all(b"ok").unwrap();
        let mut answer = [0; 2];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"ok");
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream_either_way() {
        for register in [false, true] {
            let (server, mut client) = pair();
            let mut server = match register {
                true => LazyTcp::Registered(server.into_registered().unwrap()),
                false => server,
            };
            server.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
    }
}
