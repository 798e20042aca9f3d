//! Request bodies: how a request frames its body (RFC 9112 section 6.3) and reading it, bounded by
//! `max_body_length`.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::chunked::{ChunkError, ChunkedDecoder};

/// Bytes asked of the socket per read while a body arrives.
const BODY_READ: usize = 64 * 1024;

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// 413: larger than `max_body_length` (or announced so).
    TooLarge,
    /// 400: conflicting or invalid `Content-Length`, bad chunked framing.
    Malformed,
    /// 501: a transfer coding other than chunked.
    UnsupportedCoding,
    /// The client left before sending all of it.
    Closed,
}

impl Framing {
    /// The framing of a request's body. A request with both `Transfer-Encoding` and
    /// `Content-Length`, or with differing lengths, is refused: the two could be read differently by a
    /// proxy in front (request smuggling).
    pub fn of(headers: &[httparse::Header<'_>]) -> Result<Self, BodyError> {
        let mut length: Option<u64> = None;
        let mut codings = Vec::new();
        for header in headers {
            if header.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(BodyError::Malformed)?;
                if length.is_some_and(|l| l != value) {
                    return Err(BodyError::Malformed);
                }
                length = Some(value);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                let value = std::str::from_utf8(header.value).map_err(|_| BodyError::Malformed)?;
                codings.extend(
                    value
                        .split(',')
                        .map(|c| c.trim().to_ascii_lowercase())
                        .filter(|c| !c.is_empty()),
                );
            }
        }
        match (codings.is_empty(), length) {
            (true, length) => Ok(Framing::Length(length.unwrap_or(0))),
            (false, Some(_)) => Err(BodyError::Malformed),
            (false, None) if codings == ["chunked"] => Ok(Framing::Chunked),
            (false, None) => Err(BodyError::UnsupportedCoding),
        }
    }
}

/// Reads the body that starts at the front of `buf` and takes it out of `buf` (what follows, a
/// pipelined request, stays).
pub async fn read_body(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    framing: Framing,
    limit: usize,
) -> io::Result<Result<Bytes, BodyError>> {
    match framing {
        Framing::Length(length) => {
            let Some(length) = usize::try_from(length).ok().filter(|l| *l <= limit) else {
                return Ok(Err(BodyError::TooLarge));
            };
            while buf.len() < length {
                buf.reserve(BODY_READ.min(length - buf.len()));
                if stream.read_buf(buf).await? == 0 {
                    return Ok(Err(BodyError::Closed));
                }
            }
            Ok(Ok(buf.split_to(length).freeze()))
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::new(limit);
            loop {
                match decoder.feed(buf) {
                    Ok(Some(body)) => return Ok(Ok(body.freeze())),
                    Ok(None) => {}
                    Err(ChunkError::TooLarge) => return Ok(Err(BodyError::TooLarge)),
                    Err(ChunkError::Malformed) => return Ok(Err(BodyError::Malformed)),
                }
                buf.reserve(BODY_READ);
                if stream.read_buf(buf).await? == 0 {
                    return Ok(Err(BodyError::Closed));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(headers: &[(&str, &str)]) -> Result<Framing, BodyError> {
        let headers: Vec<_> = headers
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        Framing::of(&headers)
    }

    #[test]
    fn content_length_and_chunked() {
        assert_eq!(framing(&[]), Ok(Framing::Length(0)));
        assert_eq!(
            framing(&[("Content-Length", " 12 ")]),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing(&[("content-length", "5"), ("Content-Length", "5")]),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "Chunked")]),
            Ok(Framing::Chunked)
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert_eq!(
            framing(&[("Content-Length", "5"), ("Content-Length", "6")]),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            framing(&[("Content-Length", "-1")]),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            framing(&[("Content-Length", "+5")]),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            framing(&[("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip, chunked")]),
            Err(BodyError::UnsupportedCoding)
        );
    }
}
