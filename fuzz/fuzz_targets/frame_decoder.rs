//! The frame decoder and message assembler, fed what a client sends whole, one byte at a time, and in
//! reads of a chosen size: the reads must not change what comes out.
//!
//! Input: three bytes of settings, then the client's frames.
//! - byte 0: bit 0 permessage-deflate negotiated, bit 1 `client_no_context_takeover`, bits 2..=4 the
//!   client's window bits minus 8;
//! - byte 1: `max_payload` in units of 8 bytes (0..=2040);
//! - byte 2: the size of the reads (1..=256 bytes).
//!
//! Besides the differential check: messages fit `max_payload`, text is UTF-8, errors are 1002, 1007 or
//! 1009, close codes are ones a client may send.

#![no_main]

use bytes::BytesMut;
use hyperws::protocol::deflate::{negotiate, Compression, MAX_WINDOW_BITS};
use hyperws::protocol::{Decoder, Inbound, ProtocolError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Decoded {
    outcomes: Vec<Result<Inbound, ProtocolError>>,
    /// At the end of the input, when it ended without an error.
    wanted: usize,
    in_message: bool,
}

fuzz_target!(|data: &[u8]| {
    let [flags, max_payload, read_size, wire @ ..] = data else {
        return;
    };
    let max_payload = usize::from(*max_payload) * 8;
    let decoder = || {
        let offer = format!(
            "permessage-deflate; client_max_window_bits={}{}",
            8 + (flags >> 2 & 0b111),
            if flags & 0b10 != 0 {
                "; client_no_context_takeover"
            } else {
                ""
            }
        );
        let route = Compression::Dedicated {
            window_bits: MAX_WINDOW_BITS,
        };
        let params = (flags & 1 != 0)
            .then(|| negotiate([offer.as_bytes()], route))
            .flatten();
        Decoder::new(max_payload).with_deflate(params)
    };
    let whole = decode(decoder(), wire, wire.len().max(1));
    check(&whole, max_payload);
    assert_eq!(decode(decoder(), wire, 1), whole, "one byte at a time");
    let read_size = usize::from(*read_size) + 1;
    assert_eq!(
        decode(decoder(), wire, read_size),
        whole,
        "reads of {read_size}"
    );
});

fn decode(mut decoder: Decoder, wire: &[u8], read_size: usize) -> Decoded {
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for piece in wire.chunks(read_size) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(inbound)) => outcomes.push(Ok(inbound)),
                Err(error) => {
                    outcomes.push(Err(error));
                    return Decoded {
                        outcomes,
                        wanted: 0,
                        in_message: false,
                    };
                }
            }
        }
    }
    Decoded {
        outcomes,
        wanted: decoder.wanted(),
        in_message: decoder.in_message(),
    }
}

fn check(decoded: &Decoded, max_payload: usize) {
    for outcome in &decoded.outcomes {
        match outcome {
            Ok(Inbound::Text(text)) => {
                assert!(text.len() <= max_payload);
                assert!(std::str::from_utf8(text).is_ok());
            }
            Ok(Inbound::Binary(data)) => assert!(data.len() <= max_payload),
            Ok(Inbound::Ping(data) | Inbound::Pong(data)) => assert!(data.len() <= 125),
            Ok(Inbound::Close(reason)) => {
                assert!(matches!(reason.code, 1000..=1003 | 1005 | 1007..=1013 | 3000..=4999));
                assert!(std::str::from_utf8(&reason.reason).is_ok());
            }
            Err(error) => assert!([1002, 1007, 1009].contains(&error.code), "{error:?}"),
        }
    }
}
