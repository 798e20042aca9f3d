//! Sans-I/O WebSocket protocol (RFC 6455) for the server side: client frames in, server frames out.
//!
//! Nothing here touches a socket or Python: [`Decoder`] turns received bytes into [`Inbound`] messages and
//! control frames, [`encode`] writes server frames. The net layer owns the buffers and the socket.

mod close;
mod decoder;
pub mod deflate;
pub mod encode;
mod error;
mod grow;
mod header;
mod mask;
mod utf8;

pub use close::{encode_close_payload, is_valid_sent_close_code, parse_close_payload, CloseReason};
pub use decoder::{Decoder, Inbound};
pub use error::ProtocolError;
pub use grow::grow_within;
pub use header::{parse_header, FrameHeader};
pub use mask::apply_mask;
pub use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
pub use utf8::Utf8Validator;

/// Close code for a normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code sent when the server goes away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a policy violation (the backpressure limit with `close_on_backpressure_limit`).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code reported when a close frame carried no status code.
pub const CLOSE_NO_STATUS: u16 = 1005;
/// Close code reported when the connection ended without a close frame.
pub const CLOSE_ABNORMAL: u16 = 1006;
