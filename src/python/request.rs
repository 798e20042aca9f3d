//! `PendingRequest`: a request to a plain HTTP route, handed to its Python handler, and its one answer.

use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;

use super::websocket::display_ip;
use crate::net::{Answer, Request};

/// The request of an HTTP route waiting for its handler, as the Python `Request`/`Response` wrap it.
#[pyclass(module = "hyperws._core", frozen)]
pub struct PendingRequest {
    request: Box<Request>,
    #[pyo3(get)]
    route: usize,
    reply: Mutex<Option<oneshot::Sender<Answer>>>,
}

impl PendingRequest {
    pub fn new(request: Box<Request>, route: usize, reply: oneshot::Sender<Answer>) -> Self {
        Self {
            request,
            route,
            reply: Mutex::new(Some(reply)),
        }
    }
}

#[pymethods]
impl PendingRequest {
    #[getter]
    fn method(&self) -> &str {
        &self.request.method
    }

    #[getter]
    fn target(&self) -> &str {
        &self.request.target
    }

    /// (name, value) pairs, names lower-cased, in the order received.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.request.headers.clone()
    }

    /// The route pattern's parameters, percent-decoded.
    #[getter]
    fn params(&self) -> Vec<(String, String)> {
        self.request.params.clone()
    }

    #[getter]
    fn ip(&self) -> String {
        client_ip(&self.request)
    }

    #[getter]
    fn proxy_ip(&self) -> String {
        proxy_ip(&self.request)
    }

    /// The request body (read whole by the engine, at most `max_body_length` bytes).
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.request.body)
    }

    /// Answers; the engine writes the response.
    fn respond(&self, status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> PyResult<()> {
        check_status(status)?;
        let reply = self.reply.lock().expect("pending request poisoned").take();
        let Some(reply) = reply else {
            return Err(PyRuntimeError::new_err("this request was already answered"));
        };
        reply
            .send(Answer {
                status,
                headers,
                body,
            })
            .map_err(|_| {
                PyRuntimeError::new_err(
                    "this request can no longer be answered: it timed out (handler_timeout) or the client left",
                )
            })
    }

    /// Whether `respond` was called.
    #[getter]
    fn answered(&self) -> bool {
        self.reply
            .lock()
            .expect("pending request poisoned")
            .is_none()
    }
}

pub fn check_status(status: u16) -> PyResult<()> {
    if (200..600).contains(&status) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "an HTTP status is 200-599, got {status}"
        )))
    }
}

/// The client's address (as a trusted proxy named it, or the peer's).
pub fn client_ip(request: &Request) -> String {
    display_ip(request.client.addr.ip())
}

/// The proxy that named the client ("" when none did).
pub fn proxy_ip(request: &Request) -> String {
    request.client.proxy_ip.map(display_ip).unwrap_or_default()
}
