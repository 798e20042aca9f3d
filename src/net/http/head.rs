//! Reading a request head off the socket.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Header lines accepted per request; more gets 431.
pub const MAX_HEADERS: usize = 64;

/// How reading a request head ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRead {
    /// `buf` starts with a whole head of this many bytes.
    Complete(usize),
    TooLarge,
    Malformed,
    Closed,
}

/// Reads until `buf` starts with a whole request head (it may already hold one: pipelined requests).
/// Gives up once `limit` bytes are buffered without a whole head, so `buf` stays bounded.
pub async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    limit: usize,
) -> io::Result<HeadRead> {
    loop {
        if let Some(read) = parse_head(buf) {
            return Ok(read);
        }
        if buf.len() >= limit {
            return Ok(HeadRead::TooLarge);
        }
        buf.reserve(1024.min(limit - buf.len()));
        if stream.read_buf(buf).await? == 0 {
            return Ok(HeadRead::Closed);
        }
    }
}

/// What the bytes buffered so far say: a whole head, or an error; `None` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Option<HeadRead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(len)) => Some(HeadRead::Complete(len)),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(HeadRead::TooLarge),
        Err(_) => Some(HeadRead::Malformed),
    }
}

/// Whether a `name` header lists `token` (comma-separated, case-insensitive), in any of its lines.
pub fn has_token(request: &httparse::Request<'_, '_>, name: &str, token: &str) -> bool {
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| {
            std::str::from_utf8(h.value)
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
}
