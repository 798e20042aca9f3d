//! tokio: the listener, the HTTP upgrade, one task per connection, its outbound queue and timers.

mod config;
mod conn_handle;
mod conn_id;
mod connection;
mod handshake;
mod server;
mod upgrade;

pub use config::{RouteConfig, ServerConfig};
pub use conn_handle::{ConnHandle, Fragment, Publication, Queued};
pub use conn_id::ConnIdMap;
pub use server::NetServer;
pub use upgrade::{Decision, UpgradeRequest};
