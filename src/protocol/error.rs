use std::fmt;

/// A violation by the peer: the connection is closed with `code` and `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code to send (1002, 1007 or 1009).
    pub code: u16,
    /// A short reason, sent in the close frame (it fits the 123-byte limit).
    pub reason: &'static str,
}

impl ProtocolError {
    /// A protocol violation (1002).
    pub const fn protocol(reason: &'static str) -> Self {
        Self { code: 1002, reason }
    }

    /// A text payload that is not UTF-8 (1007).
    pub const fn invalid_utf8() -> Self {
        Self {
            code: 1007,
            reason: "invalid UTF-8 in text message",
        }
    }

    /// A message larger than the route's `max_payload_length` (1009).
    pub const fn too_big() -> Self {
        Self {
            code: 1009,
            reason: "message too big",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}
