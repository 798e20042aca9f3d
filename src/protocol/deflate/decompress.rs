use bytes::BytesMut;

use super::zlib::{RawInflate, Z_BUF_ERROR, Z_OK, Z_STREAM_END, Z_SYNC_FLUSH};
use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, SYNC_TAIL};
use crate::protocol::{grow_within, ProtocolError};

/// The least a full output buffer grows by: four times the input, within these bounds (more when
/// doubling gives more).
const MAX_STEP: usize = 64 * 1024;
const MIN_STEP: usize = 1024;

/// Inflates the compressed messages of one connection, keeping the window between messages when the
/// client takes its context over.
///
/// zlib refuses a back-reference past the window only when it also reaches before the output of the
/// same call, so a client that breaks the window it agreed to may see a message accepted or refused
/// (1007) depending on how it is cut into frames; a conforming client's messages always inflate.
pub struct Decompressor {
    stream: RawInflate,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

const fn invalid_data() -> ProtocolError {
    ProtocolError {
        code: 1007,
        reason: "invalid compressed data",
    }
}

impl Decompressor {
    /// A decompressor for streams whose window is at most 2^`window_bits` bytes.
    pub fn new(window_bits: u8) -> Self {
        Self {
            stream: RawInflate::new(window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)),
        }
    }

    /// Inflates one frame's payload of a compressed message, appending to `out`. `last` says the frame
    /// ends the message. Fails with 1009 as soon as `out` would exceed `limit` bytes (its capacity never
    /// exceeds `limit + 1`), and with 1007 when the data is not DEFLATE.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        last: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.feed(payload, out, limit)?;
        if last {
            self.feed(&SYNC_TAIL, out, limit)?;
        }
        Ok(())
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        loop {
            // One byte past the limit tells an over-long message from one that fills it exactly.
            let allowed = limit.saturating_add(1).saturating_sub(out.len());
            if allowed == 0 {
                return Err(ProtocolError::too_big());
            }
            if out.capacity() == out.len() {
                let step = (input.len().saturating_mul(4)).clamp(MIN_STEP, MAX_STEP);
                grow_within(out, out.len() + step.min(allowed), limit.saturating_add(1));
            }
            let spare = out.spare_capacity_mut();
            let room = spare.len().min(allowed);
            let progress = self.stream.run(input, &mut spare[..room], Z_SYNC_FLUSH);
            // SAFETY: zlib initialised the first `written` bytes of the spare capacity.
            unsafe { out.set_len(out.len() + progress.written) };
            input = &input[progress.read..];
            if out.len() > limit {
                return Err(ProtocolError::too_big());
            }
            let stuck = progress.read == 0 && progress.written == 0;
            match progress.code {
                // The client ended its stream with a final block (RFC 7692 §7.2.3.3): what follows,
                // in this frame or the next, such as the header of the empty stored block that the
                // appended tail completes, starts a new stream.
                Z_STREAM_END => {
                    self.stream.reset();
                    if input.is_empty() {
                        return Ok(());
                    }
                }
                Z_OK | Z_BUF_ERROR if input.is_empty() && progress.written < room => return Ok(()),
                Z_BUF_ERROR if stuck => return Err(invalid_data()),
                Z_OK | Z_BUF_ERROR => {}
                _ => return Err(invalid_data()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::compress_shared;
    use super::*;

    fn inflate(
        decompressor: &mut Decompressor,
        compressed: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, u16> {
        let mut out = BytesMut::new();
        decompressor
            .decompress(compressed, true, &mut out, limit)
            .map(|()| out.to_vec())
            .map_err(|e| e.code)
    }

    #[test]
    fn the_rfc_examples() {
        // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello" compressed, then the same with a stored block.
        let mut decompressor = Decompressor::new(15);
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&mut decompressor, &hello, 100).unwrap(), b"Hello");
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&mut decompressor, &stored, 100).unwrap(), b"Hello");
    }

    #[test]
    fn context_is_kept_between_messages() {
        // RFC 7692 §7.2.3.2: the second "Hello" refers back to the first one.
        let mut decompressor = Decompressor::new(15);
        let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate(&mut decompressor, &first, 100).unwrap(), b"Hello");
        assert_eq!(inflate(&mut decompressor, &second, 100).unwrap(), b"Hello");
    }

    #[test]
    fn a_message_split_across_frames() {
        let mut compressed = Vec::new();
        compress_shared(15, &[b'a'; 10_000], &mut compressed);
        let mut decompressor = Decompressor::new(15);
        let mut out = BytesMut::new();
        let (head, tail) = compressed.split_at(compressed.len() / 2);
        decompressor
            .decompress(head, false, &mut out, 10_000)
            .unwrap();
        decompressor
            .decompress(tail, true, &mut out, 10_000)
            .unwrap();
        assert_eq!(&out[..], &[b'a'; 10_000][..]);
    }

    #[test]
    fn a_bomb_is_stopped_at_the_limit_without_inflating_it() {
        let mut compressed = Vec::new();
        let huge = vec![0u8; 8 * 1024 * 1024];
        compress_shared(15, &huge, &mut compressed);
        assert!(compressed.len() < huge.len() / 100);
        let mut out = BytesMut::new();
        let error = Decompressor::new(15)
            .decompress(&compressed, true, &mut out, 1024 * 1024)
            .unwrap_err();
        assert_eq!(error.code, 1009);
        // The buffer grows by doubling, but never past the limit and the one byte that tells it was
        // exceeded.
        assert_eq!(out.capacity(), 1024 * 1024 + 1);
        assert_eq!(
            inflate(&mut Decompressor::new(15), &compressed, huge.len())
                .unwrap()
                .len(),
            huge.len()
        );
    }

    #[test]
    fn a_message_that_fills_the_limit_leaves_no_spare_room() {
        let message = vec![7u8; 300_000];
        let mut compressed = Vec::new();
        compress_shared(15, &message, &mut compressed);
        let mut out = BytesMut::new();
        Decompressor::new(15)
            .decompress(&compressed, true, &mut out, message.len())
            .unwrap();
        assert_eq!(out.len(), message.len());
        assert!(out.capacity() <= message.len() + 1, "{}", out.capacity());
    }

    #[test]
    fn a_final_block_ends_a_stream_and_the_message_goes_on_in_a_new_one() {
        // RFC 7692 §7.2.3.3: "Hello" in a block with BFINAL set, then the header of an empty stored
        // block.
        let final_hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut decompressor = Decompressor::new(15);
        assert_eq!(
            inflate(&mut decompressor, &final_hello, 100).unwrap(),
            b"Hello"
        );
        assert_eq!(inflate(&mut decompressor, &hello, 100).unwrap(), b"Hello");
        // Found by fuzzing: a new stream after the final block was refused in the same frame but
        // accepted in the next one.
        let final_block = &final_hello[..7];
        let whole = [final_block, &hello].concat();
        assert_eq!(
            inflate(&mut Decompressor::new(15), &whole, 100).unwrap(),
            b"HelloHello"
        );
        let mut out = BytesMut::new();
        let mut decompressor = Decompressor::new(15);
        decompressor
            .decompress(final_block, false, &mut out, 100)
            .unwrap();
        decompressor
            .decompress(&hello, true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"HelloHello");
    }

    #[test]
    fn garbage_is_1007() {
        assert_eq!(
            inflate(&mut Decompressor::new(15), &[0xff, 0xff, 0xff, 0xff], 100),
            Err(1007)
        );
    }
}
