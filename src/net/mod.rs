//! tokio: the listener, HTTP requests and the upgrade, one task per connection, its outbound queue and
//! timers.

mod config;
mod conn_handle;
mod conn_id;
mod connection;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod http;
mod proxy;
mod server;
mod upgrade;

pub use config::{RouteConfig, ServerConfig};
pub use conn_handle::{ConnHandle, Fragment, Publication, Queued, RunQueued};
pub use conn_id::ConnIdMap;
pub use http::{Answer, HttpRoute, HttpRoutes, Request};
pub use proxy::{ForwardHeader, Network, Trust, TrustProxy};
pub use server::{Bind, NetServer};
pub use upgrade::Decision;
