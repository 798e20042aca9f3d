//! The PyO3 face: thin classes over the engine. No protocol logic lives here.

mod awaitable;
mod certificate;
mod cork;
mod engine;
mod gil_cell;
mod listeners;
mod payload;
mod publish;
mod request;
mod tls;
mod upgrade;
mod websocket;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::routing::{join_prefix as join, RouteTable};

/// An `OSError` as Python makes them: `errno` set (so Python picks the subclass, e.g.
/// `FileNotFoundError`) and its own wording, "[Errno 98] CONTEXT: Address already in use", with
/// `filename` when given.
fn os_error(error: &std::io::Error, context: &str, filename: Option<&str>) -> PyErr {
    let text = error.to_string();
    let reason = text.split(" (os error").next().unwrap_or(&text);
    let message = if context.is_empty() {
        reason.to_owned()
    } else {
        format!("{context}: {reason}")
    };
    match (error.raw_os_error(), filename) {
        (Some(errno), Some(file)) => PyOSError::new_err((errno, message, file.to_owned())),
        (Some(errno), None) => PyOSError::new_err((errno, message)),
        (None, _) => PyOSError::new_err(message),
    }
}

/// Logs `error` on the `hyperws` logger ("error while DOING"), with its traceback. Should logging
/// itself fail, the error goes to `sys.unraisablehook` instead: never raised, never lost.
fn log_error(py: Python<'_>, doing: &str, error: PyErr, object: Option<&Bound<'_, PyAny>>) {
    let logged = py.import(intern!(py, "logging")).and_then(|logging| {
        let logger = logging.call_method1(intern!(py, "getLogger"), ("hyperws",))?;
        let keywords = PyDict::new(py);
        keywords.set_item("exc_info", error.value(py))?;
        logger.call_method(
            intern!(py, "error"),
            ("error while %s", doing),
            Some(&keywords),
        )
    });
    if logged.is_err() {
        error.write_unraisable(py, object);
    }
}

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

// The GIL guards the state of `Websocket` and the engine's socket map (`gil_cell.rs`): declared, so that a
// free-threaded Python enables it for this module.
#[pymodule(gil_used = true)]
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
