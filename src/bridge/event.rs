use std::sync::Arc;

use bytes::Bytes;

use tokio::sync::oneshot;

use crate::net::{AccessEntry, Answer, ConnHandle, Decision, Request};

/// Something that happened on a connection, for the Python side. Plain Rust data: the I/O threads never
/// build or drop Python objects.
#[derive(Debug)]
pub enum Event {
    /// A valid upgrade whose acceptance Python decides (the route has an upgrade handler or middlewares).
    Upgrade {
        id: u64,
        route: usize,
        request: Box<Request>,
        reply: oneshot::Sender<Decision>,
    },
    /// A request to a plain HTTP route; `route` indexes the server's HTTP handler list.
    Http {
        route: usize,
        request: Box<Request>,
        reply: oneshot::Sender<Answer>,
    },
    /// An intercepted upgrade ended without a connection (rejected, timed out, or the client left).
    UpgradeEnded {
        id: u64,
    },
    /// The handshake is done; `route` indexes the server's route list.
    Open {
        conn: Arc<ConnHandle>,
        route: usize,
    },
    Message {
        id: u64,
        data: Bytes,
        binary: bool,
    },
    Ping {
        id: u64,
        data: Bytes,
    },
    Pong {
        id: u64,
        data: Bytes,
    },
    /// The outbound queue fell back below `max_backpressure` after a refusal.
    Drain {
        id: u64,
    },
    /// A message for this connection was refused over `max_backpressure`.
    Dropped {
        id: u64,
        data: Bytes,
        binary: bool,
    },
    /// The engine needs this connection closed (the peer sent a close, or broke the protocol). It goes
    /// through the Python side so that replies to the events before it are sent before the close frame.
    Shutdown {
        conn: Arc<ConnHandle>,
        code: u16,
        reason: &'static str,
    },
    /// The connection is gone; the last event of `id`.
    Close {
        id: u64,
        code: u16,
        reason: Bytes,
    },
    /// A request was answered (sent only when the access log is on).
    Access(Box<AccessEntry>),
    /// A client failed the TLS handshake (sent only when connection events are logged).
    TlsFailed {
        id: u64,
        peer: std::net::IpAddr,
        detail: String,
    },
    /// The pub/sub broker became unreachable, or reachable again after that was reported.
    Broker {
        connected: bool,
        detail: String,
    },
}

impl Event {
    /// What the event counts against the read-side bounds (see `InboundBacklog`): its payload and a
    /// fixed overhead for received messages and control frames, nothing for the rest.
    pub fn cost(&self) -> usize {
        match self {
            Event::Message { data, .. } | Event::Ping { data, .. } | Event::Pong { data, .. } => {
                data.len() + super::EVENT_OVERHEAD
            }
            _ => 0,
        }
    }
}
