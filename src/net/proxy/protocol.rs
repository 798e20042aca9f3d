//! The PROXY protocol (HAProxy's, v1 text and v2 binary): the header an L4 load balancer sends before
//! the client's bytes, naming the client's address. Parsing is the `ppp` crate's; this module reads
//! the header off the socket and decides what it means for the connection.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Peer;

/// Reads the PROXY header at the start of the connection into `buf` and consumes it; what follows
/// it stays in `buf`. `None`: the connection does not start with a valid header within `limit` bytes,
/// or ended first. A LOCAL (v2) or UNKNOWN (v1) header, or a non-IP address family, keeps the socket
/// peer.
pub async fn read_proxy_header(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    peer: SocketAddr,
    limit: usize,
) -> io::Result<Option<Peer>> {
    loop {
        match parse(buf) {
            Parsed::Complete { len, source } => {
                buf.advance(len);
                return Ok(Some(match source {
                    Some(addr) => Peer {
                        addr,
                        balancer: Some(peer.ip()),
                    },
                    None => Peer::direct(peer),
                }));
            }
            Parsed::Invalid => return Ok(None),
            Parsed::Partial if buf.len() >= limit => return Ok(None),
            Parsed::Partial => {}
        }
        buf.reserve(512.min(limit - buf.len()));
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The longest v1 header line, CRLF included (the PROXY protocol's limit, and ppp's).
const V1_MAX_LEN: usize = 107;

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; `source` is the client, when it names one.
    Complete {
        len: usize,
        source: Option<SocketAddr>,
    },
    Partial,
    Invalid,
}

/// What the start of a connection holds: a whole PROXY header, the start of one, or anything else.
pub fn parse(input: &[u8]) -> Parsed {
    // A v1 header is one line, which ppp 2.3 judges even when it is cut short (cut just after the
    // source port's space, the empty destination port is an error; `UNKNOWN` ended by a bare LF is
    // taken, unless what follows is not UTF-8). ppp's line ends with the byte after its first CR, so
    // it is judged once that byte has arrived, or once the line is longer than a header can be.
    let line_ended = input
        .iter()
        .position(|&c| c == b'\r')
        .is_some_and(|cr| cr + 1 < input.len());
    if input.starts_with(b"PROXY ") && input.len() <= V1_MAX_LEN && !line_ended {
        return Parsed::Partial;
    }
    let result = HeaderResult::parse(input);
    if result.is_incomplete() {
        return Parsed::Partial;
    }
    match result {
        HeaderResult::V1(Ok(header)) => Parsed::Complete {
            len: header.header.len(),
            source: match header.addresses {
                v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
                v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Parsed::Complete {
            len: header.len(),
            source: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some((a.source_address, a.source_port).into())
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some((a.source_address, a.source_port).into())
                }
                _ => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Parsed::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x20 | command, family]);
        header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        header.extend_from_slice(addresses);
        header
    }

    fn complete(len: usize, source: &str) -> Parsed {
        Parsed::Complete {
            len,
            source: Some(source.parse().unwrap()),
        }
    }

    #[test]
    fn v1_names_the_client_and_leaves_the_request() {
        let header = "PROXY TCP4 203.0.113.9 10.0.0.1 51000 80\r\n";
        let input = format!("{header}GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse(input.as_bytes()),
            complete(header.len(), "203.0.113.9:51000")
        );
        let v6 = "PROXY TCP6 2001:db8::9 2001:db8::1 4000 443\r\n";
        assert_eq!(
            parse(v6.as_bytes()),
            complete(v6.len(), "[2001:db8::9]:4000")
        );
    }

    #[test]
    fn v1_unknown_keeps_the_peer() {
        let header = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        assert_eq!(
            parse(header.as_bytes()),
            Parsed::Complete {
                len: header.len(),
                source: None
            }
        );
    }

    #[test]
    fn v2_proxy_names_the_client_and_local_keeps_the_peer() {
        let mut addresses = vec![198, 51, 100, 7, 10, 0, 0, 1];
        addresses.extend_from_slice(&40000u16.to_be_bytes());
        addresses.extend_from_slice(&80u16.to_be_bytes());
        let header = v2(0x1, 0x11, &addresses);
        let mut input = header.clone();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&input), complete(header.len(), "198.51.100.7:40000"));
        // Type-length-value fields after the addresses (here a NOOP) are part of the header.
        let mut with_tlv = addresses.clone();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x02, 0xAA, 0xBB]);
        let header = v2(0x1, 0x11, &with_tlv);
        assert_eq!(parse(&header), complete(header.len(), "198.51.100.7:40000"));
        let local = v2(0x0, 0x00, &[]);
        assert_eq!(
            parse(&local),
            Parsed::Complete {
                len: 16,
                source: None
            }
        );
    }

    #[test]
    fn headers_arriving_in_pieces_are_partial() {
        let header = "PROXY TCP4 203.0.113.9 10.0.0.1 51000 80\r\n";
        for cut in [0, 3, 9, 20, header.len() - 1] {
            assert_eq!(
                parse(&header.as_bytes()[..cut]),
                Parsed::Partial,
                "cut at {cut}"
            );
        }
        let binary = v2(0x1, 0x11, &[1; 12]);
        for cut in [0, 5, 12, 15, 20] {
            assert_eq!(parse(&binary[..cut]), Parsed::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn a_v1_header_cut_anywhere_is_partial() {
        // Found by fuzzing: cut after `51000 `, the header was invalid, so a balancer's header that
        // TCP delivered in two reads there had the connection closed.
        for header in [
            "PROXY TCP4 203.0.113.9 10.0.0.1 51000 80\r\n",
            "PROXY TCP6 2001:db8::9 2001:db8::1 4000 443\r\n",
            "PROXY UNKNOWN\r\n",
        ] {
            for cut in 0..header.len() {
                let piece = &header.as_bytes()[..cut];
                assert_eq!(parse(piece), Parsed::Partial, "{:?}", &header[..cut]);
            }
            assert!(matches!(parse(header.as_bytes()), Parsed::Complete { .. }));
        }
        // Also found by fuzzing: ppp took this line whole, but not when a byte that is not UTF-8
        // followed it in the same read.
        assert_eq!(parse(b"PROXY UNKNOWN \n"), Parsed::Partial);
        assert_eq!(parse(b"PROXY UNKNOWN \n\xa8"), Parsed::Partial);
        // And a header ppp ends at `\r\r` reads the same whole and alone.
        let ended_by_cr_cr = b"PROXY UNKNOWN \n\r\r";
        let expected = Parsed::Complete {
            len: ended_by_cr_cr.len(),
            source: None,
        };
        assert_eq!(parse(ended_by_cr_cr), expected);
        assert_eq!(parse(&[&ended_by_cr_cr[..], b"\n"].concat()), expected);
        // And a line one byte longer than a header can be was taken when cut at the limit.
        let too_long = format!("PROXY UNKNOWN \n {}\r\n", "x".repeat(90));
        assert_eq!(too_long.len(), V1_MAX_LEN + 1);
        assert_eq!(parse(&too_long.as_bytes()[..V1_MAX_LEN]), Parsed::Partial);
        assert_eq!(parse(too_long.as_bytes()), Parsed::Invalid);
    }

    #[test]
    fn anything_else_is_invalid() {
        for input in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29\r\n",
        ] {
            assert_eq!(parse(input), Parsed::Invalid, "{:?}", String::from_utf8_lossy(input));
        }
        let mut bad_version = v2(0x1, 0x11, &[1; 12]);
        bad_version[12] = 0x31;
        assert_eq!(parse(&bad_version), Parsed::Invalid);
    }
}
