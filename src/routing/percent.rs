//! Percent-decoding of path segments (RFC 3986, section 2.1).

use std::borrow::Cow;

/// Decodes `%XY` escapes (two hex digits, either case) in `input`.
///
/// An invalid or truncated escape (`%zz`, a final `%4`) is kept as it is. `+` is left alone: it
/// means a space only in query strings, not in paths. Bytes that do not form valid UTF-8 after
/// decoding become U+FFFD. Borrows `input` (no allocation) when it has no `%`.
///
/// ```
/// # use hyperws::routing::percent_decode;
/// assert_eq!(percent_decode("caf%C3%A9%20au%20lait"), "café au lait");
/// assert_eq!(percent_decode("100%"), "100%");
/// ```
pub fn percent_decode(input: &str) -> Cow<'_, str> {
    let bytes = input.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Cow::Borrowed(input);
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The value of one ASCII hex digit.
fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_without_escapes() {
        assert!(matches!(
            percent_decode("plain-text"),
            Cow::Borrowed("plain-text")
        ));
        assert!(matches!(percent_decode(""), Cow::Borrowed("")));
    }

    #[test]
    fn decodes_valid_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%2F%2f"), "//");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("%41%42%43"), "ABC");
        assert_eq!(percent_decode("%25"), "%");
        assert_eq!(percent_decode("%2541"), "%41", "decoded once, not twice");
    }

    #[test]
    fn keeps_invalid_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%20"), "%zz ");
        assert_eq!(percent_decode("%%41"), "%A");
        assert_eq!(percent_decode("%é"), "%é");
    }

    #[test]
    fn plus_is_not_a_space() {
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(percent_decode("a%FFb"), "a\u{FFFD}b");
        assert_eq!(percent_decode("%C3"), "\u{FFFD}");
    }
}
