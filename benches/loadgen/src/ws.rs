//! The client side of WebSocket, just what a load generator needs: the upgrade handshake, pre-masked frames
//! built once and patched with a sequence number, and a parser for the server's (unmasked) frames that fails
//! loudly on anything this benchmark never expects (fragmentation, RSV bits, masked server frames, ...).

use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;

use crate::deflate::{self, Inflater};
use crate::tls::TlsClient;
use crate::Phase;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest server frame accepted (the benchmark never sends more than a few MiB).
const MAX_FRAME: u64 = 64 << 20;

/// Read and write syscalls done on WebSocket connections (whole process; single-threaded, so relaxed is exact).
pub static READS: AtomicU64 = AtomicU64::new(0);
pub static WRITES: AtomicU64 = AtomicU64::new(0);
/// Data frames received with RSV1 set (compressed), when permessage-deflate was negotiated.
pub static COMPRESSED_IN: AtomicU64 = AtomicU64::new(0);

pub fn syscalls() -> (u64, u64) {
    (
        READS.load(Ordering::Relaxed),
        WRITES.load(Ordering::Relaxed),
    )
}

/// `ws://host:port/path` or `wss://host:port/path`, nothing more (no userinfo).
#[derive(Clone, Debug)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// Resolved once, when parsed, so no connect waits on name resolution.
    pub addr: SocketAddr,
    /// `wss://`: connections make a TLS handshake first.
    pub secure: bool,
    /// The TLS client for a `wss://` url (set by `Args::url`, which reads `--ca` and `--tls-name`).
    pub tls: Option<TlsClient>,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (secure, rest) = match (s.strip_prefix("ws://"), s.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => {
                return Err(format!(
                    "url {s:?}: only ws:// and wss:// urls are supported"
                ))
            }
        };
        let default_port = if secure { 443 } else { 80 };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let bad_port = |p: &str| format!("url {s:?}: bad port {p:?}");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("url {s:?}: unclosed ["))?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None if after.is_empty() => (h, default_port),
                None => return Err(format!("url {s:?}: junk after ]")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("url {s:?}: no host"));
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("url {s:?}: cannot resolve {host:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("url {s:?}: {host:?} has no address"))?;
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.to_string(),
            addr,
            secure,
            tls: None,
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// splitmix64: mask keys only need to be unpredictable enough for a proxy, not secret.
pub struct Rng(u64);

impl Rng {
    pub fn from_time() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(t ^ ((std::process::id() as u64) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }
}

/// Appends a masked client frame (FIN set) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    encode_frame_rsv(out, opcode, false, payload, mask);
}

/// Appends a masked client frame (FIN set), with RSV1 (a permessage-deflate message) when `rsv1`.
pub fn encode_frame_rsv(out: &mut Vec<u8>, opcode: u8, rsv1: bool, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// Width of the sequence number at the start of every payload: 8 lowercase hex digits.
pub const SEQ_LEN: usize = 8;

pub fn seq_digits(seq: u32) -> [u8; SEQ_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut d = [0u8; SEQ_LEN];
    for (i, slot) in d.iter_mut().enumerate() {
        *slot = HEX[((seq >> (28 - 4 * i)) & 0xF) as usize];
    }
    d
}

pub fn parse_seq(b: &[u8]) -> Option<u32> {
    if b.len() < SEQ_LEN {
        return None;
    }
    let mut v: u32 = 0;
    for &c in &b[..SEQ_LEN] {
        let n = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | n as u32;
    }
    Some(v)
}

/// A payload of `size` bytes: SEQ_LEN placeholder digits, then a pattern that depends on `salt`. Text payloads
/// use ASCII letters and digits (valid UTF-8); binary ones use every byte value.
pub fn make_payload(size: usize, salt: usize, binary: bool) -> Vec<u8> {
    const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut p: Vec<u8> = (0..size)
        .map(|i| {
            if binary {
                (i.wrapping_mul(31).wrapping_add(salt.wrapping_mul(7))) as u8
            } else {
                ALNUM[(i.wrapping_mul(7).wrapping_add(salt)) % ALNUM.len()]
            }
        })
        .collect();
    p[..SEQ_LEN].copy_from_slice(&seq_digits(0));
    p
}

/// A data frame masked once up front; each copy only gets its sequence digits patched in.
pub struct Template {
    frame: Vec<u8>,
    payload_off: usize,
    mask: [u8; 4],
}

impl Template {
    pub fn new(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Template {
        assert!(payload.len() >= SEQ_LEN);
        let mut frame = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut frame, opcode, payload, mask);
        Template {
            payload_off: frame.len() - payload.len(),
            frame,
            mask,
        }
    }

    pub fn push(&self, out: &mut Vec<u8>, seq: u32) {
        let at = out.len() + self.payload_off;
        out.extend_from_slice(&self.frame);
        let digits = seq_digits(seq);
        for (i, d) in digits.iter().enumerate() {
            out[at + i] = d ^ self.mask[i & 3];
        }
    }
}

/// What a data message must look like; shared by all connections that expect the same payload.
pub struct Expect {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Expect {
    /// Checks one received data frame against the expected sequence number.
    pub fn check(&self, opcode: u8, data: &[u8], seq: u32) -> Result<(), String> {
        if opcode != self.opcode {
            return Err(format!(
                "message {seq}: opcode {opcode}, expected {}",
                self.opcode
            ));
        }
        if data.len() != self.payload.len() {
            return Err(format!(
                "message {seq}: {} bytes, expected {}",
                data.len(),
                self.payload.len()
            ));
        }
        match parse_seq(data) {
            Some(got) if got == seq => {}
            Some(got) => {
                return Err(format!(
                    "out of order or lost: got sequence {got}, expected {seq}"
                ))
            }
            None => {
                return Err(format!(
                    "message {seq}: no sequence number, starts with {:?}",
                    String::from_utf8_lossy(&data[..SEQ_LEN.min(data.len())])
                ))
            }
        }
        if data[SEQ_LEN..] != self.payload[SEQ_LEN..] {
            let at = data[SEQ_LEN..]
                .iter()
                .zip(&self.payload[SEQ_LEN..])
                .position(|(a, b)| a != b)
                .unwrap_or(0)
                + SEQ_LEN;
            return Err(format!("message {seq}: wrong byte at offset {at}"));
        }
        Ok(())
    }
}

/// A parsed frame: opcode and the payload's range in `Conn::rbuf`.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub opcode: u8,
    /// RSV1 set: a compressed message (permessage-deflate).
    pub compressed: bool,
    pub start: usize,
    pub end: usize,
}

/// A server frame header, parsed and checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not enough bytes for the header yet.
    Partial,
    /// Opcode, header length and payload length (the payload may not have arrived yet).
    Complete { opcode: u8, hlen: usize, len: usize },
}

/// Parses the header at the start of `b`. Errors on anything this benchmark never expects from a server: RSV
/// bits, a mask, non-minimal lengths, reserved opcodes, fragmentation, bad control frames.
#[cfg(test)]
pub fn parse_header(b: &[u8]) -> Result<Header, String> {
    parse_header_rsv(b, false).map(|(h, _)| h)
}

/// `parse_header`, also accepting RSV1 on data frames when `deflate` (permessage-deflate negotiated); the flag
/// returned says whether RSV1 was set.
pub fn parse_header_rsv(b: &[u8], deflate: bool) -> Result<(Header, bool), String> {
    if b.len() < 2 {
        return Ok((Header::Partial, false));
    }
    let (b0, b1) = (b[0], b[1]);
    let rsv1 = deflate && b0 & 0x40 != 0 && matches!(b0 & 0x0F, OP_TEXT | OP_BINARY);
    let b0 = if rsv1 { b0 & !0x40 } else { b0 };
    if b0 & 0x70 != 0 {
        return Err(format!(
            "server frame with RSV bits set (first byte {b0:#04x})"
        ));
    }
    if b1 & 0x80 != 0 {
        return Err("server frame is masked".into());
    }
    let (len, hlen) = match b1 & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok((Header::Partial, false));
            }
            let l = u16::from_be_bytes([b[2], b[3]]) as u64;
            if l < 126 {
                return Err(format!("non-minimal 16-bit length {l}"));
            }
            (l, 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok((Header::Partial, false));
            }
            let l = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
            if l <= 0xFFFF {
                return Err(format!("non-minimal 64-bit length {l}"));
            }
            (l, 10)
        }
        l => (l as u64, 2),
    };
    if len > MAX_FRAME {
        return Err(format!("server frame of {len} bytes (limit {MAX_FRAME})"));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    match opcode {
        OP_TEXT | OP_BINARY if fin => {}
        OP_CLOSE | OP_PING | OP_PONG if fin && len <= 125 => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            return Err(format!(
                "bad control frame (opcode {opcode}, {len} bytes, FIN {fin})"
            ))
        }
        0 | OP_TEXT | OP_BINARY => {
            return Err(format!(
                "fragmented server message (opcode {opcode}, FIN {fin}): not expected here"
            ))
        }
        _ => return Err(format!("reserved opcode {opcode}")),
    }
    Ok((
        Header::Complete {
            opcode,
            hlen,
            len: len as usize,
        },
        rsv1,
    ))
}

/// A connection's byte stream: plain TCP, or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What one wait on a TLS stream ended with: plaintext bytes taken by rustls (or 0 for a flush of records it
/// held), or plaintext bytes read.
enum TlsReady {
    Wrote(usize),
    Read(usize),
}

/// One wait on a TLS stream, with the plain path's priorities: write first (the pending plaintext, or else the
/// records rustls still holds from an earlier write that would have blocked), then read.
fn poll_tls(
    tls: &mut TlsStream<TcpStream>,
    cx: &mut Context<'_>,
    out: &[u8],
    into: &mut [u8],
) -> Poll<io::Result<TlsReady>> {
    let mut tls = Pin::new(tls);
    if !out.is_empty() {
        if let Poll::Ready(r) = tls.as_mut().poll_write(cx, out) {
            return Poll::Ready(r.map(TlsReady::Wrote));
        }
    } else if tls.get_ref().1.wants_write() {
        if let Poll::Ready(r) = tls.as_mut().poll_flush(cx) {
            return Poll::Ready(r.map(|()| TlsReady::Wrote(0)));
        }
    }
    let mut buf = ReadBuf::new(into);
    match tls.poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(TlsReady::Read(buf.filled().len()))),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

pub enum Io {
    /// Bytes arrived in the read buffer.
    Read,
    /// Some of the write buffer went out.
    Wrote,
    /// The phase changed.
    Phase,
}

/// An upgraded connection with its own read buffer (parsed in place) and write buffer (written in one call).
pub struct Conn {
    pub stream: Stream,
    pub rbuf: Vec<u8>,
    pub rstart: usize,
    pub rend: usize,
    /// Bytes needed from rstart to complete the frame being received (0: unknown or none).
    need: usize,
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    pub mask: [u8; 4],
    /// Set when permessage-deflate was negotiated.
    pub deflate: Option<Box<Compression>>,
}

/// A connection's permessage-deflate state.
#[derive(Default)]
pub struct Compression {
    pub inflater: Inflater,
    /// Scratch for the message being compressed.
    pub scratch: Vec<u8>,
}

impl Conn {
    /// TCP connect and the WebSocket upgrade; checks `101` and `Sec-WebSocket-Accept`.
    pub async fn connect(url: &Url, rbuf_size: usize, mask: [u8; 4]) -> Result<Conn, String> {
        Conn::connect_ext(url, rbuf_size, mask, false).await
    }

    /// `connect`, offering permessage-deflate (`deflate::OFFER`) when `deflate`: the server must accept it.
    pub async fn connect_ext(
        url: &Url,
        rbuf_size: usize,
        mask: [u8; 4],
        deflate: bool,
    ) -> Result<Conn, String> {
        let tcp = TcpStream::connect(url.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", url.addr))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("set_nodelay: {e}"))?;
        let stream = match (&url.tls, url.secure) {
            (Some(tls), _) => Stream::Tls(Box::new(tls.handshake(tcp).await?)),
            (None, true) => return Err("wss:// url without a TLS client (--ca)".into()),
            (None, false) => Stream::Plain(tcp),
        };
        let mut c = Conn {
            stream,
            rbuf: vec![0; rbuf_size.max(1024)],
            rstart: 0,
            rend: 0,
            need: 0,
            wbuf: Vec::new(),
            wpos: 0,
            mask,
            deflate: None,
        };
        c.handshake(url, deflate).await?;
        Ok(c)
    }

    async fn handshake(&mut self, url: &Url, offer_deflate: bool) -> Result<(), String> {
        let key = tungstenite::handshake::client::generate_key();
        let ext = if offer_deflate {
            format!("Sec-WebSocket-Extensions: {}\r\n", deflate::OFFER)
        } else {
            String::new()
        };
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
            url.path,
            url.host_header()
        );
        self.stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("handshake write: {e}"))?;
        let expected_accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        loop {
            if self.rend == self.rbuf.len() {
                if self.rbuf.len() >= 64 * 1024 {
                    return Err("handshake: response headers larger than 64 KiB".into());
                }
                let n = self.rbuf.len() * 2;
                self.rbuf.resize(n, 0);
            }
            let n = self
                .stream
                .read(&mut self.rbuf[self.rend..])
                .await
                .map_err(|e| format!("handshake read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "handshake: connection closed before the response was complete ({} bytes: {:?})",
                    self.rend,
                    String::from_utf8_lossy(&self.rbuf[..self.rend.min(200)])
                ));
            }
            self.rend += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.rbuf[..self.rend]) {
                Ok(httparse::Status::Partial) => continue,
                Err(e) => return Err(format!("handshake: bad HTTP response: {e}")),
                Ok(httparse::Status::Complete(len)) => {
                    if resp.code != Some(101) {
                        return Err(format!(
                            "handshake: status {} {} (expected 101)",
                            resp.code.unwrap_or(0),
                            resp.reason.unwrap_or("")
                        ));
                    }
                    let header = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                    };
                    match header("sec-websocket-accept") {
                        Some(a) if a == expected_accept => {}
                        Some(a) => {
                            return Err(format!(
                            "handshake: Sec-WebSocket-Accept {a:?}, expected {expected_accept:?}"
                        ))
                        }
                        None => return Err("handshake: no Sec-WebSocket-Accept".into()),
                    }
                    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
                        return Err("handshake: no `Upgrade: websocket` header".into());
                    }
                    match header("sec-websocket-extensions") {
                        Some(ext) if offer_deflate => {
                            deflate::check_response(&ext).map_err(|e| format!("handshake: {e}"))?;
                            self.deflate = Some(Box::default());
                        }
                        Some(ext) => {
                            return Err(format!("handshake: unrequested extension {ext:?}"))
                        }
                        None if offer_deflate => {
                            return Err(
                                "handshake: permessage-deflate offered, the server declined it"
                                    .into(),
                            )
                        }
                        None => {}
                    }
                    self.rstart = len;
                    return Ok(());
                }
            }
        }
    }

    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Makes room at the end of the read buffer: drops consumed bytes, grows for a frame larger than the buffer.
    fn make_room(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rstart > 0
            && (self.rend == self.rbuf.len() || self.rbuf.len() - self.rend < self.rbuf.len() / 4)
        {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.need > self.rbuf.len() - self.rstart {
            let n = self.rstart + self.need;
            self.rbuf.resize(n, 0);
        }
        if self.rend == self.rbuf.len() {
            // Never hand read() an empty slice: its 0 would look like EOF.
            let n = self.rbuf.len() * 2;
            self.rbuf.resize(n, 0);
        }
    }

    /// Waits until bytes arrive (appended to the read buffer), some pending output is written, or `phase`
    /// changes. Exactly one read or write syscall per returned Read/Wrote.
    pub async fn io(&mut self, phase: &mut watch::Receiver<Phase>) -> Result<Io, String> {
        self.make_room();
        if matches!(self.stream, Stream::Tls(_)) {
            return self.io_tls(phase).await;
        }
        let want_write = self.has_output();
        let Conn {
            stream: Stream::Plain(stream),
            rbuf,
            rend,
            wbuf,
            wpos,
            ..
        } = self
        else {
            unreachable!("TLS streams are handled above")
        };
        let (mut rd, mut wr) = stream.split();
        tokio::select! {
            biased;
            r = wr.write(&wbuf[*wpos..]), if want_write => {
                let n = r.map_err(|e| format!("write: {e}"))?;
                WRITES.fetch_add(1, Ordering::Relaxed);
                *wpos += n;
                if *wpos == wbuf.len() {
                    wbuf.clear();
                    *wpos = 0;
                }
                Ok(Io::Wrote)
            }
            r = rd.read(&mut rbuf[*rend..]) => {
                let n = r.map_err(|e| format!("read: {e}"))?;
                READS.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    return Err("connection closed by the server (EOF without a close frame)".into());
                }
                *rend += n;
                Ok(Io::Read)
            }
            r = phase.changed() => {
                r.map_err(|_| "phase sender dropped".to_string())?;
                Ok(Io::Phase)
            }
        }
    }

    /// `io` over TLS: the same contract, one wait on the TLS stream (which may read or write more than once
    /// underneath: rustls reads until the socket is empty and flushes the records it holds).
    async fn io_tls(&mut self, phase: &mut watch::Receiver<Phase>) -> Result<Io, String> {
        let Conn {
            stream: Stream::Tls(tls),
            rbuf,
            rend,
            wbuf,
            wpos,
            ..
        } = self
        else {
            unreachable!("io_tls on a plain stream")
        };
        let (out, into) = (&wbuf[*wpos..], &mut rbuf[*rend..]);
        tokio::select! {
            biased;
            r = poll_fn(|cx| poll_tls(tls, cx, out, into)) => match r {
                Ok(TlsReady::Wrote(n)) => {
                    WRITES.fetch_add(1, Ordering::Relaxed);
                    *wpos += n;
                    if *wpos == wbuf.len() {
                        wbuf.clear();
                        *wpos = 0;
                    }
                    Ok(Io::Wrote)
                }
                Ok(TlsReady::Read(0)) => {
                    Err("connection closed by the server (EOF without a close frame)".into())
                }
                Ok(TlsReady::Read(n)) => {
                    READS.fetch_add(1, Ordering::Relaxed);
                    *rend += n;
                    Ok(Io::Read)
                }
                Err(e) => Err(format!("TLS: {e}")),
            },
            r = phase.changed() => {
                r.map_err(|_| "phase sender dropped".to_string())?;
                Ok(Io::Phase)
            }
        }
    }

    /// The next complete frame in the read buffer, if any. Errors on anything this benchmark never expects.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let (header, compressed) =
            parse_header_rsv(&self.rbuf[self.rstart..self.rend], self.deflate.is_some())?;
        match header {
            Header::Partial => Ok(None),
            Header::Complete { opcode, hlen, len } => {
                let avail = self.rend - self.rstart;
                if avail < hlen + len {
                    self.need = hlen + len;
                    return Ok(None);
                }
                let start = self.rstart + hlen;
                self.rstart = start + len;
                self.need = 0;
                Ok(Some(Frame {
                    opcode,
                    compressed,
                    start,
                    end: start + len,
                }))
            }
        }
    }

    pub fn payload(&self, f: Frame) -> &[u8] {
        &self.rbuf[f.start..f.end]
    }

    /// A data frame's message: its payload, decompressed when it was sent compressed.
    pub fn message(&mut self, f: Frame) -> Result<&[u8], String> {
        if !f.compressed {
            return Ok(&self.rbuf[f.start..f.end]);
        }
        COMPRESSED_IN.fetch_add(1, Ordering::Relaxed);
        let z = self
            .deflate
            .as_mut()
            .ok_or("compressed frame without permessage-deflate")?;
        z.inflater.inflate(&self.rbuf[f.start..f.end])
    }

    /// Queues one data message, compressed (RSV1) when permessage-deflate was negotiated.
    pub fn push_message(&mut self, opcode: u8, payload: &[u8]) {
        match self.deflate.as_mut() {
            Some(z) => {
                z.scratch.clear();
                deflate::deflate_literals(payload, &mut z.scratch);
                encode_frame_rsv(&mut self.wbuf, opcode, true, &z.scratch, self.mask);
            }
            None => encode_frame(&mut self.wbuf, opcode, payload, self.mask),
        }
    }

    /// Handles a control frame: answers pings, ignores pongs, turns a close into an error.
    pub fn control(&mut self, f: Frame) -> Result<(), String> {
        match f.opcode {
            OP_PING => {
                let payload = self.rbuf[f.start..f.end].to_vec();
                encode_frame(&mut self.wbuf, OP_PONG, &payload, self.mask);
                Ok(())
            }
            OP_PONG => Ok(()),
            OP_CLOSE => Err(format!(
                "server closed the connection: {}",
                describe_close(self.payload(f))
            )),
            op => Err(format!("unexpected data frame (opcode {op})")),
        }
    }

    /// Writes everything pending (used outside the hot loops).
    pub async fn flush_all(&mut self) -> Result<(), String> {
        if self.has_output() {
            self.stream
                .write_all(&self.wbuf[self.wpos..])
                .await
                .map_err(|e| format!("write: {e}"))?;
            WRITES.fetch_add(1, Ordering::Relaxed);
        }
        if let Stream::Tls(_) = self.stream {
            // rustls may still hold records that the socket did not take.
            self.stream
                .flush()
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Reads once more into the buffer (used outside the hot loops).
    pub async fn read_more(&mut self) -> Result<(), String> {
        self.make_room();
        let n = self
            .stream
            .read(&mut self.rbuf[self.rend..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        READS.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            return Err("connection closed by the server (EOF without a close frame)".into());
        }
        self.rend += n;
        Ok(())
    }

    /// Sends one data message and waits for its echo (pings answered on the way).
    pub async fn roundtrip(
        &mut self,
        tmpl: &Template,
        expect: &Expect,
        seq: u32,
    ) -> Result<(), String> {
        tmpl.push(&mut self.wbuf, seq);
        self.flush_all().await?;
        loop {
            while let Some(f) = self.next_frame()? {
                if f.opcode == OP_TEXT || f.opcode == OP_BINARY {
                    return expect.check(f.opcode, self.payload(f), seq);
                }
                self.control(f)?;
                self.flush_all().await?;
            }
            self.read_more().await?;
        }
    }

    /// Close handshake: sends close 1000, waits for the server's close frame (data frames still in flight are
    /// skipped), then gives the server a moment to close TCP first so TIME_WAIT stays on its side.
    pub async fn close(mut self, limit: Duration) -> Result<(), String> {
        encode_frame(&mut self.wbuf, OP_CLOSE, &1000u16.to_be_bytes(), self.mask);
        let wait_close = async {
            self.flush_all().await?;
            loop {
                while let Some(f) = self.next_frame()? {
                    match f.opcode {
                        OP_CLOSE => {
                            let p = self.payload(f);
                            if p.len() >= 2 && u16::from_be_bytes([p[0], p[1]]) != 1000 {
                                return Err(format!(
                                    "close handshake: server answered {}",
                                    describe_close(p)
                                ));
                            }
                            return Ok(());
                        }
                        OP_PING | OP_PONG | OP_TEXT | OP_BINARY => {}
                        op => return Err(format!("close handshake: unexpected opcode {op}")),
                    }
                }
                self.read_more()
                    .await
                    .map_err(|e| format!("close handshake: {e}"))?;
            }
        };
        match tokio::time::timeout(limit, wait_close).await {
            Err(_) => return Err(format!("close handshake: no close frame within {limit:?}")),
            Ok(r) => r?,
        }
        // Wait briefly for the server's FIN; not an error if it keeps the socket open.
        let mut scratch = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        Ok(())
    }
}

fn describe_close(p: &[u8]) -> String {
    if p.len() >= 2 {
        format!(
            "close code {} reason {:?}",
            u16::from_be_bytes([p[0], p[1]]),
            String::from_utf8_lossy(&p[2..])
        )
    } else {
        "close without code".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let op = frame[0] & 0x0F;
        let (len, mut at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            l => (l as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        at += 4;
        let p = frame[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        (op, p)
    }

    #[test]
    fn seq_roundtrip() {
        for s in [0u32, 1, 0xabcdef, u32::MAX] {
            assert_eq!(parse_seq(&seq_digits(s)), Some(s));
        }
        assert_eq!(parse_seq(b"0000000g"), None);
    }

    #[test]
    fn template_patches_sequence() {
        for size in [8usize, 32, 200, 70_000] {
            let payload = make_payload(size, 3, false);
            assert!(std::str::from_utf8(&payload).is_ok());
            let t = Template::new(OP_TEXT, &payload, [1, 2, 3, 250]);
            let mut out = vec![9u8; 3];
            t.push(&mut out, 0x1234_abcd);
            let (op, p) = unmask(&out[3..]);
            assert_eq!(op, OP_TEXT);
            assert_eq!(&p[..8], b"1234abcd");
            assert_eq!(p[8..], payload[8..]);
            let e = Expect {
                opcode: OP_TEXT,
                payload,
            };
            assert!(e.check(OP_TEXT, &p, 0x1234_abcd).is_ok());
            assert!(e.check(OP_TEXT, &p, 0x1234_abce).is_err());
            assert!(e.check(OP_BINARY, &p, 0x1234_abcd).is_err());
        }
    }

    #[test]
    fn server_headers() {
        let ok = |b: &[u8]| parse_header(b).unwrap();
        assert_eq!(ok(&[0x81]), Header::Partial);
        assert_eq!(
            ok(&[0x81, 5, b'h']),
            Header::Complete {
                opcode: OP_TEXT,
                hlen: 2,
                len: 5
            }
        );
        assert_eq!(ok(&[0x82, 126, 0]), Header::Partial);
        assert_eq!(
            ok(&[0x82, 126, 0x40, 0x00]),
            Header::Complete {
                opcode: OP_BINARY,
                hlen: 4,
                len: 16384
            }
        );
        assert_eq!(
            ok(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            Header::Complete {
                opcode: OP_BINARY,
                hlen: 10,
                len: 65536
            }
        );
        assert_eq!(
            ok(&[0x89, 0]),
            Header::Complete {
                opcode: OP_PING,
                hlen: 2,
                len: 0
            }
        );
        let err = |b: &[u8]| parse_header(b).unwrap_err();
        assert!(err(&[0xC1, 1]).contains("RSV"));
        assert!(err(&[0x81, 0x81]).contains("masked"));
        assert!(err(&[0x01, 1]).contains("fragmented"));
        assert!(err(&[0x80, 1]).contains("fragmented"));
        assert!(err(&[0x83, 1]).contains("reserved"));
        assert!(err(&[0x09, 0]).contains("control"));
        assert!(err(&[0x89, 126, 0, 126]).contains("control"));
        assert!(err(&[0x82, 126, 0, 5]).contains("non-minimal"));
        assert!(err(&[0x82, 127, 0, 0, 0, 0, 0, 0, 1, 0]).contains("non-minimal"));
        assert!(err(&[0x82, 127, 0, 0, 0, 0x10, 0, 0, 0, 0]).contains("limit"));
    }

    #[test]
    fn url() {
        let u = Url::parse("ws://127.0.0.1:9001/echo").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/echo")
        );
        let u = Url::parse("ws://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = Url::parse("wss://127.0.0.1/echo").unwrap();
        assert!(u.secure && u.tls.is_none());
        assert_eq!(u.port, 443);
        assert!(Url::parse("http://127.0.0.1/").is_err());
    }
}
