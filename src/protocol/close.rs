use bytes::{BufMut, Bytes};
use tungstenite::protocol::frame::coding::CloseCode;

use super::{ProtocolError, CLOSE_NO_STATUS};

/// The code and reason of a received close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    /// UTF-8 (checked), possibly empty.
    pub reason: Bytes,
}

/// Parses and checks a received close payload (RFC 6455 section 5.5.1, 7.4).
pub fn parse_close_payload(payload: Bytes) -> Result<CloseReason, ProtocolError> {
    match payload.len() {
        0 => Ok(CloseReason {
            code: CLOSE_NO_STATUS,
            reason: Bytes::new(),
        }),
        1 => Err(ProtocolError::protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_received_code(code) {
                return Err(ProtocolError::protocol("invalid close code"));
            }
            let reason = payload.slice(2..);
            if simdutf8::basic::from_utf8(&reason).is_err() {
                return Err(ProtocolError::invalid_utf8());
            }
            Ok(CloseReason { code, reason })
        }
    }
}

/// Whether a peer may send `code` in a close frame.
pub fn is_valid_received_code(code: u16) -> bool {
    CloseCode::from(code).is_allowed()
}

/// Whether the server may send `code`: the registered codes an endpoint may use (1000-1003, 1007-1014)
/// and the ranges for libraries and applications (3000-4999).
pub fn is_valid_sent_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Builds a close payload: the code, then the reason cut to fit the 125-byte control frame limit on a UTF-8
/// character boundary.
pub fn encode_close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.put_u16(code);
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_means_no_status() {
        assert_eq!(parse_close_payload(Bytes::new()).unwrap().code, 1005);
    }

    #[test]
    fn code_and_reason() {
        let parsed = parse_close_payload(Bytes::from_static(b"\x03\xe8bye")).unwrap();
        assert_eq!(
            parsed,
            CloseReason {
                code: 1000,
                reason: Bytes::from_static(b"bye")
            }
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(
            parse_close_payload(Bytes::from_static(b"\x03"))
                .unwrap_err()
                .code,
            1002
        );
        for code in [
            0u16, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000, 65535,
        ] {
            let payload = Bytes::copy_from_slice(&code.to_be_bytes());
            assert_eq!(
                parse_close_payload(payload).unwrap_err().code,
                1002,
                "code {code}"
            );
        }
        let bad_reason = Bytes::from_static(b"\x03\xe8\xff");
        assert_eq!(parse_close_payload(bad_reason).unwrap_err().code, 1007);
    }

    #[test]
    fn accepts_registered_and_private_codes() {
        for code in [1000u16, 1001, 1003, 1007, 1011, 1012, 1013, 3000, 4999] {
            assert!(is_valid_received_code(code), "code {code}");
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let payload = encode_close_payload(1000, &reason);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
