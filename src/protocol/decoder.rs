use bytes::{Buf, Bytes, BytesMut};

use super::deflate::{Decompressor, DeflateParams};
use super::{
    apply_mask, grow_within, parse_close_payload, parse_header, CloseReason, Control, Data, OpCode,
    ProtocolError, Utf8Validator,
};

/// RSV1 in [`FrameHeader::rsv`](super::FrameHeader): the message is compressed (permessage-deflate).
const RSV1: u8 = 0b100;

/// One complete thing received from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(CloseReason),
}

/// Assembles client frames into messages: unmasking, fragmentation with control frames in between,
/// incremental UTF-8 checks and the size limit, which applies to the whole message.
#[derive(Debug)]
pub struct Decoder {
    max_payload: usize,
    /// Bytes the frame at the head of the buffer needs in all (header + payload), once its header is known.
    wanted: usize,
    fragments: Option<Box<Fragments>>,
    /// Set when permessage-deflate was negotiated.
    inflate: Option<Box<Inflate>>,
}

#[derive(Debug)]
struct Fragments {
    text: bool,
    data: BytesMut,
    utf8: Utf8Validator,
    /// Bytes received on the wire so far, when the message is compressed (`data` holds them inflated).
    compressed: Option<u64>,
}

/// The receiving half of permessage-deflate.
#[derive(Debug)]
struct Inflate {
    window_bits: u8,
    /// The client keeps its context between messages, so the window must be kept too.
    keep_context: bool,
    /// Made on the first compressed message; dropped after each one when no context is kept.
    decompressor: Option<Decompressor>,
}

impl Decoder {
    /// A decoder that refuses messages over `max_payload` bytes with 1009.
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            wanted: 0,
            fragments: None,
            inflate: None,
        }
    }

    /// Accepts compressed messages (RSV1) as negotiated.
    pub fn with_deflate(mut self, params: Option<DeflateParams>) -> Self {
        self.inflate = params.map(|params| {
            Box::new(Inflate {
                window_bits: params.client_max_window_bits,
                keep_context: !params.client_no_context_takeover,
                decompressor: None,
            })
        });
        self
    }

    /// The most compressed bytes a message may take on the wire: the limit plus DEFLATE's worst-case
    /// growth of incompressible data, with room to spare.
    fn compressed_limit(&self) -> u64 {
        let max = self.max_payload as u64;
        max + max / 8 + 1024
    }

    /// How many bytes the buffer must hold for the next call to make progress (0 when unknown).
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Whether a fragmented message is being assembled.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Takes the next complete message or control frame off the front of `buf`.
    ///
    /// `Ok(None)` means `buf` holds only part of a frame: read more and call again. Frames that continue a
    /// fragmented message are consumed internally. Single-frame messages are returned without a copy.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            let Some((header, header_len)) = parse_header(buf)? else {
                self.wanted = 0;
                return Ok(None);
            };
            let Some(mask) = header.mask else {
                return Err(ProtocolError::protocol("client frame not masked"));
            };
            let starts_compressed = header.rsv == RSV1
                && self.inflate.is_some()
                && matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
            if header.rsv != 0 && !starts_compressed {
                return Err(ProtocolError::protocol(
                    "RSV bits set without a negotiated extension",
                ));
            }
            let is_data = matches!(header.opcode, OpCode::Data(_));
            let (assembled, compressed) = match (&self.fragments, header.opcode) {
                (Some(f), OpCode::Data(Data::Continue)) => (f.data.len() as u64, f.compressed),
                _ => (0, starts_compressed.then_some(0)),
            };
            let too_big = match compressed {
                Some(wire) => wire + header.payload_len > self.compressed_limit(),
                None => assembled + header.payload_len > self.max_payload as u64,
            };
            if is_data && too_big {
                return Err(ProtocolError::too_big());
            }
            let len = header.payload_len as usize;
            if buf.len() < header_len + len {
                self.wanted = header_len + len;
                return Ok(None);
            }
            self.wanted = 0;
            buf.advance(header_len);
            let mut payload = buf.split_to(len);
            apply_mask(&mut payload, mask);

            match header.opcode {
                OpCode::Data(Data::Continue) => {
                    let Some(fragments) = self.fragments.as_mut() else {
                        return Err(ProtocolError::protocol(
                            "continuation frame without a message",
                        ));
                    };
                    let start = fragments.data.len();
                    if let Some(wire) = fragments.compressed.as_mut() {
                        *wire += payload.len() as u64;
                        let inflate = self.inflate.as_deref_mut().expect("compressed: negotiated");
                        inflate.decompress(
                            &payload,
                            header.fin,
                            &mut fragments.data,
                            self.max_payload,
                        )?;
                    } else {
                        // The size was checked above: the message never needs more than the limit.
                        let needed = start + payload.len();
                        grow_within(&mut fragments.data, needed, self.max_payload.max(needed));
                        fragments.data.extend_from_slice(&payload);
                    }
                    if fragments.text {
                        fragments
                            .utf8
                            .feed(&fragments.data[start..], header.fin)
                            .map_err(|_| ProtocolError::invalid_utf8())?;
                    }
                    if header.fin {
                        let done = self.fragments.take().expect("checked above");
                        let data = done.data.freeze();
                        return Ok(Some(if done.text {
                            Inbound::Text(data)
                        } else {
                            Inbound::Binary(data)
                        }));
                    }
                }
                OpCode::Data(kind) => {
                    if self.fragments.is_some() {
                        return Err(ProtocolError::protocol(
                            "new message before the previous one ended",
                        ));
                    }
                    let text = kind == Data::Text;
                    let payload = if starts_compressed {
                        let inflate = self.inflate.as_deref_mut().expect("checked above");
                        let mut inflated = BytesMut::new();
                        inflate.decompress(
                            &payload,
                            header.fin,
                            &mut inflated,
                            self.max_payload,
                        )?;
                        inflated
                    } else {
                        payload
                    };
                    if header.fin {
                        if text && simdutf8::basic::from_utf8(&payload).is_err() {
                            return Err(ProtocolError::invalid_utf8());
                        }
                        let data = payload.freeze();
                        return Ok(Some(if text {
                            Inbound::Text(data)
                        } else {
                            Inbound::Binary(data)
                        }));
                    }
                    let mut utf8 = Utf8Validator::default();
                    if text {
                        utf8.feed(&payload, false)
                            .map_err(|_| ProtocolError::invalid_utf8())?;
                    }
                    self.fragments = Some(Box::new(Fragments {
                        text,
                        data: payload,
                        utf8,
                        compressed: starts_compressed.then_some(header.payload_len),
                    }));
                }
                OpCode::Control(Control::Ping) => return Ok(Some(Inbound::Ping(payload.freeze()))),
                OpCode::Control(Control::Pong) => return Ok(Some(Inbound::Pong(payload.freeze()))),
                OpCode::Control(Control::Close) => {
                    return parse_close_payload(payload.freeze()).map(|c| Some(Inbound::Close(c)));
                }
                OpCode::Control(Control::Reserved(_)) => unreachable!("rejected by parse_header"),
            }
        }
    }
}

impl Inflate {
    fn decompress(
        &mut self,
        payload: &[u8],
        last: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let window_bits = self.window_bits;
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| Decompressor::new(window_bits));
        let result = decompressor.decompress(payload, last, out, limit);
        if last && !self.keep_context {
            self.decompressor = None; // an idle connection keeps no window
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode::{self, put_header};

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, fin, opcode, payload.len());
        out[1] |= 0x80;
        out.extend_from_slice(&KEY);
        let mut masked = payload.to_vec();
        apply_mask(&mut masked, KEY);
        out.extend_from_slice(&masked);
        out
    }

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Inbound>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(&mut buf)? {
            out.push(item);
        }
        Ok(out)
    }

    #[test]
    fn single_frames() {
        let mut bytes = client_frame(true, encode::TEXT, "héllo".as_bytes());
        bytes.extend(client_frame(true, encode::BINARY, &[0, 255]));
        bytes.extend(client_frame(true, encode::PING, b"p"));
        bytes.extend(client_frame(true, encode::PONG, b""));
        let got = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
        assert_eq!(
            got,
            [
                Inbound::Text(Bytes::from("héllo")),
                Inbound::Binary(Bytes::from_static(&[0, 255])),
                Inbound::Ping(Bytes::from_static(b"p")),
                Inbound::Pong(Bytes::new()),
            ]
        );
    }

    #[test]
    fn fragments_with_a_ping_in_between() {
        let mut bytes = client_frame(false, encode::TEXT, b"ab");
        bytes.extend(client_frame(true, encode::PING, b"x"));
        bytes.extend(client_frame(false, 0, b"cd"));
        bytes.extend(client_frame(true, 0, b"ef"));
        let got = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
        assert_eq!(
            got,
            [
                Inbound::Ping(Bytes::from_static(b"x")),
                Inbound::Text(Bytes::from_static(b"abcdef"))
            ]
        );
    }

    #[test]
    fn partial_input_waits_and_reports_what_it_wants() {
        let frame = client_frame(true, encode::BINARY, &[7; 300]);
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::from(&frame[..10]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert_eq!(decoder.wanted(), frame.len());
        buf.extend_from_slice(&frame[10..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Inbound::Binary(Bytes::from(vec![7; 300])))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn size_limit_applies_to_the_assembled_message_before_the_payload_arrives() {
        let mut decoder = Decoder::new(4);
        let header_only = &client_frame(true, encode::BINARY, &[0; 5])[..6];
        assert_eq!(
            decode_all(&mut decoder, header_only).unwrap_err().code,
            1009
        );

        let mut bytes = client_frame(false, encode::BINARY, &[0; 3]);
        bytes.extend(client_frame(true, 0, &[0; 2]));
        assert_eq!(
            decode_all(&mut Decoder::new(4), &bytes).unwrap_err().code,
            1009
        );
        assert_eq!(decode_all(&mut Decoder::new(5), &bytes).unwrap().len(), 1);
    }

    #[test]
    fn protocol_violations_are_1002() {
        let unmasked = [0x81, 0x00];
        assert_eq!(
            decode_all(&mut Decoder::new(10), &unmasked)
                .unwrap_err()
                .code,
            1002
        );
        let mut rsv = client_frame(true, encode::TEXT, b"a");
        rsv[0] |= 0x40;
        assert_eq!(
            decode_all(&mut Decoder::new(10), &rsv).unwrap_err().code,
            1002
        );
        let orphan = client_frame(true, 0, b"a");
        assert_eq!(
            decode_all(&mut Decoder::new(10), &orphan).unwrap_err().code,
            1002
        );
        let mut interleaved = client_frame(false, encode::TEXT, b"a");
        interleaved.extend(client_frame(true, encode::TEXT, b"b"));
        assert_eq!(
            decode_all(&mut Decoder::new(10), &interleaved)
                .unwrap_err()
                .code,
            1002
        );
    }

    #[test]
    fn invalid_utf8_is_1007_even_in_an_unfinished_message() {
        let bad = client_frame(true, encode::TEXT, b"\xff");
        assert_eq!(
            decode_all(&mut Decoder::new(10), &bad).unwrap_err().code,
            1007
        );
        let first_fragment_bad = client_frame(false, encode::TEXT, b"a\xc0");
        assert_eq!(
            decode_all(&mut Decoder::new(10), &first_fragment_bad)
                .unwrap_err()
                .code,
            1007
        );
        let mut split_char = client_frame(false, encode::TEXT, &"€".as_bytes()[..1]);
        split_char.extend(client_frame(true, 0, &"€".as_bytes()[1..]));
        assert_eq!(
            decode_all(&mut Decoder::new(10), &split_char).unwrap(),
            [Inbound::Text(Bytes::from("€"))]
        );
    }

    #[test]
    fn a_message_in_fragments_that_fills_the_limit_exactly_is_accepted() {
        let max = 10_000;
        let mut decoder = Decoder::new(max);
        let mut input = Vec::new();
        for (n, size) in [3_000, 3_000, 3_000, 1_000].into_iter().enumerate() {
            let opcode = if n == 0 {
                encode::BINARY
            } else {
                encode::CONTINUATION
            };
            input.extend(client_frame(n == 3, opcode, &vec![7; size]));
        }
        let messages = decode_all(&mut decoder, &input).expect("valid");
        let [Inbound::Binary(message)] = &messages[..] else {
            panic!("one message expected, got {messages:?}");
        };
        assert_eq!(message.len(), max);
    }

    #[test]
    fn close_frames_are_parsed() {
        let close = client_frame(true, encode::CLOSE, b"\x03\xe9gone");
        let got = decode_all(&mut Decoder::new(10), &close).unwrap();
        assert_eq!(
            got,
            [Inbound::Close(CloseReason {
                code: 1001,
                reason: Bytes::from_static(b"gone")
            })]
        );
        let bad = client_frame(true, encode::CLOSE, b"\x03");
        assert_eq!(
            decode_all(&mut Decoder::new(10), &bad).unwrap_err().code,
            1002
        );
    }

    fn deflate_decoder(max: usize) -> Decoder {
        let params = crate::protocol::deflate::negotiate(
            [&b"permessage-deflate"[..]],
            crate::protocol::deflate::Compression::Shared,
        );
        Decoder::new(max).with_deflate(params)
    }

    fn compressed(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::protocol::deflate::compress_shared(15, message, &mut out);
        out
    }

    fn with_rsv1(mut frame: Vec<u8>) -> Vec<u8> {
        frame[0] |= 0x40;
        frame
    }

    #[test]
    #[cfg_attr(miri, ignore = "C zlib (libz-sys): Miri cannot call C")]
    fn compressed_messages_are_inflated_when_negotiated() {
        let text = "héllo ".repeat(100);
        let mut bytes = with_rsv1(client_frame(
            true,
            encode::TEXT,
            &compressed(text.as_bytes()),
        ));
        bytes.extend(client_frame(true, encode::BINARY, b"plain"));
        let got = decode_all(&mut deflate_decoder(1024), &bytes).unwrap();
        assert_eq!(
            got,
            [
                Inbound::Text(Bytes::from(text)),
                Inbound::Binary(Bytes::from_static(b"plain"))
            ]
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "C zlib (libz-sys): Miri cannot call C")]
    fn a_compressed_message_in_fragments_with_a_ping_between() {
        let data = compressed(&[b'z'; 3000]);
        let (a, b) = data.split_at(data.len() / 2);
        let mut bytes = with_rsv1(client_frame(false, encode::BINARY, a));
        bytes.extend(client_frame(true, encode::PING, b""));
        bytes.extend(client_frame(true, 0, b));
        let got = decode_all(&mut deflate_decoder(3000), &bytes).unwrap();
        assert_eq!(
            got,
            [
                Inbound::Ping(Bytes::new()),
                Inbound::Binary(Bytes::from(vec![b'z'; 3000]))
            ]
        );
    }

    #[test]
    fn rsv1_is_only_for_the_first_frame_of_a_data_message() {
        let mut continuation = client_frame(false, encode::TEXT, b"a");
        continuation.extend(with_rsv1(client_frame(true, 0, b"b")));
        let ping = with_rsv1(client_frame(true, encode::PING, b""));
        let rsv2 = {
            let mut frame = client_frame(true, encode::TEXT, b"a");
            frame[0] |= 0x20;
            frame
        };
        for bytes in [continuation, ping, rsv2] {
            let error = decode_all(&mut deflate_decoder(100), &bytes).unwrap_err();
            assert_eq!(error.code, 1002, "{bytes:?}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "C zlib (libz-sys): Miri cannot call C")]
    fn the_limit_applies_to_the_inflated_size() {
        let bomb = with_rsv1(client_frame(
            true,
            encode::BINARY,
            &compressed(&[0; 1 << 20]),
        ));
        assert_eq!(
            decode_all(&mut deflate_decoder(64 * 1024), &bomb)
                .unwrap_err()
                .code,
            1009
        );
        let fits = with_rsv1(client_frame(true, encode::BINARY, &compressed(&[0; 1000])));
        assert_eq!(
            decode_all(&mut deflate_decoder(1000), &fits).unwrap().len(),
            1
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "C zlib (libz-sys): Miri cannot call C")]
    fn inflated_text_must_be_utf8() {
        let bad = with_rsv1(client_frame(true, encode::TEXT, &compressed(b"ok \xff")));
        assert_eq!(
            decode_all(&mut deflate_decoder(100), &bad)
                .unwrap_err()
                .code,
            1007
        );
    }
}
