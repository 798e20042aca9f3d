//! A connection before it is a WebSocket: the PROXY header when configured, then HTTP/1.1 requests,
//! one at a time (keep-alive; pipelined requests are answered in order), each served by an HTTP route
//! (answered by Python) or taken to the WebSocket upgrade.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::access::AccessHead;
use super::handshake::{self, Outcome, Rejection, Sender, BAD_REQUEST, TOO_LARGE};
use super::http::{
    format_response, has_token, http_response, read_body, read_head, Answer, BodyError, Framing,
    HeadRead, HttpRoute, Persistence, Request, Routed, MAX_HEADERS,
};
use super::proxy::{read_proxy_header, ClientAddr, Peer};
use super::server::Shared;
use super::{ByteStream, ServerConfig};
use crate::bridge::Event;

const TOO_LARGE_BODY: Rejection = Rejection::new(413, "request body too large\n");
const BAD_BODY: Rejection = Rejection::new(400, "malformed request body\n");
const UNSUPPORTED_CODING: Rejection =
    Rejection::new(501, "only the chunked transfer coding is supported\n");

/// Who is at the other end: the socket's peer, or the client a PROXY header names when the server is
/// configured for one. Returns what was read past the header too. `None`: no valid header in time.
pub(super) async fn read_peer(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    peer: SocketAddr,
    config: &ServerConfig,
) -> Option<(Peer, BytesMut)> {
    let mut buf = BytesMut::with_capacity(1024);
    if !config.proxy_protocol {
        return Some((Peer::direct(peer), buf));
    }
    let header = read_proxy_header(stream, &mut buf, peer, config.max_header_bytes);
    // Not a PROXY header: whatever this is, it did not come through the balancer. Closed unanswered.
    let peer = timeout(config.request_timeout, header).await.ok()?.ok()??;
    Some((peer, buf))
}

/// Serves the connection's HTTP requests (`buf`: bytes already read) until it upgrades (the outcome
/// and the client's address) or ends (`None`).
pub(super) async fn serve_requests(
    stream: &mut impl ByteStream,
    id: u64,
    peer: Peer,
    peer_certificate: Option<&Bytes>,
    mut buf: BytesMut,
    shared: &Shared,
) -> Option<(Outcome, ClientAddr)> {
    let config = &shared.config;
    let unparsed = || AccessHead::unparsed(id, peer.addr.ip());
    loop {
        let head = timeout(
            config.request_timeout,
            read_head(stream, &mut buf, config.max_header_bytes),
        );
        let head_len = match head.await.ok()?.ok()? {
            HeadRead::Closed => return None,
            HeadRead::TooLarge => return refuse(stream, shared, unparsed, None, &TOO_LARGE).await,
            HeadRead::Malformed => {
                return refuse(stream, shared, unparsed, None, &BAD_REQUEST).await
            }
            HeadRead::Complete(len) => len,
        };
        let head = buf.split_to(head_len).freeze();
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(&head), Ok(httparse::Status::Complete(_))) {
            return refuse(stream, shared, unparsed, None, &BAD_REQUEST).await;
        }
        let client = config.trust.resolve(peer, request.headers);
        let sender = Sender {
            id,
            client,
            certificate: peer_certificate,
        };
        let parsed = || AccessHead::parsed(id, client.addr.ip(), &request);
        let target = request.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let method = request.method.unwrap_or("GET");
        let ws_route = shared.routes.find(path).is_some();
        let routed = if ws_route && is_upgrade(&request) {
            None
        } else {
            match shared.http.route(path, method) {
                // A GET there is meant to upgrade: 426 says how.
                Some(Routed::NotAllowed { .. }) if ws_route && method == "GET" => None,
                routed => routed,
            }
        };
        let (route, params) = match routed {
            // WebSocket routes, and the 404/426 of paths without an HTTP route.
            None => {
                let accepted = match handshake::evaluate(&request, &shared.routes) {
                    Ok(accepted) => accepted,
                    Err(rejection) => {
                        return refuse(stream, shared, parsed, None, &rejection).await
                    }
                };
                let outcome =
                    handshake::upgrade(stream, accepted, &request, sender, buf, &shared.routes)
                        .await
                        .ok()?;
                if let Outcome::Upgraded { route, .. } = &outcome {
                    shared.log_access(parsed, Some(&route.pattern), 101, 0);
                }
                return Some((outcome, client));
            }
            Some(Routed::NotAllowed { allow }) => {
                let body = b"method not allowed on this path\n";
                shared.log_access(parsed, None, 405, body.len());
                let answer = http_response(405, &[("Allow", allow.as_str())], body);
                return finish(stream, &answer).await;
            }
            Some(Routed::Found { route, params }) => (route, params),
        };
        let persistence =
            serve_http(stream, &mut buf, &request, route, params, sender, shared).await?;
        if persistence == Persistence::Close {
            let _ = stream.shutdown().await;
            return None;
        }
        if buf.is_empty() {
            // The body taken from it may have grown the allocation: an idle kept-alive connection
            // does not keep that.
            buf = BytesMut::new();
        }
    }
}

/// Reads the body of a request to an HTTP route, has Python answer it and writes the answer. `None`:
/// the connection is done (the body was refused, or the client left).
async fn serve_http(
    stream: &mut impl ByteStream,
    buf: &mut BytesMut,
    request: &httparse::Request<'_, '_>,
    route: HttpRoute,
    params: Vec<(String, String)>,
    sender: Sender<'_>,
    shared: &Shared,
) -> Option<Persistence> {
    let config = &shared.config;
    let access = || AccessHead::parsed(sender.id, sender.client.addr.ip(), request);
    let framing = match Framing::of(request.headers) {
        Ok(framing) => framing,
        Err(error) => {
            let rejection = body_rejection(error)?;
            return refuse(stream, shared, access, Some(&route.pattern), &rejection).await;
        }
    };
    if matches!(framing, Framing::Length(n) if n > config.max_body_length as u64) {
        return refuse(
            stream,
            shared,
            access,
            Some(&route.pattern),
            &TOO_LARGE_BODY,
        )
        .await;
    }
    if framing != Framing::Length(0) && expects_continue(request) {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    let body = read_body(stream, buf, framing, config.max_body_length);
    let body = match timeout(config.request_timeout, body).await.ok()?.ok()? {
        Ok(body) => body,
        Err(error) => {
            let rejection = body_rejection(error)?;
            return refuse(stream, shared, access, Some(&route.pattern), &rejection).await;
        }
    };
    let persistence = persistence(request);
    let with_body = request.method != Some("HEAD");
    let access = shared.config.access_log.then(access);
    let request = Box::new(Request::new(
        sender.id,
        request,
        params,
        sender.client,
        body,
        sender.certificate.cloned(),
    ));
    let (answer, persistence) =
        answer(route.index, route.timeout, request, persistence, shared).await;
    if let Some(access) = access {
        let bytes = if with_body { answer.body.len() } else { 0 };
        shared.log_access(|| access, Some(&route.pattern), answer.status, bytes);
    }
    let bytes = format_response(
        answer.status,
        &answer.headers,
        &answer.body,
        persistence,
        with_body,
    );
    stream.write_all(&bytes).await.ok()?;
    Some(persistence)
}

/// Hands the request to Python and waits for its answer (500 if the handler failed, 503 if it did
/// not answer in time; both end the connection), and what becomes of the connection.
async fn answer(
    route: usize,
    deadline: std::time::Duration,
    request: Box<Request>,
    persistence: Persistence,
    shared: &Shared,
) -> (Answer, Persistence) {
    let (reply, answer) = oneshot::channel();
    shared.events.push(Event::Http {
        route,
        request,
        reply,
    });
    match timeout(deadline, answer).await {
        Ok(Ok(answer)) if wants_close(&answer) => (answer, Persistence::Close),
        Ok(Ok(answer)) => (answer, persistence),
        Ok(Err(_dropped)) => (
            failure(
                500,
                "the request handler failed or finished without answering\n",
            ),
            Persistence::Close,
        ),
        Err(_elapsed) => (
            failure(503, "the request handler did not answer in time\n"),
            Persistence::Close,
        ),
    }
}

fn failure(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

/// Answers with `rejection` (logged in the access log, when it is on) and ends the connection.
async fn refuse<T>(
    stream: &mut impl ByteStream,
    shared: &Shared,
    access: impl FnOnce() -> AccessHead,
    route: Option<&Arc<str>>,
    rejection: &Rejection,
) -> Option<T> {
    shared.log_access(access, route, rejection.status, rejection.body.len());
    finish(stream, &rejection.to_bytes()).await
}

/// Writes a response that ends the connection.
async fn finish<T>(stream: &mut impl ByteStream, response: &[u8]) -> Option<T> {
    if stream.write_all(response).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    None
}

/// The answer to a body that cannot be read; `None` when the client left.
fn body_rejection(error: BodyError) -> Option<Rejection> {
    match error {
        BodyError::TooLarge => Some(TOO_LARGE_BODY),
        BodyError::Malformed => Some(BAD_BODY),
        BodyError::UnsupportedCoding => Some(UNSUPPORTED_CODING),
        BodyError::Closed => None,
    }
}

/// A WebSocket upgrade request (whether valid is for the handshake to say).
pub(super) fn is_upgrade(request: &httparse::Request<'_, '_>) -> bool {
    request.method == Some("GET") && has_token(request, "upgrade", "websocket")
}

pub(super) fn expects_continue(request: &httparse::Request<'_, '_>) -> bool {
    request.version == Some(1) && has_token(request, "expect", "100-continue")
}

/// HTTP/1.1 keeps the connection unless asked to close; HTTP/1.0 closes unless asked to keep it.
pub(super) fn persistence(request: &httparse::Request<'_, '_>) -> Persistence {
    if request.version == Some(1) {
        if has_token(request, "connection", "close") {
            Persistence::Close
        } else {
            Persistence::KeepAlive
        }
    } else if has_token(request, "connection", "keep-alive") {
        Persistence::KeepAliveAnnounced
    } else {
        Persistence::Close
    }
}

/// The handler set `Connection: close`.
fn wants_close(answer: &Answer) -> bool {
    answer.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_request<T>(raw: &str, check: impl FnOnce(&httparse::Request<'_, '_>) -> T) -> T {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw.as_bytes()).unwrap().is_complete());
        check(&request)
    }

    #[test]
    fn http_1_1_keeps_alive_unless_asked_to_close_and_1_0_the_other_way_round() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", Persistence::KeepAlive),
            (
                "GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
                Persistence::Close,
            ),
            ("GET / HTTP/1.0\r\n\r\n", Persistence::Close),
            (
                "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                Persistence::KeepAliveAnnounced,
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(with_request(raw, persistence), expected, "{raw:?}");
        }
    }

    #[test]
    fn upgrades_and_continue_expectations_are_recognised() {
        let upgrade = "GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(with_request(upgrade, is_upgrade));
        assert!(!with_request(&upgrade.replace("GET", "POST"), is_upgrade));
        assert!(!with_request(
            "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            is_upgrade
        ));
        let expect = "POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n";
        assert!(with_request(expect, expects_continue));
        assert!(!with_request(
            &expect.replace("1.1", "1.0"),
            expects_continue
        ));
    }

    #[test]
    fn a_handler_closes_with_a_connection_header() {
        let answer = |headers: &[(&str, &str)]| Answer {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        };
        assert!(wants_close(&answer(&[("connection", "Close")])));
        assert!(!wants_close(&answer(&[("X-Connection", "close")])));
        assert!(!wants_close(&answer(&[])));
    }
}
