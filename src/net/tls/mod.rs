//! TLS (rustls): certificates from PEM files, server names (SNI), client certificates, reload.

mod config;
mod error;
mod files;
mod names;
mod stream;

pub use config::{ClientAuth, ClientCa, Tls};
pub use error::{Problem, TlsError};
pub use files::KeyPairFiles;
pub(crate) use stream::TlsStream;
