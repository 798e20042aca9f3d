//! The HTTP/1.1 upgrade (RFC 6455 section 4.2): check an upgrade request, answer 101 or an error.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tungstenite::handshake::derive_accept_key;

use super::http::{has_token, http_response, Request};
use super::proxy::ClientAddr;
use super::upgrade::switching_protocols;
use super::RouteConfig;
use crate::protocol::deflate::{negotiate, DeflateParams};
use crate::routing::RouteTable;

/// An HTTP answer that ends the connection instead of upgrading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    pub status: u16,
    pub body: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
}

impl Rejection {
    pub(super) const fn new(status: u16, body: &'static str) -> Self {
        Self {
            status,
            body,
            headers: &[],
        }
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        http_response(self.status, self.headers, self.body.as_bytes())
    }
}

pub(super) const TOO_LARGE: Rejection = Rejection::new(431, "request head too large\n");
pub(super) const BAD_REQUEST: Rejection = Rejection::new(400, "malformed HTTP request\n");

/// An upgrade that passed every check.
#[derive(Debug)]
pub(super) struct Accepted {
    pub route: Arc<RouteConfig>,
    pub accept_key: String,
    pub deflate: Option<DeflateParams>,
}

/// How the request head ended.
pub(super) enum Outcome {
    /// The 101 is written: the connection is a WebSocket. Holds the bytes the client sent after its head.
    Upgraded {
        route: Arc<RouteConfig>,
        deflate: Option<DeflateParams>,
        early: BytesMut,
    },
    /// A valid upgrade to a route whose upgrades Python decides: nothing is written yet.
    Intercepted {
        route: Arc<RouteConfig>,
        accept_key: String,
        deflate: Option<DeflateParams>,
        request: Box<Request>,
        early: BytesMut,
    },
}

/// Who sent a request: the connection's id, the client's address and, over TLS, the certificate it
/// presented.
#[derive(Clone, Copy)]
pub(super) struct Sender<'a> {
    pub id: u64,
    pub client: ClientAddr,
    pub certificate: Option<&'a Bytes>,
}

/// Upgrades an accepted request (writes the 101), or hands the decision to Python when its route
/// intercepts upgrades; `early` holds the bytes the client sent after the request head.
pub(super) async fn upgrade(
    stream: &mut (impl AsyncWrite + Unpin),
    accepted: Accepted,
    request: &httparse::Request<'_, '_>,
    sender: Sender<'_>,
    early: BytesMut,
    routes: &RouteTable<Arc<RouteConfig>>,
) -> io::Result<Outcome> {
    if accepted.route.intercept {
        let target = request.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let params = routes
            .find(path)
            .map(|found| {
                found
                    .params
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
            })
            .unwrap_or_default();
        let request = Box::new(Request::new(
            sender.id,
            request,
            params,
            sender.client,
            Bytes::new(),
            sender.certificate.cloned(),
        ));
        return Ok(Outcome::Intercepted {
            route: accepted.route,
            accept_key: accepted.accept_key,
            deflate: accepted.deflate,
            request,
            early,
        });
    }
    stream
        .write_all(&switching_protocols(
            &accepted.accept_key,
            None,
            accepted.deflate.as_ref(),
            &[],
        ))
        .await?;
    Ok(Outcome::Upgraded {
        route: accepted.route,
        deflate: accepted.deflate,
        early,
    })
}

/// The checks of a parsed request against the route table, without I/O.
pub(super) fn evaluate(
    request: &httparse::Request<'_, '_>,
    routes: &RouteTable<Arc<RouteConfig>>,
) -> Result<Accepted, Rejection> {
    let target = request.path.unwrap_or("/");
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let Some(found) = routes.find(path) else {
        return Err(Rejection::new(404, "no route for this path\n"));
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let is_upgrade = request.method == Some("GET")
        && has_token(request, "upgrade", "websocket")
        && has_token(request, "connection", "upgrade");
    if !is_upgrade {
        return Err(Rejection {
            headers: &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            ..Rejection::new(426, "this route only accepts WebSocket upgrades\n")
        });
    }
    if request.version != Some(1) {
        return Err(Rejection::new(400, "a WebSocket upgrade needs HTTP/1.1\n"));
    }
    if header("host").is_none() {
        return Err(Rejection::new(400, "missing Host header\n"));
    }
    if header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(Rejection {
            headers: &[("Sec-WebSocket-Version", "13")],
            ..Rejection::new(400, "unsupported Sec-WebSocket-Version (13 is supported)\n")
        });
    }
    let key = header("sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .unwrap_or_default();
    if !is_valid_key(key) {
        return Err(Rejection::new(
            400,
            "missing or invalid Sec-WebSocket-Key\n",
        ));
    }
    if let (Some(allowed), Some(origin)) = (&found.value.origins, header("origin")) {
        let origin = String::from_utf8_lossy(origin.trim_ascii());
        if !allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(&origin))
        {
            return Err(Rejection::new(403, "origin not allowed\n"));
        }
    }
    let offers = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| h.value);
    Ok(Accepted {
        route: Arc::clone(found.value),
        accept_key: derive_accept_key(key),
        deflate: negotiate(offers, found.value.compression),
    })
}

/// A key is the base64 of 16 bytes: 22 base64 characters and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::MAX_HEADERS;

    fn routes() -> RouteTable<Arc<RouteConfig>> {
        let mut table = RouteTable::new();
        table
            .insert("/ws", Arc::new(RouteConfig::for_tests()))
            .unwrap();
        table
    }

    fn check(raw: &str) -> Result<Accepted, Rejection> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw.as_bytes()).unwrap().is_complete());
        evaluate(&request, &routes())
    }

    const GOOD: &str = "GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
                        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn accepts_a_valid_upgrade_with_the_rfc_accept_key() {
        let accepted = check(GOOD).unwrap();
        assert_eq!(accepted.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accepted.route.index, 0);
    }

    #[test]
    fn unknown_path_is_404() {
        assert_eq!(
            check(&GOOD.replace("/ws?x=1", "/nope")).unwrap_err().status,
            404
        );
    }

    #[test]
    fn plain_request_to_a_ws_route_is_426() {
        let rejection = check("GET /ws HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err();
        assert_eq!(rejection.status, 426);
        assert!(rejection.headers.contains(&("Upgrade", "websocket")));
        assert_eq!(check(&GOOD.replace("GET", "POST")).unwrap_err().status, 426);
    }

    #[test]
    fn http_1_0_and_a_missing_host_are_400() {
        let rejection = check(&GOOD.replace("HTTP/1.1", "HTTP/1.0")).unwrap_err();
        assert_eq!(
            (rejection.status, rejection.body),
            (400, "a WebSocket upgrade needs HTTP/1.1\n")
        );
        let rejection = check(&GOOD.replace("Host: a\r\n", "")).unwrap_err();
        assert_eq!(
            (rejection.status, rejection.body),
            (400, "missing Host header\n")
        );
    }

    #[test]
    fn origins_are_checked_when_the_route_lists_them() {
        let mut table = RouteTable::new();
        let config = RouteConfig {
            origins: Some(vec!["https://app.example".into()]),
            ..RouteConfig::for_tests()
        };
        table.insert("/ws", Arc::new(config)).unwrap();
        let check_origin = |origin: &str| {
            let raw = GOOD.replace("Host: a\r\n", &format!("Host: a\r\nOrigin: {origin}\r\n"));
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            request.parse(raw.as_bytes()).unwrap();
            evaluate(&request, &table).map(|_| ()).map_err(|r| r.status)
        };
        assert_eq!(check_origin("https://app.example"), Ok(()));
        assert_eq!(check_origin("https://evil.example"), Err(403));
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(GOOD.as_bytes()).unwrap();
        assert!(
            evaluate(&request, &table).is_ok(),
            "no Origin header: not a browser, not checked"
        );
    }

    #[test]
    fn bad_version_and_key_are_400() {
        let rejection = check(&GOOD.replace("Version: 13", "Version: 8")).unwrap_err();
        assert_eq!(rejection.status, 400);
        assert_eq!(rejection.headers, &[("Sec-WebSocket-Version", "13")]);
        assert_eq!(
            check(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn rejection_is_a_complete_http_response() {
        let text = String::from_utf8(TOO_LARGE.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "));
        assert!(text.contains("Content-Length: 23\r\n"));
    }
}
