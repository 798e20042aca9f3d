//! `PendingUpgrade`: an upgrade request handed to the Python upgrade handler, and its one decision.

use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::{PyTraverseError, PyVisit};
use tokio::sync::oneshot;

use super::request::{check_status, PendingHead};
use crate::net::{Answer, Decision, Request};

/// The request of an upgrade waiting for the app, as the Python `Request`/`Response` wrap it.
#[pyclass(module = "hyperws._core", frozen, extends = PendingHead)]
pub struct PendingUpgrade {
    reply: Mutex<Option<oneshot::Sender<Decision>>>,
    /// Set by `accept`: what the connection's `Websocket` starts with.
    accepted: Mutex<Option<(Py<PyAny>, String)>>,
}

impl PendingUpgrade {
    pub fn new(
        request: Box<Request>,
        route: usize,
        reply: oneshot::Sender<Decision>,
    ) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PendingHead::new(request, route)).add_subclass(Self {
            reply: Mutex::new(Some(reply)),
            accepted: Mutex::new(None),
        })
    }

    /// The context and subprotocol given to `accept`, for the new connection.
    pub fn take_accepted(&self) -> Option<(Py<PyAny>, String)> {
        self.accepted
            .lock()
            .expect("pending upgrade poisoned")
            .take()
    }

    fn decide(&self, decision: Decision) -> PyResult<()> {
        let reply = self.reply.lock().expect("pending upgrade poisoned").take();
        let Some(reply) = reply else {
            return Err(PyRuntimeError::new_err(
                "this upgrade request was already answered",
            ));
        };
        reply.send(decision).map_err(|_| {
            PyRuntimeError::new_err(
                "this upgrade request can no longer be answered: it timed out (upgrade_timeout) or the client left",
            )
        })
    }
}

/// The subprotocols the client offered, in its order.
fn offered_protocols(request: &Request) -> Vec<String> {
    header_tokens(&request.headers, "sec-websocket-protocol")
}

/// The comma-separated tokens of every header named `name`.
fn header_tokens(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, value)| value.split(',').map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .collect()
}

#[pymethods]
impl PendingUpgrade {
    /// The subprotocols the client offered, in its order.
    #[getter]
    fn protocols(slf: &Bound<'_, Self>) -> Vec<String> {
        offered_protocols(&slf.as_super().get().request)
    }

    /// The extension names the client offered.
    #[getter]
    fn extensions(slf: &Bound<'_, Self>) -> Vec<String> {
        header_tokens(
            &slf.as_super().get().request.headers,
            "sec-websocket-extensions",
        )
        .into_iter()
        .map(|offer| {
            offer
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
    }

    /// Accepts: the 101 goes out with `protocol` (one the client offered) and `headers`.
    #[pyo3(signature = (context, protocol, headers))]
    fn accept(
        slf: &Bound<'_, Self>,
        context: Py<PyAny>,
        protocol: Option<String>,
        headers: Vec<(String, String)>,
    ) -> PyResult<()> {
        if let Some(chosen) = &protocol {
            let offered = offered_protocols(&slf.as_super().get().request);
            if !offered.contains(chosen) {
                return Err(PyValueError::new_err(format!(
                    "the client did not offer the subprotocol {chosen:?} (it offered {offered:?})"
                )));
            }
        }
        let this = slf.get();
        let chosen = protocol.clone().unwrap_or_default();
        this.decide(Decision::Accept { protocol, headers })?;
        *this.accepted.lock().expect("pending upgrade poisoned") = Some((context, chosen));
        Ok(())
    }

    /// Rejects with this HTTP response; the connection is closed after it.
    fn respond(&self, status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> PyResult<()> {
        check_status(status)?;
        self.decide(Decision::Reject(Answer {
            status,
            headers,
            body,
        }))
    }

    /// Whether `accept` or `respond` was called.
    #[getter]
    fn answered(&self) -> bool {
        self.reply
            .lock()
            .expect("pending upgrade poisoned")
            .is_none()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(accepted) = self.accepted.try_lock() {
            if let Some((context, _)) = accepted.as_ref() {
                visit.call(context)?;
            }
        }
        Ok(())
    }
}
