//! permessage-deflate (RFC 7692) for the load generator, without context takeover in either direction.
//!
//! The generator offers `permessage-deflate; client_no_context_takeover; server_no_context_takeover`: every
//! message is compressed and decompressed on its own (raw deflate, a fresh window each time), so no state
//! carries from one message to the next and a connection holds no compression window between messages. That is
//! what a server's "shared compressor" mode does (uWebSockets, Bun, socketify, hyperws's `compression="shared"`),
//! and the cheapest setting for the server's memory. A server that declines `server_no_context_takeover` fails
//! the handshake.
//!
//! What it costs the generator (measured with flate2 1.1 / miniz_oxide on the development VM, 32 B messages): a
//! reset-and-compress per message takes ~6 µs and a reset-and-inflate ~2.6 µs, which would make the generator,
//! not the server, the limit. So:
//! - sending uses `deflate_literals`: one fixed-Huffman block of literals (no matches), then the sync flush. It
//!   is valid deflate that any inflater must decode Huffman code by code, about what zlib emits for 32 bytes of
//!   non-repeating text (zlib's level 6 output is 30 bytes for the bench payload, this one 34), at ~0.1 µs.
//!   Without matches nothing can refer to an earlier message, so `client_no_context_takeover` holds.
//! - receiving keeps one inflate stream across the messages of a connection (reset only after a final block).
//!   With `server_no_context_takeover` every message decodes the same either way; what this would not catch is
//!   a server that broke its promise and referred to an earlier message.
//!
//! `Deflater` (flate2, reset per message) stays for the tests, as the reference the literal encoder is checked
//! against.

#[cfg(test)]
use flate2::{Compress, Compression, FlushCompress};
use flate2::{Decompress, FlushDecompress, Status};

pub const OFFER: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// The tail a sync flush ends with; stripped from each sent message, appended to each received one (RFC 7692 7.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Largest decompressed message accepted.
const MAX_INFLATED: usize = 64 << 20;

/// Checks the server's `Sec-WebSocket-Extensions` answer to `OFFER`.
pub fn check_response(value: &str) -> Result<(), String> {
    if value.contains(',') {
        return Err(format!("more than one extension accepted: {value:?}"));
    }
    let mut parts = value.split(';').map(str::trim);
    if parts.next() != Some("permessage-deflate") {
        return Err(format!("unrequested extension {value:?}"));
    }
    let mut server_no_takeover = false;
    for p in parts {
        let (name, arg) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        match (name, arg) {
            ("server_no_context_takeover", None) => server_no_takeover = true,
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v))
                if v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)) => {}
            _ => {
                return Err(format!(
                    "permessage-deflate: unexpected parameter {p:?} in {value:?}"
                ))
            }
        }
    }
    if !server_no_takeover {
        return Err(format!(
            "permessage-deflate accepted without server_no_context_takeover: {value:?}"
        ));
    }
    Ok(())
}

/// Appends `payload` as raw deflate for permessage-deflate: a non-final fixed-Huffman block of literals, its
/// end-of-block code, and the header of the sync flush's empty stored block, padded to a byte (the flush's
/// `00 00 ff ff` tail is left out, as RFC 7692 asks).
pub fn deflate_literals(payload: &[u8], out: &mut Vec<u8>) {
    let mut w = Bits { out, acc: 0, n: 0 };
    w.put(0b010, 3); // BFINAL 0, BTYPE 01 (fixed Huffman)
    for &b in payload {
        let (code, len) = if b < 144 {
            (0x30 + b as u32, 8)
        } else {
            (0x190 + (b as u32 - 144), 9)
        };
        w.put(reverse(code, len), len);
    }
    w.put(0, 7); // end of block (code 256: seven zero bits)
    w.put(0, 3); // the sync flush: BFINAL 0, BTYPE 00 (stored), then byte alignment
    w.finish();
}

/// Huffman codes go into the stream most significant bit first; the stream is filled least significant first.
fn reverse(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits<'_> {
    fn put(&mut self, v: u32, len: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn finish(self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// Compresses one message at a time with flate2 (no context takeover): the reference for the tests.
#[cfg(test)]
pub struct Deflater {
    c: Compress,
}

#[cfg(test)]
impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            c: Compress::new(Compression::default(), false),
        }
    }
}

#[cfg(test)]
impl Deflater {
    /// Appends the compressed form of `payload` (without the sync-flush tail) to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.c.reset();
        let start = out.len();
        out.reserve(payload.len() + 64);
        loop {
            let consumed = self.c.total_in() as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            self.c
                .compress_vec(&payload[consumed..], out, FlushCompress::Sync)
                .expect("deflate cannot fail on a reset stream");
            if self.c.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out[start..].ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
    }
}

/// Decompresses the messages of one connection, one stream across them (see the module's comment).
pub struct Inflater {
    d: Decompress,
    buf: Vec<u8>,
    /// The last message ended with a final block (or failed): start a fresh stream.
    reset: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            d: Decompress::new(false),
            buf: Vec::new(),
            reset: false,
        }
    }
}

impl Inflater {
    /// The decompressed message; `data` is the payload of a frame with RSV1 set.
    pub fn inflate(&mut self, data: &[u8]) -> Result<&[u8], String> {
        if self.reset {
            self.d.reset(false);
            self.reset = false;
        }
        self.buf.clear();
        for input in [data, &TAIL[..]] {
            let base = self.d.total_in();
            loop {
                let consumed = (self.d.total_in() - base) as usize;
                if consumed == input.len() && self.buf.len() < self.buf.capacity() {
                    break;
                }
                if self.buf.len() == self.buf.capacity() {
                    if self.buf.len() >= MAX_INFLATED {
                        return Err(format!("inflated message over {MAX_INFLATED} bytes"));
                    }
                    self.buf.reserve((data.len() * 4).max(256));
                }
                let before = (self.d.total_in(), self.buf.len());
                let status = self
                    .d
                    .decompress_vec(&input[consumed..], &mut self.buf, FlushDecompress::Sync)
                    .map_err(|e| {
                        self.reset = true;
                        format!("permessage-deflate: bad compressed data: {e}")
                    })?;
                if status == Status::StreamEnd {
                    // A final block (allowed): the appended tail is then ignored; the next message starts anew.
                    self.reset = true;
                    return Ok(&self.buf);
                }
                if (self.d.total_in(), self.buf.len()) == before
                    && self.buf.len() < self.buf.capacity()
                {
                    break; // no progress with room left: everything there is was taken
                }
            }
        }
        Ok(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7692_hello() {
        // RFC 7692 section 7.2.3.1: "Hello" compressed with no context takeover.
        let mut inf = Inflater::default();
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inf.inflate(&hello).unwrap(), b"Hello");
        assert_eq!(inf.inflate(&hello).unwrap(), b"Hello"); // no state carried over
    }

    #[test]
    fn roundtrip_each_message_alone() {
        let mut def = Deflater::default();
        let mut inf = Inflater::default();
        for size in [0usize, 1, 32, 1000, 70_000, 300_000] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = vec![1, 2, 3];
            def.compress(&payload, &mut out);
            assert_eq!(&out[..3], &[1, 2, 3]);
            assert!(!out.ends_with(&TAIL) || size == 0);
            assert_eq!(inf.inflate(&out[3..]).unwrap(), &payload[..]);
            // A fresh inflater decodes it too: nothing depends on an earlier message.
            assert_eq!(
                Inflater::default().inflate(&out[3..]).unwrap(),
                &payload[..]
            );
        }
        assert!(inf.inflate(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn literal_encoder_inflates_back() {
        let mut inf = Inflater::default();
        for size in [0usize, 1, 32, 200, 5000] {
            for binary in [false, true] {
                let payload = if size >= crate::ws::SEQ_LEN {
                    crate::ws::make_payload(size, size, binary)
                } else {
                    vec![b'x'; size]
                };
                let mut out = Vec::new();
                deflate_literals(&payload, &mut out);
                assert_eq!(inf.inflate(&out).unwrap(), &payload[..], "size {size}");
                assert_eq!(Inflater::default().inflate(&out).unwrap(), &payload[..]);
                // The same bytes flate2 would need: decodes like its own output with the tail appended.
                let mut reference = Vec::new();
                Deflater::default().compress(&payload, &mut reference);
                assert_eq!(inf.inflate(&reference).unwrap(), &payload[..]);
            }
        }
        // RFC 7692 7.2.3.1's "Hello" is exactly what the literal encoder emits.
        let mut out = Vec::new();
        deflate_literals(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn response_check() {
        assert!(check_response("permessage-deflate; server_no_context_takeover").is_ok());
        assert!(check_response(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        )
        .is_ok());
        assert!(check_response(
            "permessage-deflate;server_no_context_takeover;server_max_window_bits=12"
        )
        .is_ok());
        assert!(check_response("permessage-deflate").is_err());
        assert!(check_response(
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        )
        .is_err());
        assert!(check_response("x-webkit-deflate-frame").is_err());
        assert!(check_response(
            "permessage-deflate; server_no_context_takeover, permessage-deflate"
        )
        .is_err());
    }
}
