use std::sync::Arc;
use std::time::Duration;

use super::proxy::Trust;
use super::tls::Tls;
use crate::protocol::deflate::Compression;

/// What the engine needs to know of a WebSocket route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Index of the route in the server's route list (the Python side keeps the handler there).
    pub index: usize,
    /// The route's pattern, as registered (for `ws.route` and the logs).
    pub pattern: Arc<str>,
    /// Largest message accepted, after reassembly; larger closes with 1009.
    pub max_payload_length: usize,
    /// Close a connection silent for this long (None: never).
    pub idle_timeout: Option<Duration>,
    /// Close a connection this old with 1001 (None: never).
    pub max_lifetime: Option<Duration>,
    /// Ping a silent connection halfway to its idle deadline, so live clients answer and stay.
    pub send_pings_automatically: bool,
    /// Above this many bytes waiting to be written, sends and publishes to the connection are refused.
    pub max_backpressure: usize,
    /// Close (1008) a connection that reaches `max_backpressure` instead of dropping messages.
    pub close_on_backpressure_limit: bool,
    /// Upgrades to this route are decided by Python (an upgrade handler or middlewares).
    pub intercept: bool,
    /// How long Python has to decide an intercepted upgrade; then the client gets 503.
    pub upgrade_timeout: Duration,
    /// Origins allowed to upgrade (`*` for any); a request whose `Origin` header is not among them gets
    /// 403. None: no check. Requests without `Origin` (not from a browser) are not checked.
    pub origins: Option<Vec<String>>,
    /// permessage-deflate: whether it is offered, and with what context and window.
    pub compression: Compression,
}

#[cfg(test)]
impl RouteConfig {
    /// A plain route for unit tests: 1 KiB messages, automatic pings, 1 MiB of backpressure, no timeouts.
    pub(crate) fn for_tests() -> Self {
        Self {
            index: 0,
            pattern: Arc::from("/ws"),
            max_payload_length: 1024,
            idle_timeout: None,
            max_lifetime: None,
            send_pings_automatically: true,
            max_backpressure: 1 << 20,
            close_on_backpressure_limit: false,
            intercept: false,
            upgrade_timeout: Duration::from_secs(10),
            origins: None,
            compression: Compression::Disabled,
        }
    }
}

/// Server-wide limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// A client must send its whole request head within this time.
    pub request_timeout: Duration,
    /// After sending a close frame, how long to wait for the client's before dropping the socket.
    pub close_timeout: Duration,
    /// Largest request body accepted by HTTP routes; larger gets 413.
    pub max_body_length: usize,
    /// Which peers may name the client in a forwarding header.
    pub trust: Trust,
    /// Connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Serve TLS (after the PROXY header, if any).
    pub tls: Option<Arc<Tls>>,
    /// Hand Python an access-log entry for every HTTP answer (routes, upgrades, refusals).
    pub access_log: bool,
    /// Hand Python the connection events only worth a debug log (failed TLS handshakes).
    pub log_connections: bool,
    /// Read plain, uncompressed connections on the asyncio thread (`net/inline.rs`). Off here: only the
    /// Python `Server`, whose loop reads them, turns it on (its default).
    pub inline_reads: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_body_length: 1024 * 1024,
            trust: Trust::default(),
            proxy_protocol: false,
            tls: None,
            access_log: false,
            log_connections: false,
            inline_reads: false,
        }
    }
}
