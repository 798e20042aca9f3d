//! tokio: the listener, HTTP requests and the upgrade, one task per connection, its outbound queue and
//! timers.

mod access;
mod config;
mod conn_handle;
mod conn_id;
mod connection;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod http;
mod inline;
mod lazy_tcp;
mod proxy;
mod read_side;
mod server;
pub mod tls;
mod transport;
mod upgrade;

pub use access::{AccessEntry, AccessHead};
pub use config::{RouteConfig, ServerConfig};

/// What the HTTP phase of a connection reads from and writes to: the socket, or TLS over it.
pub(crate) trait ByteStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream for T {}
pub use conn_handle::{ClientDetails, ConnHandle, Fragment, Publication, Queued, RunQueued};
pub use conn_id::ConnIdMap;
pub use http::{Answer, HttpRoute, HttpRoutes, Request};
pub use inline::InlineReads;
pub use proxy::{ForwardHeader, Network, Trust, TrustProxy};
pub use server::{Bind, NetServer};
pub use upgrade::Decision;
