//! `PeerCertificate`: the certificate a TLS client presented, as an app reads it to authorize.

use std::net::IpAddr;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A client's TLS certificate (verified against `ca_file` during the handshake).
#[pyclass(module = "hyperws._core", name = "PeerCertificate", frozen)]
pub struct PeerCertificate {
    der: Bytes,
    /// The subject as an RFC 4514 string, e.g. "CN=alice,O=Example".
    #[pyo3(get)]
    subject: String,
    /// The subject's common name, if it has one.
    #[pyo3(get)]
    common_name: Option<String>,
    /// Subject alternative names, as "DNS:example.com", "IP:10.0.0.1", "email:a@example.com", "URI:...".
    #[pyo3(get)]
    alt_names: Vec<String>,
}

impl PeerCertificate {
    /// Reads a DER certificate; None if it cannot be parsed (rustls verified it, so it can).
    pub fn parse(der: &Bytes) -> Option<Self> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let subject = certificate.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|name| name.as_str().ok())
            .map(str::to_owned);
        let alt_names = certificate
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|names| {
                names
                    .value
                    .general_names
                    .iter()
                    .filter_map(describe)
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            der: der.clone(),
            subject: subject.to_string(),
            common_name,
            alt_names,
        })
    }
}

fn describe(name: &GeneralName<'_>) -> Option<String> {
    Some(match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                _ => return None,
            };
            format!("IP:{ip}")
        }
        _ => return None,
    })
}

#[pymethods]
impl PeerCertificate {
    /// The certificate as received (DER), for checks beyond these fields (e.g. with `cryptography`).
    #[getter]
    fn der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.der)
    }

    fn __repr__(&self) -> String {
        format!("<PeerCertificate {}>", self.subject)
    }
}
