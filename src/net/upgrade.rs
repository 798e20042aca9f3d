//! Upgrades decided by Python: the upgrade handler's decision, and the 101 that accepts.

use super::http::Answer;
use crate::protocol::deflate::DeflateParams;

/// What the upgrade handler decided.
#[derive(Debug)]
pub enum Decision {
    /// Answer 101, with the chosen subprotocol and extra headers.
    Accept {
        protocol: Option<String>,
        headers: Vec<(String, String)>,
    },
    /// Answer with this HTTP response and close.
    Reject(Answer),
}

/// The 101 answer, with the chosen subprotocol, the negotiated compression and extra headers.
pub fn switching_protocols(
    accept_key: &str,
    protocol: Option<&str>,
    deflate: Option<&DeflateParams>,
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n"
    );
    if let Some(protocol) = protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    if let Some(deflate) = deflate {
        head.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            deflate.response()
        ));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_protocols_names_the_chosen_subprotocol() {
        let text = String::from_utf8(switching_protocols(
            "k",
            Some("chat"),
            None,
            &[("X-A".into(), "1".into())],
        ))
        .unwrap();
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\nX-A: 1\r\n\r\n"));
        let plain = String::from_utf8(switching_protocols("k", None, None, &[])).unwrap();
        assert!(!plain.contains("Sec-WebSocket-Protocol"));
    }
}
