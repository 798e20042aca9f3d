//! The access log's entries: one per answered HTTP request (a route's answer, an upgrade's 101 or
//! refusal, the engine's own errors). Built only when the access log is on: with it off, a request
//! costs one `Option` check.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::http::Request;

/// What the access log keeps of a request, taken while its head is at hand.
#[derive(Debug)]
pub struct AccessHead {
    /// The connection the request came on.
    pub id: u64,
    pub client: IpAddr,
    /// `GET /path?query HTTP/1.1`; `-` when the request could not be parsed.
    pub request_line: String,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

/// An answered request.
#[derive(Debug)]
pub struct AccessEntry {
    pub head: AccessHead,
    pub status: u16,
    /// Bytes of the response body (0 for a 101).
    pub bytes: usize,
    /// The pattern of the route that answered (None when no route did).
    pub route: Option<Arc<str>>,
    pub time: SystemTime,
}

impl AccessHead {
    /// A request whose head parsed.
    pub(super) fn parsed(id: u64, client: IpAddr, request: &httparse::Request<'_, '_>) -> Self {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        Self {
            id,
            client,
            request_line: format!(
                "{} {} HTTP/1.{}",
                request.method.unwrap_or("-"),
                request.path.unwrap_or("-"),
                request.version.unwrap_or(1)
            ),
            referer: header("referer"),
            user_agent: header("user-agent"),
        }
    }

    /// A request too large or malformed to parse.
    pub(super) fn unparsed(id: u64, client: IpAddr) -> Self {
        Self {
            id,
            client,
            request_line: "-".to_owned(),
            referer: None,
            user_agent: None,
        }
    }

    /// An upgrade request handed to Python (always HTTP/1.1: the handshake checked it).
    pub(super) fn handed_over(request: &Request) -> Self {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.clone())
        };
        Self {
            id: request.connection,
            client: request.client.addr.ip(),
            request_line: format!("{} {} HTTP/1.1", request.method, request.target),
            referer: header("referer"),
            user_agent: header("user-agent"),
        }
    }

    pub(super) fn answered(
        self,
        route: Option<&Arc<str>>,
        status: u16,
        bytes: usize,
    ) -> Box<AccessEntry> {
        Box::new(AccessEntry {
            head: self,
            status,
            bytes,
            route: route.cloned(),
            time: SystemTime::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::MAX_HEADERS;

    #[test]
    fn a_parsed_request_keeps_its_line_referer_and_user_agent() {
        let raw = b"GET /a?b=1 HTTP/1.0\r\nReferer: http://x/\r\nUSER-AGENT: curl/8\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(raw).unwrap();
        let head = AccessHead::parsed(7, "127.0.0.1".parse().unwrap(), &request);
        assert_eq!(head.request_line, "GET /a?b=1 HTTP/1.0");
        assert_eq!(head.referer.as_deref(), Some("http://x/"));
        assert_eq!(head.user_agent.as_deref(), Some("curl/8"));
        let entry = head.answered(None, 404, 12);
        assert_eq!((entry.head.id, entry.status, entry.bytes), (7, 404, 12));
    }
}
