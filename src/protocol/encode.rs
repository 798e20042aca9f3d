//! Server frames: never masked, so one encoded frame is valid for every receiver.

use bytes::BufMut;

/// Opcode of a frame that continues a fragmented message.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xa;

/// RSV1, or'ed into the opcode given to [`put_header`]: the message is compressed (permessage-deflate).
pub const RSV1: u8 = 0x40;

/// The largest header a server frame needs.
pub const MAX_HEADER_LEN: usize = 10;

/// Writes the header of an unmasked frame carrying `len` payload bytes.
pub fn put_header(out: &mut impl BufMut, fin: bool, opcode: u8, len: usize) {
    out.put_u8(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Length of the header [`put_header`] writes for `len` payload bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Writes a whole unfragmented frame.
pub fn put_frame(out: &mut impl BufMut, opcode: u8, payload: &[u8]) {
    put_header(out, true, opcode, payload.len());
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_follow_the_length_encoding() {
        for (len, expected) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            put_header(&mut out, true, BINARY, len);
            assert_eq!(out.len(), expected, "len {len}");
            assert_eq!(header_len(len), expected);
        }
    }

    #[test]
    fn small_text_frame_bytes() {
        let mut out = Vec::new();
        put_frame(&mut out, TEXT, b"hi");
        assert_eq!(out, [0x81, 0x02, b'h', b'i']);
    }

    #[test]
    fn fragment_without_fin() {
        let mut out = Vec::new();
        put_header(&mut out, false, BINARY, 300);
        assert_eq!(out, [0x02, 126, 0x01, 0x2c]);
    }

    #[test]
    fn round_trips_through_the_header_parser_once_masked() {
        let mut out = Vec::new();
        put_header(&mut out, true, BINARY, 70_000);
        out[1] |= 0x80;
        out.extend_from_slice(&[0, 0, 0, 0]);
        let (header, len) = super::super::parse_header(&out).unwrap().unwrap();
        assert_eq!((header.payload_len, len), (70_000, 14));
    }
}
