//! The addresses listed by `X-Forwarded-For` and `Forwarded` (RFC 7239) headers, in order (the nearest
//! proxy's entry last). An entry that is not an IP address (`unknown`, an obfuscated `_name`, garbage)
//! is `None`: nothing to its left can be attributed to anyone.

use std::net::{IpAddr, SocketAddr};

/// The entries of every `X-Forwarded-For` header, in order.
pub fn x_forwarded_for<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<Option<IpAddr>> {
    values
        .flat_map(|value| split_outside_quotes(value, b','))
        .map(node)
        .collect()
}

/// The `for=` node of every element of every `Forwarded` header, in order.
pub fn forwarded<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<Option<IpAddr>> {
    values
        .flat_map(|value| split_outside_quotes(value, b','))
        .map(|element| {
            split_outside_quotes(element, b';')
                .into_iter()
                .find_map(|pair| {
                    let (name, value) = pair.split_at(pair.iter().position(|&c| c == b'=')?);
                    name.trim_ascii()
                        .eq_ignore_ascii_case(b"for")
                        .then_some(&value[1..])
                })
                .and_then(node)
        })
        .collect()
}

fn split_outside_quotes(value: &[u8], separator: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, &c) in value.iter().enumerate() {
        if c == b'"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&value[start..i]);
            start = i + 1;
        }
    }
    parts.push(&value[start..]);
    parts
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`,
/// optionally in double quotes.
fn node(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text.trim_ascii()).ok()?;
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn x_forwarded_for_lists_every_header_in_order() {
        let headers: [&[u8]; 2] = [
            b"203.0.113.7, 10.0.0.1:4711",
            b" [2001:db8::1]:80 ,unknown,2001:db8::2",
        ];
        assert_eq!(
            x_forwarded_for(headers.into_iter()),
            vec![
                ip("203.0.113.7"),
                ip("10.0.0.1"),
                ip("2001:db8::1"),
                None,
                ip("2001:db8::2")
            ]
        );
    }

    #[test]
    fn forwarded_takes_the_for_node_of_each_element() {
        let header: &[u8] =
            b"for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\", by=1.1.1.1, for=_hidden, for=\"198.51.100.17\"";
        assert_eq!(
            forwarded(std::iter::once(header)),
            vec![
                ip("192.0.2.60"),
                ip("2001:db8:cafe::17"),
                None,
                None,
                ip("198.51.100.17")
            ]
        );
    }

    #[test]
    fn quoted_separators_do_not_split() {
        let header: &[u8] = b"for=\"a,b\";by=x, for=1.2.3.4";
        assert_eq!(
            forwarded(std::iter::once(header)),
            vec![None, ip("1.2.3.4")]
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let header: &[u8] = b"::ffff:10.1.2.3";
        assert_eq!(
            x_forwarded_for(std::iter::once(header)),
            vec![ip("10.1.2.3")]
        );
    }
}
