//! permessage-deflate: negotiating a client's `Sec-WebSocket-Extensions` offers, inflating what a
//! client sends under the size limit, and the compressor's output inflating back to the message.
//!
//! Input: three bytes of settings, the offers (one header value per line) up to a NUL byte, then a
//! payload, inflated as a client's compressed message and compressed as a server's message.
//! - byte 0: bits 0..=2 the window bits minus 8, bit 3 a shared (else dedicated) route, bit 4 a
//!   compressor that resets after each message;
//! - byte 1: the size limit in units of 16 bytes (0..=4080);
//! - byte 2: where the compressed message is cut into two frames.
//!
//! Checks: an accepted offer's windows are 8..=15 and its response is itself an offer the route
//! accepts; a message inflated never exceeds the limit, fails only with 1007 or 1009, and gives the same result
//! whole or in two frames; two messages compressed in a row inflate back to themselves.
//!
//! Whole or cut is compared with the largest window. With a smaller one, zlib refuses a back-reference
//! past the window only when it also reaches before what the same inflate call wrote, so a message
//! that breaks the window it was given (no conforming client sends one) may pass whole and fail when
//! cut. What passes with a smaller window is the message the largest one gives.

#![no_main]

use bytes::BytesMut;
use hyperws::protocol::deflate::{
    negotiate, Compression, Compressor, Decompressor, MAX_WINDOW_BITS, MIN_WINDOW_BITS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, limit, cut, rest @ ..] = data else {
        return;
    };
    let window_bits = MIN_WINDOW_BITS + (flags & 0b111);
    let policy = if flags & 0b1000 != 0 {
        Compression::Shared
    } else {
        Compression::Dedicated { window_bits }
    };
    let (offers, payload) = match rest.iter().position(|&c| c == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };

    check_negotiation(offers, policy);

    let limit = usize::from(*limit) * 16;
    let cut = usize::from(*cut).min(payload.len());
    let (first, second) = payload.split_at(cut);
    let whole = inflate(MAX_WINDOW_BITS, &[payload], limit);
    assert_eq!(
        inflate(MAX_WINDOW_BITS, &[first, second], limit),
        whole,
        "cut at {cut}"
    );
    if window_bits < MAX_WINDOW_BITS {
        for frames in [&[payload][..], &[first, second]] {
            if let Ok(message) = inflate(window_bits, frames, limit) {
                assert_eq!(Ok(message), whole, "window {window_bits}, cut at {cut}");
            }
        }
    }

    let reset_after_message = flags & 0b1_0000 != 0;
    check_round_trip(window_bits, reset_after_message, payload);
});

fn check_negotiation(offers: &[u8], policy: Compression) {
    let values = || offers.split(|&c| c == b'\n');
    assert!(negotiate(values(), Compression::Disabled).is_none());
    let Some(params) = negotiate(values(), policy) else {
        return;
    };
    let windows = MIN_WINDOW_BITS..=MAX_WINDOW_BITS;
    assert!(windows.contains(&params.server_max_window_bits));
    assert!(windows.contains(&params.client_max_window_bits));
    let response = params.response();
    assert!(
        negotiate([response.as_bytes()], policy).is_some(),
        "the response {response:?} is not an offer the route accepts"
    );
}

/// One compressed message in frames: what it inflates to, or the close code.
fn inflate(window_bits: u8, frames: &[&[u8]], limit: usize) -> Result<Vec<u8>, u16> {
    let mut decompressor = Decompressor::new(window_bits);
    let mut out = BytesMut::new();
    for (i, frame) in frames.iter().enumerate() {
        let result = decompressor.decompress(frame, i + 1 == frames.len(), &mut out, limit);
        // One byte past the limit is how the decompressor tells that the message is too big.
        assert!(
            out.len() <= limit + 1,
            "{} bytes for a limit of {limit}",
            out.len()
        );
        if let Err(error) = result {
            assert!([1007, 1009].contains(&error.code), "{error:?}");
            return Err(error.code);
        }
    }
    assert!(
        out.len() <= limit,
        "{} bytes over a limit of {limit}",
        out.len()
    );
    Ok(out.to_vec())
}

fn check_round_trip(window_bits: u8, reset_after_message: bool, message: &[u8]) {
    let mut compressor = Compressor::new(window_bits, reset_after_message);
    let mut decompressor = Decompressor::new(window_bits);
    for _ in 0..2 {
        let mut compressed = Vec::new();
        compressor.compress(message, &mut compressed);
        let mut out = BytesMut::new();
        decompressor
            .decompress(&compressed, true, &mut out, message.len())
            .expect("the compressor's output inflates");
        assert_eq!(&out[..], message);
    }
}
