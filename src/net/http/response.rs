//! Formatting HTTP/1.1 responses.

/// What happens to the connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `Connection: close`, then the connection ends.
    Close,
    /// HTTP/1.1's default: no header needed.
    KeepAlive,
    /// An HTTP/1.0 client asked for keep-alive: it must be told (`Connection: keep-alive`).
    KeepAliveAnnounced,
}

/// Formats a response. `Content-Length` and `Connection` are the server's to set: the handler's
/// headers of those names (and `Transfer-Encoding`) are left out. Without `with_body` (HEAD), the
/// length of the body is announced but the body is not sent; 204 and 304 never have one.
pub fn format_response<N: AsRef<str>, V: AsRef<str>>(
    status: u16,
    headers: &[(N, V)],
    body: &[u8],
    persistence: Persistence,
    with_body: bool,
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let bodiless = matches!(status, 204 | 304);
    let has = |name: &str| {
        headers
            .iter()
            .any(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
    };
    if !bodiless && !has("content-type") {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (name, value) in headers {
        let name = name.as_ref();
        if ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        head.push_str(&format!("{name}: {}\r\n", value.as_ref()));
    }
    if !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str(match persistence {
        Persistence::Close => "Connection: close\r\n\r\n",
        Persistence::KeepAlive => "\r\n",
        Persistence::KeepAliveAnnounced => "Connection: keep-alive\r\n\r\n",
    });
    let mut out = head.into_bytes();
    if with_body && !bodiless {
        out.extend_from_slice(body);
    }
    out
}

/// A whole response after which the connection ends.
pub fn http_response<N: AsRef<str>, V: AsRef<str>>(
    status: u16,
    headers: &[(N, V)],
    body: &[u8],
) -> Vec<u8> {
    format_response(status, headers, body, Persistence::Close, true)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn rejection_has_length_and_default_type() {
        let text = text(http_response(401, &[("X-Reason", "token")], b"no"));
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("X-Reason: token\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\nno"));
        let json = http_response(400, &[("Content-Type", "application/json")], b"{}");
        assert!(!String::from_utf8(json).unwrap().contains("text/plain"));
    }

    #[test]
    fn keep_alive_and_head() {
        let kept = text(format_response::<&str, &str>(
            200,
            &[],
            b"hi",
            Persistence::KeepAlive,
            true,
        ));
        assert!(kept.ends_with("Content-Length: 2\r\n\r\nhi"), "{kept}");
        let announced = text(format_response::<&str, &str>(
            200,
            &[],
            b"hi",
            Persistence::KeepAliveAnnounced,
            false,
        ));
        assert!(
            announced.ends_with("Content-Length: 2\r\nConnection: keep-alive\r\n\r\n"),
            "{announced}"
        );
    }

    #[test]
    fn framing_headers_are_the_servers() {
        let headers = [
            ("Content-Length", "99"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
        ];
        let out = text(format_response(
            200,
            &headers,
            b"abc",
            Persistence::KeepAlive,
            true,
        ));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nabc");
        let empty = text(format_response::<&str, &str>(
            204,
            &[],
            b"ignored",
            Persistence::KeepAlive,
            true,
        ));
        assert_eq!(empty, "HTTP/1.1 204 No Content\r\n\r\n");
    }
}
