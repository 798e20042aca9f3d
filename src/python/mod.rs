//! The PyO3 face: thin classes over the engine. No protocol logic lives here.

mod awaitable;
mod certificate;
mod cork;
mod engine;
mod listeners;
mod payload;
mod publish;
mod request;
mod tls;
mod upgrade;
mod websocket;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::routing::{join_prefix as join, RouteTable};

/// Raises ValueError when `pattern` is not a valid route pattern.
#[pyfunction]
fn check_pattern(pattern: &str) -> PyResult<()> {
    RouteTable::new()
        .insert(pattern, ())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Joins a router's mount prefix and a route pattern.
#[pyfunction]
fn join_prefix(prefix: &str, pattern: &str) -> String {
    join(prefix, pattern)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Engine>()?;
    m.add_class::<websocket::Websocket>()?;
    m.add_class::<request::PendingHead>()?;
    m.add_class::<upgrade::PendingUpgrade>()?;
    m.add_class::<request::PendingRequest>()?;
    m.add_class::<tls::TlsConfig>()?;
    m.add_class::<certificate::PeerCertificate>()?;
    m.add_function(wrap_pyfunction!(check_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(join_prefix, m)?)?;
    Ok(())
}
