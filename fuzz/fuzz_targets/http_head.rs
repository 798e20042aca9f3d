//! What a client sends before its request is served: a request head, then a chunked body.
//!
//! Input: one byte that sets the size of the socket reads (1..=64 bytes), then the client's bytes.
//! Checks that the head and the body read the same whole and in reads of that size (the server parses
//! again after each read), that a whole head passes the server's checks without panicking, and that the
//! upgrade's answer is a well-formed HTTP response.

#![no_main]

use bytes::BytesMut;
use hyperws::net::fuzzing::{
    parse_head, serve_head, ChunkError, ChunkedDecoder, HeadRead, ServedHead, PEER,
};
use libfuzzer_sys::fuzz_target;

/// The body limit: small enough for the fuzzer to cross.
const BODY_LIMIT: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&read_size, stream)) = data.split_first() else {
        return;
    };
    let read_size = usize::from(read_size % 64) + 1;
    let whole = parse_head(stream);
    assert_eq!(
        read_in_pieces(stream, read_size, parse_head),
        whole,
        "the head reads differently in pieces"
    );
    let Some(HeadRead::Complete(len)) = whole else {
        return;
    };
    let served = serve_head(&stream[..len]).expect("a head that parsed whole parses again");
    check_served(&served);
    let body = &stream[len..];
    assert_eq!(
        read_chunked(body, read_size),
        read_chunked(body, body.len().max(1)),
        "the chunked body reads differently in pieces"
    );
});

/// Feeds `stream` to `parse` in reads of `read_size` bytes, as the server does: the first answer.
fn read_in_pieces<T>(
    stream: &[u8],
    read_size: usize,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Option<T> {
    (1..=stream.len().div_ceil(read_size))
        .map(|reads| &stream[..(reads * read_size).min(stream.len())])
        .find_map(parse)
}

fn check_served(served: &ServedHead) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let parsed = response.parse(&served.upgrade_response);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(_))),
        "malformed response {:?}",
        String::from_utf8_lossy(&served.upgrade_response)
    );
    if response.code == Some(101) {
        assert!(served.is_upgrade);
    }
    let peer: std::net::SocketAddr = PEER.parse().unwrap();
    for client in served.clients {
        // Either the socket peer, or an address a trusted proxy (the peer) named.
        match client.proxy_ip {
            None => assert_eq!(client.addr, peer),
            Some(proxy) => assert_eq!((proxy, client.addr.port()), (peer.ip(), 0)),
        }
    }
    for (name, _) in &served.request.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
    }
}

/// The body, with how many bytes it took, or the error.
fn read_chunked(body: &[u8], read_size: usize) -> Option<Result<(Vec<u8>, usize), ChunkError>> {
    let mut decoder = ChunkedDecoder::new(BODY_LIMIT);
    let mut buf = BytesMut::new();
    for (read, piece) in body.chunks(read_size).enumerate() {
        buf.extend_from_slice(piece);
        match decoder.feed(&mut buf) {
            Ok(None) => {}
            Ok(Some(decoded)) => {
                assert!(decoded.len() <= BODY_LIMIT);
                let fed = read * read_size + piece.len();
                return Some(Ok((decoded.to_vec(), fed - buf.len())));
            }
            Err(error) => return Some(Err(error)),
        }
    }
    None
}
