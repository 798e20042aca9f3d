//! permessage-deflate negotiation (RFC 7692 §5, §7.1): the first offer the route can honour is accepted,
//! offers it cannot are declined, and no offer ever fails the handshake.

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// How a route compresses (its `compression` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Disabled,
    /// Neither side keeps a compression context between messages: one compressed frame is valid for every
    /// receiver (a publish compresses once), and no compression state outlives a message.
    Shared,
    /// Both sides may keep their context between messages (better ratio, memory per connection); the LZ77
    /// window is at most 2^`window_bits` bytes in both directions where the client lets the server say so.
    Dedicated {
        window_bits: u8,
    },
}

/// What one connection agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses each message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own, so the server inflates each on its own.
    pub client_no_context_takeover: bool,
    /// The window the server compresses with (8..=15).
    pub server_max_window_bits: u8,
    /// The window the client compresses with, which the server inflates with (8..=15).
    pub client_max_window_bits: u8,
    /// Whether `server_max_window_bits` and `client_max_window_bits` are stated in the response.
    state_server_bits: bool,
    state_client_bits: bool,
}

impl DeflateParams {
    /// Whether a frame compressed on its own with a full window (a publish) is valid for this connection.
    pub fn takes_shared_frames(&self) -> bool {
        self.server_no_context_takeover && self.server_max_window_bits == MAX_WINDOW_BITS
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response(&self) -> String {
        let mut out = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.state_server_bits {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.state_client_bits {
            out.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        out
    }
}

/// One permessage-deflate offer, checked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value (the client supports the parameter).
    client_max_window_bits: Option<Option<u8>>,
}

/// Picks the first permessage-deflate offer of the request's `Sec-WebSocket-Extensions` header values that
/// the route can honour. `None`: no compression on this connection.
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a [u8]>,
    policy: Compression,
) -> Option<DeflateParams> {
    if policy == Compression::Disabled {
        return None;
    }
    header_values
        .into_iter()
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| split_outside_quotes(value, ','))
        .filter_map(parse_offer)
        .map(|offer| accept(&offer, policy))
        .next()
}

fn accept(offer: &Offer, policy: Compression) -> DeflateParams {
    let requested_server_bits = offer.server_max_window_bits;
    match policy {
        Compression::Dedicated { window_bits } => {
            let server_bits = requested_server_bits.map_or(window_bits, |b| b.min(window_bits));
            let client_bits = offer
                .client_max_window_bits
                .map(|value| value.unwrap_or(MAX_WINDOW_BITS).min(window_bits));
            DeflateParams {
                server_no_context_takeover: offer.server_no_context_takeover,
                client_no_context_takeover: offer.client_no_context_takeover,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits.unwrap_or(MAX_WINDOW_BITS),
                // A smaller window needs no announcement: any inflater's window is at least as large.
                state_server_bits: requested_server_bits.is_some(),
                state_client_bits: client_bits.is_some(),
            }
        }
        // Both sides are told to compress each message on their own: nothing is kept per connection.
        Compression::Shared | Compression::Disabled => DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: requested_server_bits.unwrap_or(MAX_WINDOW_BITS),
            client_max_window_bits: offer
                .client_max_window_bits
                .flatten()
                .unwrap_or(MAX_WINDOW_BITS),
            state_server_bits: requested_server_bits.is_some(),
            state_client_bits: false,
        },
    }
}

/// Parses one extension of the list; `None` when it is not permessage-deflate or the offer is invalid
/// (an unknown parameter, a repeated one, a missing or bad value): such offers are declined.
fn parse_offer(extension: &str) -> Option<Offer> {
    let mut parts = split_outside_quotes(extension, ';');
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut offer = Offer::default();
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        match (key.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(value)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(value)?);
            }
            ("client_max_window_bits", value) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match value {
                    Some(value) => Some(window_bits(value)?),
                    None => None,
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// A window size parameter: a decimal 8..=15 without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.starts_with('+') {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(bits))
}

/// A token or a quoted string (RFC 7230 §3.2.6) with its escapes removed.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        None => Some(value),
        // Window sizes are digits: a quoted value with escapes inside is not one anyway.
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\'])),
    }
}

/// Splits on `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (at, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == separator && !quoted => {
                    rest = Some(&text[at + 1..]);
                    return Some(&text[..at]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEDICATED: Compression = Compression::Dedicated { window_bits: 15 };

    fn response(offer: &str, policy: Compression) -> Option<String> {
        negotiate([offer.as_bytes()], policy).map(|p| p.response())
    }

    #[test]
    fn disabled_routes_accept_nothing() {
        assert_eq!(response("permessage-deflate", Compression::Disabled), None);
    }

    #[test]
    fn a_plain_offer_is_accepted() {
        assert_eq!(
            response("permessage-deflate", DEDICATED).as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            response("permessage-deflate", Compression::Shared).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn each_parameter_is_honoured() {
        let params = negotiate(
            [
                &b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                server_max_window_bits=10; client_max_window_bits=9"[..],
            ],
            DEDICATED,
        )
        .unwrap();
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
        assert_eq!(
            (params.server_max_window_bits, params.client_max_window_bits),
            (10, 9)
        );
        assert_eq!(
            params.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
    }

    #[test]
    fn client_max_window_bits_without_a_value_lets_the_server_choose() {
        let small = Compression::Dedicated { window_bits: 11 };
        let params =
            negotiate([&b"permessage-deflate; client_max_window_bits"[..]], small).unwrap();
        assert_eq!(
            params.response(),
            "permessage-deflate; client_max_window_bits=11"
        );
        assert_eq!(
            response("permessage-deflate; client_max_window_bits", DEDICATED).as_deref(),
            Some("permessage-deflate; client_max_window_bits=15")
        );
    }

    #[test]
    fn client_window_is_not_stated_unless_the_client_offered_the_parameter() {
        let small = Compression::Dedicated { window_bits: 10 };
        let params = negotiate([&b"permessage-deflate"[..]], small).unwrap();
        assert_eq!(params.client_max_window_bits, 15);
        assert_eq!(params.server_max_window_bits, 10);
        assert_eq!(params.response(), "permessage-deflate");
    }

    #[test]
    fn shared_routes_do_not_take_over_context_and_honour_a_smaller_server_window() {
        let params = negotiate(
            [&b"permessage-deflate; server_max_window_bits=9"[..]],
            Compression::Shared,
        )
        .unwrap();
        assert_eq!(params.server_max_window_bits, 9);
        assert!(!params.takes_shared_frames());
        assert!(negotiate([&b"permessage-deflate"[..]], Compression::Shared)
            .unwrap()
            .takes_shared_frames());
        assert!(!negotiate([&b"permessage-deflate"[..]], DEDICATED)
            .unwrap()
            .takes_shared_frames());
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_is_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_parameter",
        ] {
            assert_eq!(response(bad, DEDICATED), None, "{bad}");
            let with_fallback = format!("{bad}, permessage-deflate; client_no_context_takeover");
            assert_eq!(
                response(&with_fallback, DEDICATED).as_deref(),
                Some("permessage-deflate; client_no_context_takeover"),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_extensions_are_ignored_and_values_may_be_quoted() {
        assert_eq!(
            response(
                "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=\"12\"",
                DEDICATED
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=12")
        );
        assert_eq!(response("x-custom; a=\"b,c\"", DEDICATED), None);
    }

    #[test]
    fn offers_spread_over_several_headers_are_read_in_order() {
        let params = negotiate(
            [
                &b"foo"[..],
                &b"permessage-deflate; server_max_window_bits=12"[..],
            ],
            DEDICATED,
        )
        .unwrap();
        assert_eq!(params.server_max_window_bits, 12);
    }
}
