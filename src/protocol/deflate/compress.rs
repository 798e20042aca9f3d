use std::cell::RefCell;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method, Strategy};

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, SYNC_TAIL};

/// zlib's default level: the ratio most peers use, at a moderate cost.
const LEVEL: i32 = 6;
/// Output grows by at least this much per step.
const MIN_GROWTH: usize = 256;

/// Compresses messages for one direction of one connection (context takeover), or one message at a time.
pub struct Compressor {
    stream: Deflate,
    /// Forget everything after each message (`*_no_context_takeover`).
    reset_after_message: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("reset_after_message", &self.reset_after_message)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor whose back-references stay within 2^`window_bits` bytes (8..=15).
    pub fn new(window_bits: u8, reset_after_message: bool) -> Self {
        let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        // zlib cannot make a raw stream with a 256-byte window; with 512 it never refers further back than
        // 250 bytes (window minus lookahead), which a 256-byte window reads correctly.
        let zlib_bits = bits.max(9);
        let config = DeflateConfig {
            level: LEVEL,
            method: Method::Deflated,
            window_bits: -i32::from(zlib_bits),
            // The pending-symbol buffer scales with it: small windows get small buffers.
            mem_level: i32::from(zlib_bits).saturating_sub(7).clamp(1, 8),
            strategy: Strategy::Default,
        };
        Self {
            stream: Deflate::new_with_config(config),
            reset_after_message,
        }
    }

    /// Appends the compressed form of one whole message to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        if message.is_empty() {
            // An empty stored block (RFC 7692 §7.2.3.6). zlib would make no progress on a second flush in
            // a row, and the window is unchanged either way.
            out.push(0x00);
            return;
        }
        let start = out.len();
        out.reserve(message.len() / 2 + MIN_GROWTH);
        let mut input = message;
        loop {
            if out.capacity() - out.len() < SYNC_TAIL.len() + 8 {
                out.reserve((out.len() - start).max(MIN_GROWTH));
            }
            let spare = out.spare_capacity_mut();
            let room = spare.len();
            let (read_before, written_before) = (self.stream.total_in(), self.stream.total_out());
            // An in-memory stream with valid parameters has no failure mode but lack of room, which the
            // loop provides: any error is a bug in the stream's use, and leaves the message uncompressed.
            let result = self
                .stream
                .compress_uninit(input, spare, DeflateFlush::SyncFlush);
            let read = (self.stream.total_in() - read_before) as usize;
            let written = (self.stream.total_out() - written_before) as usize;
            // SAFETY: the stream initialised the first `written` bytes of the spare capacity.
            unsafe { out.set_len(out.len() + written) };
            input = &input[read..];
            assert!(result.is_ok(), "deflate failed: {result:?}");
            if input.is_empty() && written < room {
                break;
            }
        }
        assert!(
            out[start..].ends_with(&SYNC_TAIL),
            "a sync flush ends a message"
        );
        out.truncate(out.len() - SYNC_TAIL.len());
        if self.reset_after_message {
            self.stream.reset();
        }
    }
}

thread_local! {
    /// One compressor per window size for messages compressed on their own, per thread that compresses
    /// (the asyncio thread, or a thread that publishes): scratch state, never shared between threads.
    static SHARED: RefCell<[Option<Box<Compressor>>; 8]> = RefCell::default();
}

/// Compresses one message on its own (no context before or after it): valid for every receiver whose
/// window is at least 2^`window_bits`.
pub fn compress_shared(window_bits: u8, message: &[u8], out: &mut Vec<u8>) {
    let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    SHARED.with_borrow_mut(|compressors| {
        compressors[usize::from(bits - MIN_WINDOW_BITS)]
            .get_or_insert_with(|| Box::new(Compressor::new(bits, true)))
            .compress(message, out);
    });
}

#[cfg(test)]
mod tests {
    use super::super::Decompressor;
    use super::*;

    fn round_trip(compressed: &[u8], window_bits: u8) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        Decompressor::new(window_bits)
            .decompress(compressed, true, &mut out, usize::MAX)
            .unwrap();
        out.to_vec()
    }

    #[test]
    fn the_rfc_example_hello() {
        let mut out = Vec::new();
        Compressor::new(15, true).compress(b"Hello", &mut out);
        // RFC 7692 §7.2.3.1: "Hello" compresses to these bytes with a fresh context.
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn context_takeover_makes_a_repeated_message_shorter() {
        let message = b"the same market update, again and again and again";
        let mut keeping = Compressor::new(15, false);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        keeping.compress(message, &mut first);
        keeping.compress(message, &mut second);
        assert!(second.len() < first.len() / 2, "{second:?}");

        let mut forgetting = Compressor::new(15, true);
        let mut again = Vec::new();
        forgetting.compress(message, &mut Vec::new());
        forgetting.compress(message, &mut again);
        assert_eq!(again, first);
    }

    #[test]
    fn large_and_incompressible_messages_round_trip() {
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for bits in [8, 9, 12, 15] {
            let mut out = Vec::new();
            compress_shared(bits, &noise, &mut out);
            assert_eq!(round_trip(&out, bits), noise, "window bits {bits}");
        }
    }

    #[test]
    fn an_empty_message_is_an_empty_stored_block_even_between_others() {
        let mut compressor = Compressor::new(15, false);
        let mut decompressor = Decompressor::new(15);
        for message in [&b"before"[..], b"", b"", b"after"] {
            let mut out = Vec::new();
            compressor.compress(message, &mut out);
            let mut inflated = bytes::BytesMut::new();
            decompressor
                .decompress(&out, true, &mut inflated, 100)
                .unwrap();
            assert_eq!(&inflated[..], message);
        }
    }
}
