//! Upgrades decided by Python: the request as plain data for the upgrade handler, and its decision.

use std::net::SocketAddr;

use crate::protocol::deflate::DeflateParams;

/// An upgrade request waiting for the app's upgrade handler.
#[derive(Debug)]
pub struct UpgradeRequest {
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// Header names lower-cased, values decoded as UTF-8 (lossy), in order.
    pub headers: Vec<(String, String)>,
    /// The route pattern's parameters, percent-decoded, in pattern order.
    pub params: Vec<(String, String)>,
    pub peer: SocketAddr,
}

/// What the upgrade handler decided.
#[derive(Debug)]
pub enum Decision {
    /// Answer 101, with the chosen subprotocol and extra headers.
    Accept {
        protocol: Option<String>,
        headers: Vec<(String, String)>,
    },
    /// Answer with this HTTP response and close.
    Reject {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// Formats a whole HTTP/1.1 response that ends the connection.
pub fn http_response<N: AsRef<str>, V: AsRef<str>>(
    status: u16,
    headers: &[(N, V)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let has = |name: &str| {
        headers
            .iter()
            .any(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
    };
    if !has("content-type") {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{}: {}\r\n", name.as_ref(), value.as_ref()));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The 101 answer, with the chosen subprotocol, the negotiated compression and extra headers.
pub fn switching_protocols(
    accept_key: &str,
    protocol: Option<&str>,
    deflate: Option<&DeflateParams>,
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n"
    );
    if let Some(protocol) = protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    if let Some(deflate) = deflate {
        head.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            deflate.response()
        ));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_has_length_and_default_type() {
        let bytes = http_response(401, &[("X-Reason", "token")], b"no");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("X-Reason: token\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\nno"));
        let json = http_response(400, &[("Content-Type", "application/json")], b"{}");
        assert!(!String::from_utf8(json).unwrap().contains("text/plain"));
    }

    #[test]
    fn switching_protocols_names_the_chosen_subprotocol() {
        let text = String::from_utf8(switching_protocols(
            "k",
            Some("chat"),
            None,
            &[("X-A".into(), "1".into())],
        ))
        .unwrap();
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\nX-A: 1\r\n\r\n"));
        let plain = String::from_utf8(switching_protocols("k", None, None, &[])).unwrap();
        assert!(!plain.contains("Sec-WebSocket-Protocol"));
    }
}
