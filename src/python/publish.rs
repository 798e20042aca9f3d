//! `publish` for `Websocket` and `Server`: the frame is encoded once and fanned out with the GIL released.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::cork;
use super::payload::extract_typed_message;
use crate::bridge::{Event, EventQueue, Traffic};
use crate::protocol::deflate::{compress_shared, MAX_WINDOW_BITS, MIN_ALONE};
use crate::protocol::encode;
use crate::pubsub::Topics;

/// Publishes `message` to every subscriber of `topic` but `exclude`; returns whether any was reached.
/// With `compress`, the message is compressed once and goes compressed to the subscribers that can take
/// a frame compressed on its own (see `DeflateParams::takes_shared_frames`), plain to the others.
// One argument per parameter of the Python method.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    py: Python<'_>,
    topics: &Topics,
    events: &EventQueue,
    topic: &str,
    message: &Bound<'_, PyAny>,
    is_binary: Option<bool>,
    compress: bool,
    exclude: Option<u64>,
) -> PyResult<bool> {
    let (outgoing, binary) = extract_typed_message(message, is_binary)?;
    let opcode = if binary { encode::BINARY } else { encode::TEXT };
    let payload = outgoing.bytes();
    let published = py
        .detach(|| {
            let compressed = (compress && payload.len() >= MIN_ALONE).then(|| {
                let mut out = Vec::new();
                compress_shared(MAX_WINDOW_BITS, payload, &mut out);
                out
            });
            topics.publish(topic, opcode, payload, compressed.as_deref(), exclude)
        })
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Traffic::add(&events.traffic().messages_out, published.delivered);
    for conn in &published.to_wake {
        cork::wake(conn);
    }
    let mut drops: Vec<Event> = published
        .dropped
        .iter()
        .map(|&id| Event::Dropped {
            id,
            data: published.payload.clone(),
            binary,
        })
        .collect();
    events.push_all(&mut drops);
    Ok(published.delivered > 0)
}
