use super::{Control, Data, OpCode, ProtocolError};

/// The header of one client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..3 as the top three bits of the first byte (`0x70` mask), shifted down (0..=7).
    pub rsv: u8,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// Parses a frame header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold the whole header, or the header and its length in bytes.
/// Checks that need only the header are done here: reserved opcodes, control frame rules, the 64-bit length's
/// top bit. Masking and RSV policy belong to the caller, which knows the role and the negotiated extensions.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 & 0x70) >> 4;
    let opcode = OpCode::from(b0 & 0x0f);
    let masked = b1 & 0x80 != 0;
    let short_len = b1 & 0x7f;

    match opcode {
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            return Err(ProtocolError::protocol("reserved opcode"));
        }
        OpCode::Control(_) if !fin => {
            return Err(ProtocolError::protocol("fragmented control frame"))
        }
        OpCode::Control(_) if short_len > 125 => {
            return Err(ProtocolError::protocol(
                "control frame payload over 125 bytes",
            ));
        }
        _ => {}
    }

    let (payload_len, mut at) = match short_len {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(ProtocolError::protocol(
                    "payload length with the top bit set",
                ));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };

    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(key)
    } else {
        None
    };

    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        at,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_masked_text_frame() {
        let buf = [0x81, 0x85, 1, 2, 3, 4, b'x'];
        let (h, len) = parse_header(&buf).unwrap().unwrap();
        assert_eq!(len, 6);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Data(Data::Text));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn extended_lengths() {
        let buf = [0x82, 0xfe, 0x01, 0x00, 9, 9, 9, 9];
        let (h, len) = parse_header(&buf).unwrap().unwrap();
        assert_eq!((h.payload_len, len), (256, 8));

        let mut buf = vec![0x82, 0xff];
        buf.extend_from_slice(&70_000u64.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]);
        let (h, len) = parse_header(&buf).unwrap().unwrap();
        assert_eq!((h.payload_len, len), (70_000, 14));
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        for buf in [
            &[0x81][..],
            &[0x81, 0x85, 1, 2],
            &[0x82, 0xfe, 0x01],
            &[0x82, 0xff, 0, 0, 0],
        ] {
            assert_eq!(parse_header(buf).unwrap(), None, "{buf:?}");
        }
    }

    #[test]
    fn rejects_what_the_header_alone_shows_is_wrong() {
        assert_eq!(parse_header(&[0x83, 0x80]).unwrap_err().code, 1002);
        assert_eq!(parse_header(&[0x8b, 0x80]).unwrap_err().code, 1002);
        assert_eq!(
            parse_header(&[0x09, 0x80]).unwrap_err().reason,
            "fragmented control frame"
        );
        assert_eq!(parse_header(&[0x89, 0xfe, 0, 200]).unwrap_err().code, 1002);
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse_header(&huge).unwrap_err().code, 1002);
    }

    #[test]
    fn rsv_bits_are_reported() {
        let (h, _) = parse_header(&[0xc1, 0x80, 0, 0, 0, 0]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
    }
}
