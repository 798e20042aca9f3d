//! `PendingRequest`: a request to a plain HTTP route, handed to its Python handler, and its one answer;
//! `PendingHead`: what it has in common with an upgrade request (`PendingUpgrade`).

use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;

use super::certificate::PeerCertificate;
use super::websocket::display_ip;
use crate::net::{Answer, Request};

/// A request waiting for the app (an HTTP route's or an upgrade), as the Python `Request` reads it: the base
/// of `PendingRequest` and `PendingUpgrade`.
#[pyclass(module = "hyperws._core", frozen, subclass)]
pub struct PendingHead {
    pub(super) request: Box<Request>,
    #[pyo3(get)]
    route: usize,
}

impl PendingHead {
    pub fn new(request: Box<Request>, route: usize) -> Self {
        Self { request, route }
    }
}

#[pymethods]
impl PendingHead {
    /// The connection the request came on (the id of the WebSocket it upgrades to).
    #[getter]
    fn connection_id(&self) -> u64 {
        self.request.connection
    }

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

    /// The client's address (as a trusted proxy named it, or the peer's).
    #[getter]
    fn ip(&self) -> String {
        display_ip(self.request.client.addr.ip())
    }

    /// The TLS certificate the client presented (None without TLS, or when it presented none).
    #[getter]
    fn peer_certificate(&self) -> Option<PeerCertificate> {
        self.request
            .peer_certificate
            .as_ref()
            .and_then(PeerCertificate::parse)
    }

    /// The proxy that named the client ("" when none did).
    #[getter]
    fn proxy_ip(&self) -> String {
        self.request
            .client
            .proxy_ip
            .map(display_ip)
            .unwrap_or_default()
    }
}

/// The request of an HTTP route waiting for its handler, as the Python `Request`/`Response` wrap it.
#[pyclass(module = "hyperws._core", frozen, extends = PendingHead)]
pub struct PendingRequest {
    reply: Mutex<Option<oneshot::Sender<Answer>>>,
}

impl PendingRequest {
    pub fn new(
        request: Box<Request>,
        route: usize,
        reply: oneshot::Sender<Answer>,
    ) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PendingHead::new(request, route)).add_subclass(Self {
            reply: Mutex::new(Some(reply)),
        })
    }
}

#[pymethods]
impl PendingRequest {
    /// The request body (read whole by the engine, at most `max_body_length` bytes).
    #[getter]
    fn body<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyBytes> {
        PyBytes::new(slf.py(), &slf.as_super().get().request.body)
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
