//! `publish` for `Websocket` and `Server`: the frame is encoded once and fanned out with the GIL released.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::cork;
use super::engine::EngineShared;
use super::payload::extract_typed_message;
use crate::bridge::{Event, Traffic};
use crate::protocol::encode;

/// Publishes `message` to every subscriber of `topic` but `exclude`; returns whether any was reached.
/// With `compress`, it goes compressed to the subscribers that negotiated compression: one frame compressed
/// once for those that keep no context, each with its own context for the others.
pub fn publish(
    py: Python<'_>,
    shared: &EngineShared,
    topic: &str,
    message: &Bound<'_, PyAny>,
    is_binary: Option<bool>,
    compress: bool,
    exclude: Option<u64>,
) -> PyResult<bool> {
    let (outgoing, binary) = extract_typed_message(message, is_binary)?;
    let opcode = if binary { encode::BINARY } else { encode::TEXT };
    let payload = outgoing.bytes();
    let EngineShared { topics, events, .. } = shared;
    let published = py
        .detach(|| topics.publish(topic, opcode, payload, compress, exclude))
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
