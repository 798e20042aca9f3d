//! The net layer's parsers of client bytes, without sockets, for the fuzz targets in `fuzz/`. Not an
//! API: nothing else uses it.

use std::sync::Arc;

use super::front::{expects_continue, is_upgrade, persistence};
use super::handshake::evaluate;
use super::http::{Persistence, Request, MAX_HEADERS};
use super::proxy::{ClientAddr, Peer};
use super::upgrade::switching_protocols;
use super::{ForwardHeader, Network, RouteConfig, Trust, TrustProxy};
use crate::protocol::deflate::Compression;
use crate::routing::RouteTable;

pub use super::http::chunked::{ChunkError, ChunkedDecoder};
pub use super::http::{parse_head, BodyError, Framing, HeadRead};
pub use super::proxy::forwarded::{forwarded, x_forwarded_for};
pub use super::proxy::protocol::{parse as parse_proxy_header, Parsed as ProxyHeader};

/// The socket peer every head comes from: a trusted proxy under each `trust_proxy` setting used.
pub const PEER: &str = "10.0.0.1:5000";

/// What the server makes of one whole request head before any I/O (`net::front`, `net::handshake`).
#[derive(Debug)]
pub struct ServedHead {
    /// The client as resolved under two hops of `X-Forwarded-For`, one hop of `Forwarded`, and the
    /// network 10.0.0.0/8 with `X-Forwarded-For`.
    pub clients: [ClientAddr; 3],
    pub framing: Result<Framing, BodyError>,
    pub is_upgrade: bool,
    pub expects_continue: bool,
    pub persistence: Persistence,
    /// What the upgrade writes: the 101, or the rejection.
    pub upgrade_response: Vec<u8>,
    /// The request as handed to Python.
    pub request: Request,
}

/// `None` when `head` does not start with a whole request head.
pub fn serve_head(head: &[u8]) -> Option<ServedHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let peer = Peer::direct(PEER.parse().expect("an address"));
    let clients = trusts().map(|trust| trust.resolve(peer, request.headers));
    let upgrade_response = match evaluate(&request, &routes()) {
        Ok(accepted) => {
            switching_protocols(&accepted.accept_key, None, accepted.deflate.as_ref(), &[])
        }
        Err(rejection) => rejection.to_bytes(),
    };
    Some(ServedHead {
        clients,
        framing: Framing::of(request.headers),
        is_upgrade: is_upgrade(&request),
        expects_continue: expects_continue(&request),
        persistence: persistence(&request),
        upgrade_response,
        request: Request::new(
            1,
            &request,
            Vec::new(),
            clients[0],
            bytes::Bytes::new(),
            None,
        ),
    })
}

fn trusts() -> [Trust; 3] {
    [
        Trust {
            proxies: TrustProxy::Hops(2),
            header: ForwardHeader::XForwardedFor,
        },
        Trust {
            proxies: TrustProxy::Hops(1),
            header: ForwardHeader::Forwarded,
        },
        Trust {
            proxies: TrustProxy::Networks(vec![Network::parse("10.0.0.0/8").expect("a network")]),
            header: ForwardHeader::XForwardedFor,
        },
    ]
}

/// A route with a room parameter, an origin list and a dedicated 4 KiB window, and one that compresses
/// shared frames.
fn routes() -> RouteTable<Arc<RouteConfig>> {
    let route = |index, origins, compression| RouteConfig {
        index,
        pattern: Arc::from("/ws"),
        max_payload_length: 1024,
        idle_timeout: None,
        max_lifetime: None,
        send_pings_automatically: false,
        max_backpressure: 1024,
        close_on_backpressure_limit: false,
        intercept: false,
        upgrade_timeout: std::time::Duration::from_secs(1),
        origins,
        compression,
    };
    let mut table = RouteTable::new();
    let room = route(
        0,
        Some(vec!["https://app.example".to_owned()]),
        Compression::Dedicated { window_bits: 12 },
    );
    table
        .insert("/ws/:room", Arc::new(room))
        .expect("a valid pattern");
    table
        .insert("/shared", Arc::new(route(1, None, Compression::Shared)))
        .expect("a valid pattern");
    table
}
