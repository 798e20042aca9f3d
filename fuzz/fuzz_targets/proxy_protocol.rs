//! The PROXY protocol header (v1 text, v2 binary) at the start of a connection, and the addresses of
//! `X-Forwarded-For` and `Forwarded` headers.
//!
//! Input: the first bytes of a connection; its lines are also read as forwarding header values.
//! Checks that a header reads the same whole and cut at every point (the server parses again after
//! each read, and stops at the first answer), that its length is within the input and that it reads
//! the same on its own.

#![no_main]

use hyperws::net::fuzzing::{forwarded, parse_proxy_header, x_forwarded_for, ProxyHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_proxy_header(data);
    let first_answer = (0..=data.len())
        .map(|end| parse_proxy_header(&data[..end]))
        .find(|parsed| *parsed != ProxyHeader::Partial)
        .unwrap_or(ProxyHeader::Partial);
    // Garbage may be refused sooner in pieces; a header must not be.
    if matches!(first_answer, ProxyHeader::Complete { .. })
        || matches!(whole, ProxyHeader::Complete { .. })
    {
        assert_eq!(
            first_answer, whole,
            "the header reads differently in pieces"
        );
    }
    if let ProxyHeader::Complete { len, source } = whole {
        assert!(len <= data.len());
        assert_eq!(
            parse_proxy_header(&data[..len]),
            ProxyHeader::Complete { len, source }
        );
    }

    let values = || data.split(|&c| c == b'\n');
    for ip in x_forwarded_for(values())
        .into_iter()
        .chain(forwarded(values()))
        .flatten()
    {
        assert_eq!(ip, ip.to_canonical(), "an IPv4-mapped address is IPv4");
    }
});
