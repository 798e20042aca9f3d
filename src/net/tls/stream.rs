//! A TLS connection driven through rustls's unbuffered API: ciphertext is read into a buffer of ours that
//! exists only while it holds bytes, so an idle connection keeps no read buffer (rustls's buffered
//! `ServerConnection` keeps a 4 KiB one for good, see docs/performance-tls.md). Non-blocking calls
//! for the WebSocket task's readiness loop, `AsyncRead`/`AsyncWrite` over them for the HTTP phase.

use std::io::{self, IoSlice};
use std::mem;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, WriteTraffic};
use rustls::ServerConfig;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The largest plaintext of one record.
const RECORD_PLAINTEXT: usize = 16 * 1024;
/// The largest record on the wire rustls accepts (header, payload and its expansion).
const RECORD_WIRE: usize = 5 + RECORD_PLAINTEXT + 2048;
/// Ciphertext held for one handshake message spread over records (rustls refuses messages over 64 KiB).
const MAX_INCOMING: usize = 0xffff + 2 * RECORD_WIRE;
/// Plaintext encrypted per write: the most of the peer's unread output that waits in `outgoing`.
const WRITE_BATCH: usize = 64 * 1024;
/// Room per record beyond its plaintext, guessed for the first try (rustls says what it needs if more).
const RECORD_EXPANSION: usize = 64;

pub(crate) struct TlsStream {
    tcp: TcpStream,
    session: UnbufferedServerConnection,
    /// Ciphertext read, not yet taken by rustls. Empty (no allocation) while idle.
    incoming: BytesMut,
    /// Records encoded, not yet taken by the socket. Empty (no allocation) when all is sent.
    outgoing: BytesMut,
    /// Plaintext decrypted beyond what the last read asked for.
    plaintext: BytesMut,
    /// `incoming` may hold whole records still: input is ready without the socket being readable.
    more_input: bool,
    peer_closed: bool,
    sent_close: bool,
}

/// Where rustls stopped.
#[derive(PartialEq, Eq)]
enum Stop {
    /// It needs more ciphertext.
    Input,
    /// The plaintext asked for is there.
    Full,
    /// The peer ended its stream (close_notify).
    Closed,
}

impl TlsStream {
    /// Runs the handshake; `early` is ciphertext already read off the socket (behind a PROXY header).
    pub(crate) async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        early: BytesMut,
    ) -> io::Result<Self> {
        let session = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut tls = Self {
            tcp,
            session,
            incoming: early,
            outgoing: BytesMut::new(),
            plaintext: BytesMut::new(),
            more_input: false,
            peer_closed: false,
            sent_close: false,
        };
        loop {
            let mut plaintext = mem::take(&mut tls.plaintext);
            let stop = tls.process(&mut plaintext, usize::MAX);
            tls.plaintext = plaintext;
            let stop = stop?;
            std::future::poll_fn(|cx| tls.poll_write_records(cx)).await?;
            if !tls.session.is_handshaking() {
                return Ok(tls);
            }
            if stop == Stop::Closed {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            std::future::poll_fn(|cx| tls.tcp.poll_read_ready(cx)).await?;
            match tls.fill(0) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The certificate the client presented, if asked for one.
    pub(crate) fn peer_certificate(&self) -> Option<&[u8]> {
        self.session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|certificate| &certificate[..])
    }

    /// Whether plaintext can be read without the socket being readable.
    pub(crate) fn has_input(&self) -> bool {
        self.more_input || !self.plaintext.is_empty()
    }

    /// Whether records wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Reads at most `ask` bytes of plaintext onto the end of `buf`. `Ok(0)` at the end of the stream;
    /// `WouldBlock` when nothing is there.
    pub(crate) fn read_plaintext(&mut self, buf: &mut BytesMut, ask: usize) -> io::Result<usize> {
        if !self.plaintext.is_empty() {
            let n = self.plaintext.len().min(ask);
            buf.extend_from_slice(&self.plaintext[..n]);
            self.plaintext.advance(n);
            if self.plaintext.is_empty() {
                self.plaintext = BytesMut::new();
            }
            return Ok(n);
        }
        let start = buf.len();
        let n = self.decrypt(buf, start + ask)?;
        if n > ask {
            // The last record went past the ask: its rest is read next.
            self.plaintext = BytesMut::from(&buf[start + ask..]);
            buf.truncate(start + ask);
        }
        Ok(n.min(ask))
    }

    /// Decrypts records onto `buf` until it is `until` long, reading the socket while there are none.
    /// Returns how many bytes it added: `Ok(0)` at the end of the stream.
    fn decrypt(&mut self, buf: &mut BytesMut, until: usize) -> io::Result<usize> {
        let start = buf.len();
        loop {
            let stop = self.process(buf, until)?;
            self.more_input = stop != Stop::Input;
            if buf.len() > start {
                return Ok(buf.len() - start);
            }
            if stop == Stop::Closed || self.fill(until - start)? == 0 {
                return Ok(0);
            }
        }
    }

    /// Encrypts what it can of `slices` (records of many small slices together) and writes what the
    /// socket takes. `WouldBlock` while records of an earlier write wait.
    pub(crate) fn write_plaintext(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_records()?;
        let mut plaintext = mem::take(&mut self.plaintext);
        let written = self.with_write_traffic(&mut plaintext, |traffic, outgoing| {
            encrypt_slices(traffic, slices, outgoing)
        });
        self.plaintext = plaintext;
        let written = written?;
        match self.write_records() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(written),
        }
    }

    /// Writes the records that wait; `WouldBlock` when some remain.
    pub(crate) fn write_records(&mut self) -> io::Result<()> {
        while !self.outgoing.is_empty() {
            let n = self.tcp.try_write(&self.outgoing)?;
            self.outgoing.advance(n);
        }
        self.outgoing = BytesMut::new();
        Ok(())
    }

    /// Queues close_notify (once; only after the handshake) and writes what the socket takes, then
    /// ends our side of the TCP stream; the socket stays open for reading.
    pub(crate) fn shutdown_write(&mut self) {
        self.queue_close_notify();
        let _ = self.write_records();
        let _ = SockRef::from(&self.tcp).shutdown(Shutdown::Write);
    }

    fn queue_close_notify(&mut self) {
        if mem::replace(&mut self.sent_close, true) || self.session.is_handshaking() {
            return;
        }
        let mut plaintext = mem::take(&mut self.plaintext);
        let _ = self.with_write_traffic(&mut plaintext, |traffic, outgoing| {
            encode_with(outgoing, RECORD_EXPANSION, |room| {
                traffic.queue_close_notify(room).map_err(encrypt_room)
            })
        });
        self.plaintext = plaintext;
    }

    /// Has rustls process the ciphertext in `incoming`: records it wants to send go to `outgoing`,
    /// plaintext onto `out` until it is `until` long.
    fn process(&mut self, out: &mut BytesMut, until: usize) -> io::Result<Stop> {
        if self.peer_closed {
            return Ok(Stop::Closed);
        }
        loop {
            if out.len() >= until {
                return Ok(Stop::Full);
            }
            let status = self.session.process_tls_records(&mut self.incoming[..]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(error) => return Err(self.failed(discard, error)),
            };
            let stop = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        out.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_record(&mut encode, &mut self.outgoing)?;
                    None
                }
                // Sent from `outgoing` in order, with what follows.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                    Some(Stop::Input)
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed = true;
                    Some(Stop::Closed)
                }
                // Early data is not enabled.
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS data",
                    ))
                }
            };
            self.consume(discard);
            if stop == Some(Stop::Input) {
                self.shrink_incoming();
            }
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
    }

    /// Runs `write` on rustls's write state, reached by processing what is pending first (records it
    /// wants to send, plaintext it decrypts onto `plaintext`).
    fn with_write_traffic<T>(
        &mut self,
        plaintext: &mut BytesMut,
        write: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut BytesMut) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            let status = self.session.process_tls_records(&mut self.incoming[..]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(error) => return Err(self.failed(discard, error)),
            };
            match state {
                ConnectionState::WriteTraffic(mut traffic) => {
                    let result = write(&mut traffic, &mut self.outgoing);
                    self.consume(discard);
                    return result;
                }
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    self.more_input = true;
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_record(&mut encode, &mut self.outgoing)?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => self.peer_closed = true,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "TLS cannot send now",
                    ))
                }
            }
            self.consume(discard);
        }
    }

    /// Takes `discard` processed bytes off `incoming`, and lets go of its allocation when it is empty.
    fn consume(&mut self, discard: usize) {
        self.incoming.advance(discard);
        if self.incoming.is_empty() {
            self.incoming = BytesMut::new();
        }
    }

    /// An empty buffer is dropped, and a partial record left in a much larger allocation moves to an
    /// exact copy: a client gone silent mid-record keeps only that.
    fn shrink_incoming(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = BytesMut::new();
        } else if self.incoming.capacity() > 4 * self.incoming.len() {
            self.incoming = BytesMut::from(&self.incoming[..]);
        }
    }

    /// rustls refused the peer's input: the alert it queued is written (as far as the socket takes
    /// it) to tell the peer why.
    fn failed(&mut self, discard: usize, error: rustls::Error) -> io::Error {
        self.consume(discard);
        loop {
            let status = self.session.process_tls_records(&mut self.incoming[..]);
            let discard = status.discard;
            let encoded = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_record(&mut encode, &mut self.outgoing).is_ok()
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    true
                }
                _ => false,
            };
            self.consume(discard);
            if !encoded {
                break;
            }
        }
        let _ = self.write_records();
        invalid(error)
    }

    /// Reads ciphertext from the socket onto `incoming` (about `ask` bytes, a record's at least).
    fn fill(&mut self, ask: usize) -> io::Result<usize> {
        let held = self.incoming.len();
        if held >= MAX_INCOMING {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS handshake message too large",
            ));
        }
        let room = ask.max(RECORD_WIRE);
        self.incoming.reserve(room);
        let read = self.tcp.try_read_buf(&mut (&mut self.incoming).limit(room));
        if !matches!(read, Ok(n) if n > 0) {
            // The room made for a read that found nothing is not kept (rustls's buffered API keeps it).
            self.shrink_incoming();
        }
        read
    }

    fn poll_write_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.write_records() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

/// The HTTP phase reads through this (into small buffers at times: what does not fit waits in
/// `plaintext`).
impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..n]);
                this.plaintext.advance(n);
                if this.plaintext.is_empty() {
                    this.plaintext = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            let mut plaintext = BytesMut::new();
            match this.decrypt(&mut plaintext, RECORD_PLAINTEXT) {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => this.plaintext = plaintext,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_read_ready(cx))?
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.write_plaintext(&[IoSlice::new(data)]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_write_ready(cx))?
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_records(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close_notify();
        ready!(this.poll_write_records(cx))?;
        Poll::Ready(SockRef::from(&this.tcp).shutdown(Shutdown::Write))
    }
}

/// Encrypts up to `WRITE_BATCH` bytes of `slices` onto `outgoing`: slices of a record's size or more
/// directly, smaller ones gathered into records first. Returns how many plaintext bytes it took.
fn encrypt_slices(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    slices: &[IoSlice<'_>],
    outgoing: &mut BytesMut,
) -> io::Result<usize> {
    let mut taken = 0;
    let mut gathered = Vec::new();
    for (index, slice) in slices.iter().enumerate() {
        let last = index + 1 == slices.len();
        let mut data = &slice[..];
        while !data.is_empty() && taken < WRITE_BATCH {
            let n = data.len().min(WRITE_BATCH - taken);
            let n = if gathered.is_empty() && (last || n >= RECORD_PLAINTEXT) {
                encrypt(traffic, &data[..n], outgoing)?;
                n
            } else {
                let n = n.min(RECORD_PLAINTEXT - gathered.len());
                gathered.extend_from_slice(&data[..n]);
                if gathered.len() == RECORD_PLAINTEXT {
                    encrypt(traffic, &gathered, outgoing)?;
                    gathered.clear();
                }
                n
            };
            data = &data[n..];
            taken += n;
        }
    }
    if !gathered.is_empty() {
        encrypt(traffic, &gathered, outgoing)?;
    }
    Ok(taken)
}

/// A record rustls made (handshake, alert, key update): asked with no room first, rustls says its size.
fn encode_record(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    outgoing: &mut BytesMut,
) -> io::Result<()> {
    encode_with(outgoing, 0, |room| encode.encode(room).map_err(encode_room))
}

fn encrypt(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    plaintext: &[u8],
    outgoing: &mut BytesMut,
) -> io::Result<()> {
    let records = plaintext.len().div_ceil(RECORD_PLAINTEXT).max(1);
    let guess = plaintext.len() + records * RECORD_EXPANSION;
    encode_with(outgoing, guess, |room| {
        traffic.encrypt(plaintext, room).map_err(encrypt_room)
    })
}

/// Appends what `encode` writes into room at the end of `outgoing`: `guess` bytes of room first, the
/// size rustls asks for if that was too little.
fn encode_with(
    outgoing: &mut BytesMut,
    guess: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Room>,
) -> io::Result<()> {
    let start = outgoing.len();
    let mut room = guess;
    loop {
        outgoing.resize(start + room, 0);
        match encode(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(Room::Needed(needed)) if needed > room => room = needed,
            Err(_) => {
                outgoing.truncate(start);
                return Err(io::Error::other("TLS cannot encode a record"));
            }
        }
    }
}

/// Why rustls did not encode into the room it was given.
enum Room {
    Needed(usize),
    Refused,
}

fn encode_room(error: EncodeError) -> Room {
    match error {
        EncodeError::InsufficientSize(size) => Room::Needed(size.required_size),
        _ => Room::Refused,
    }
}

fn encrypt_room(error: EncryptError) -> Room {
    match error {
        EncryptError::InsufficientSize(size) => Room::Needed(size.required_size),
        _ => Room::Refused,
    }
}

fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
