//! `TlsConfig`: a server's TLS settings as Python holds them; errors become exceptions naming the file.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::os_error;
use crate::net::tls::{ClientAuth, ClientCa, KeyPairFiles, Problem, Tls, TlsError};

/// Certificates, server names and client authentication, checked when made and on every change.
#[pyclass(module = "hyperws._core", frozen)]
pub struct TlsConfig {
    pub tls: Arc<Tls>,
}

#[pymethods]
impl TlsConfig {
    #[new]
    #[pyo3(signature = (cert_file, key_file, key_password=None, ca_file=None, client_auth="none"))]
    fn new(
        py: Python<'_>,
        cert_file: PathBuf,
        key_file: PathBuf,
        key_password: Option<String>,
        ca_file: Option<PathBuf>,
        client_auth: &str,
    ) -> PyResult<Self> {
        let auth = match client_auth {
            "none" => None,
            "optional" => Some(ClientAuth::Optional),
            "required" => Some(ClientAuth::Required),
            other => {
                return Err(PyValueError::new_err(format!(
                    "client_auth must be 'none', 'optional' or 'required', got {other:?}"
                )))
            }
        };
        let client =
            match (ca_file, auth) {
                (Some(file), Some(auth)) => Some(ClientCa { file, auth }),
                (None, None) => None,
                (Some(_), None) => return Err(PyValueError::new_err(
                    "ca_file is for client certificates: set client_auth='optional' or 'required'",
                )),
                (None, Some(_)) => {
                    return Err(PyValueError::new_err(
                        "client_auth needs ca_file: the CA that signs the client certificates",
                    ))
                }
            };
        let files = KeyPairFiles {
            cert: cert_file,
            key: key_file,
            password: key_password,
        };
        let tls = py.detach(|| Tls::new(files, client)).map_err(to_python)?;
        Ok(Self { tls: Arc::new(tls) })
    }

    /// Serves `name` (or a wildcard `*.example.com`) with its own certificate.
    #[pyo3(signature = (name, cert_file, key_file, key_password=None))]
    fn add_server_name(
        &self,
        py: Python<'_>,
        name: &str,
        cert_file: PathBuf,
        key_file: PathBuf,
        key_password: Option<String>,
    ) -> PyResult<()> {
        let files = KeyPairFiles {
            cert: cert_file,
            key: key_file,
            password: key_password,
        };
        py.detach(|| self.tls.add_name(name, files))
            .map_err(to_python)
    }

    /// Stops serving `name` with its own certificate; returns whether it had one.
    fn remove_server_name(&self, name: &str) -> bool {
        self.tls.remove_name(name)
    }

    /// Reads every certificate, key and CA file again (see `Tls::reload`).
    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.tls.reload()).map_err(to_python)
    }

    #[getter]
    fn handshake_failures(&self) -> u64 {
        self.tls.handshake_failures()
    }
}

/// An unreadable file raises the matching `OSError` (FileNotFoundError...) with its name; a file whose
/// content is unusable raises `ValueError` starting with its name.
fn to_python(error: TlsError) -> PyErr {
    match &error.problem {
        Problem::Unreadable(io) => os_error(io, "", Some(&error.file.display().to_string())),
        Problem::Invalid(_) => PyValueError::new_err(error.to_string()),
    }
}
