use std::cell::RefCell;

use super::zlib::{RawDeflate, Z_BUF_ERROR, Z_OK, Z_SYNC_FLUSH};
use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, SYNC_TAIL};

/// The fastest level: several times faster than zlib's default (6) on the messages of real-time apps, for
/// a lower ratio (`cargo bench --bench deflate`).
const LEVEL: i32 = 1;
/// The memory level of compressors that reset after each message: a small hash table is cheap to clear,
/// and one message rarely fills a larger one.
const ALONE_MEM_LEVEL: i32 = 4;
/// Output grows by at least this much per step.
const MIN_GROWTH: usize = 256;

/// Compresses messages for one direction of one connection (context takeover), or one message at a time.
pub struct Compressor {
    stream: RawDeflate,
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
    /// A compressor whose back-references stay within 2^`window_bits` bytes (8..=15). Its state is about
    /// 2^(`window_bits` + 2) bytes for the window and as much again for the hash and symbol buffers:
    /// 256 KiB at 15, 5 KiB at 9 (less for the hash when it resets after each message).
    pub fn new(window_bits: u8, reset_after_message: bool) -> Self {
        let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        // zlib cannot make a raw stream with a 256-byte window; with 512 it never refers further back than
        // 250 bytes (window minus lookahead), which a 256-byte window reads correctly.
        let zlib_bits = bits.max(9);
        // Hash and symbol buffers scale with the window, as zlib's own default does at 15.
        let mut mem_level = (i32::from(zlib_bits) - 7).clamp(1, 8);
        if reset_after_message {
            mem_level = mem_level.min(ALONE_MEM_LEVEL);
        }
        Self {
            stream: RawDeflate::new(LEVEL, zlib_bits, mem_level),
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
            let progress = self.stream.deflate(input, spare, Z_SYNC_FLUSH);
            // SAFETY: zlib initialised the first `written` bytes of the spare capacity.
            unsafe { out.set_len(out.len() + progress.written) };
            input = &input[progress.read..];
            // An in-memory stream has no failure mode but lack of room, which the loop provides.
            assert!(
                progress.code == Z_OK || progress.code == Z_BUF_ERROR,
                "deflate failed ({})",
                progress.code
            );
            if input.is_empty() && progress.written < room {
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
