//! `publish` for `Websocket` and `Server`: the frame is encoded once and fanned out with the GIL released.
//! Plain publishes made while the thread is corked wait in a run (see `cork`) and are fanned out together.

use std::sync::Arc;

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::cork;
use super::engine::EngineShared;
use super::payload::extract_typed_message;
use crate::bridge::{Event, Traffic};
use crate::net::ConnHandle;
use crate::protocol::encode;
use crate::pubsub::{validate_topic, PublishRun, TopicError};

/// Publishes `message` to every subscriber of `topic` but `exclude`, and to the other nodes through the
/// broker when there is one; returns whether it reached an open local subscriber (a held one: whether the run reaches one, see `cork`). With `compress`, it goes compressed to the subscribers that negotiated compression: one frame compressed
/// once for those that keep no context, each with its own context for the others.
pub fn publish(
    py: Python<'_>,
    shared: &Arc<EngineShared>,
    topic: &str,
    message: &Bound<'_, PyAny>,
    is_binary: Option<bool>,
    compress: bool,
    exclude: Option<u64>,
) -> PyResult<bool> {
    let (outgoing, binary) = extract_typed_message(message, is_binary)?;
    let opcode = if binary { encode::BINARY } else { encode::TEXT };
    let payload = outgoing.bytes();
    if let Some(backplane) = &shared.backplane {
        validate_topic(topic).map_err(value_error)?;
        backplane.publish(topic, binary, compress, payload);
    }
    if compress {
        cork::flush_publishes();
        return publish_compressed(py, shared, topic, opcode, payload, exclude);
    }
    if cork::join_run(shared, topic, exclude, opcode, payload) {
        return Ok(true);
    }
    cork::flush_publishes();
    if cork::is_corked() {
        // Held only when it reaches someone: a publish that joins it later reaches them too (whatever
        // changes the subscriptions ends the run first).
        let reaches = shared.topics.reaches(topic, exclude).map_err(value_error)?;
        if reaches {
            cork::hold_run(shared, new_run(topic, exclude, opcode, payload)?);
        }
        return Ok(reaches);
    }
    let run = new_run(topic, exclude, opcode, payload)?;
    Ok(fan_out(py, shared, run) > 0)
}

/// Fans a run out with the GIL released; wakes the receivers and reports the drops. Returns how many
/// subscribers it matched.
pub fn fan_out(py: Python<'_>, shared: &EngineShared, run: PublishRun) -> usize {
    let published = py.detach(|| shared.topics.publish_run(run));
    settle(
        shared,
        published.delivered,
        &published.to_wake,
        published.dropped(),
    );
    published.matched
}

fn publish_compressed(
    py: Python<'_>,
    shared: &EngineShared,
    topic: &str,
    opcode: u8,
    payload: &[u8],
    exclude: Option<u64>,
) -> PyResult<bool> {
    let published = py
        .detach(|| {
            shared
                .topics
                .publish_compressed(topic, opcode, payload, exclude)
        })
        .map_err(value_error)?;
    let binary = opcode == encode::BINARY;
    let dropped = published
        .dropped
        .iter()
        .map(|&id| (id, published.payload.clone(), binary));
    settle(shared, published.delivered, &published.to_wake, dropped);
    // An open subscriber either took the message or refused it.
    Ok(published.delivered + published.dropped.len() > 0)
}

/// Counts what a publish queued, wakes the writers it found parked (now, or at the end of the cork) and
/// reports each message a receiver refused as a 'dropped' event.
fn settle(
    shared: &EngineShared,
    delivered: usize,
    to_wake: &[Arc<ConnHandle>],
    dropped: impl Iterator<Item = (u64, Bytes, bool)>,
) {
    Traffic::add(&shared.events.traffic().messages_out, delivered);
    for conn in to_wake {
        cork::wake(conn, &shared.events);
    }
    let mut drops: Vec<Event> = dropped
        .map(|(id, data, binary)| Event::Dropped { id, data, binary })
        .collect();
    shared.events.push_all(&mut drops);
}

fn new_run(topic: &str, exclude: Option<u64>, opcode: u8, payload: &[u8]) -> PyResult<PublishRun> {
    let mut run = PublishRun::new(topic, exclude).map_err(value_error)?;
    run.push(opcode, payload);
    Ok(run)
}

fn value_error(error: TopicError) -> PyErr {
    PyValueError::new_err(error.to_string())
}
