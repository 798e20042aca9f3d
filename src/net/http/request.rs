//! A request handed to Python (an HTTP route's, or an upgrade its route intercepts) and the answer.

use bytes::Bytes;

use crate::net::proxy::ClientAddr;

/// A request as plain data: the I/O threads never build Python objects.
#[derive(Debug)]
pub struct Request {
    /// The connection it came on (a WebSocket it upgrades to keeps this id).
    pub connection: u64,
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// Header names lower-cased, values decoded as UTF-8 (lossy), in order.
    pub headers: Vec<(String, String)>,
    /// The route pattern's parameters, percent-decoded, in pattern order.
    pub params: Vec<(String, String)>,
    pub client: ClientAddr,
    /// Empty for upgrades.
    pub body: Bytes,
    /// The client's TLS certificate (DER), when it presented one.
    pub peer_certificate: Option<Bytes>,
}

impl Request {
    pub fn new(
        connection: u64,
        parsed: &httparse::Request<'_, '_>,
        params: Vec<(String, String)>,
        client: ClientAddr,
        body: Bytes,
        peer_certificate: Option<Bytes>,
    ) -> Self {
        Self {
            connection,
            peer_certificate,
            method: parsed.method.unwrap_or("GET").to_owned(),
            target: parsed.path.unwrap_or("/").to_owned(),
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            params,
            client,
            body,
        }
    }
}

/// An HTTP response decided by Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}
