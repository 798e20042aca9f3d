//! Close frame payloads, and the UTF-8 validator of fragmented text messages.
//!
//! Input: a close payload, which is also the text of a message cut into fragments.
//! Checks that a parsed close has a code a client may send and a UTF-8 reason, and fails with 1002 or
//! 1007 otherwise; that what the server encodes parses back; and that the validator agrees with
//! `std::str::from_utf8` whatever the cuts: at every split in two, and one byte per fragment.

#![no_main]

use bytes::Bytes;
use hyperws::protocol::{
    encode_close_payload, is_valid_sent_close_code, parse_close_payload, Utf8Validator,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_close_payload(Bytes::copy_from_slice(data)) {
        Ok(close) => {
            assert!(matches!(close.code, 1000..=1003 | 1005 | 1007..=1013 | 3000..=4999));
            assert!(std::str::from_utf8(&close.reason).is_ok());
        }
        Err(error) => assert!([1002, 1007].contains(&error.code), "{error:?}"),
    }

    if let [high, low, reason @ ..] = data {
        let code = u16::from_be_bytes([*high, *low]);
        let reason = String::from_utf8_lossy(reason);
        let payload = encode_close_payload(code, &reason);
        assert!(payload.len() <= 125);
        // 1014 (Bad Gateway) is registered, but the check of received codes, tungstenite's, predates it.
        if is_valid_sent_close_code(code) && code != 1014 {
            let parsed = parse_close_payload(Bytes::from(payload)).expect("a valid close");
            assert_eq!(parsed.code, code);
            assert!(reason.as_bytes().starts_with(&parsed.reason));
        }
    }

    let valid = std::str::from_utf8(data).is_ok();
    for cut in 0..=data.len() {
        assert_eq!(
            validate(&[&data[..cut], &data[cut..]]),
            valid,
            "cut at {cut}"
        );
    }
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(validate(&bytes), valid, "one byte per fragment");
});

/// Whether a text message in these fragments is valid UTF-8 (the first error fails it).
fn validate(fragments: &[&[u8]]) -> bool {
    let mut validator = Utf8Validator::default();
    let last = fragments.len().saturating_sub(1);
    fragments
        .iter()
        .enumerate()
        .all(|(i, fragment)| validator.feed(fragment, i == last).is_ok())
}
