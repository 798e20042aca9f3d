//! Fan-out of a publish to the subscribed connections: the frame is encoded once and the same bytes are
//! queued to every receiver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use super::{validate_topic, Registry, TopicError};
use crate::net::{ConnHandle, Queued};
use crate::protocol::encode::{self, put_frame};

/// The subscriptions of one server's connections.
#[derive(Debug, Default)]
pub struct Topics {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry<u64>,
    /// The connections that hold at least one subscription.
    subscribers: HashMap<u64, Arc<ConnHandle>>,
}

/// What a publish did.
#[derive(Debug, Default)]
pub struct Published {
    /// Receivers the frame was queued to.
    pub delivered: usize,
    /// Receivers whose writer was parked: the caller wakes them (now, or at the end of its cork).
    pub to_wake: Vec<Arc<ConnHandle>>,
    /// Receivers that refused the message (over their `max_backpressure`).
    pub dropped: Vec<u64>,
    /// The message's payload (a view of the one encoded frame), for reporting drops.
    pub payload: Bytes,
}

impl Topics {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("topic registry poisoned")
    }

    /// Subscribes `conn` to `filter`; returns whether it was new. A closed connection is not subscribed.
    pub fn subscribe(&self, conn: &Arc<ConnHandle>, filter: &str) -> Result<bool, TopicError> {
        let mut state = self.state();
        if !conn.is_open() {
            super::validate_filter(filter)?;
            return Ok(false);
        }
        let added = state.registry.subscribe(conn.id, filter)?;
        if added {
            state
                .subscribers
                .entry(conn.id)
                .or_insert_with(|| Arc::clone(conn));
        }
        Ok(added)
    }

    /// Removes one subscription; returns whether it existed.
    pub fn unsubscribe(&self, id: u64, filter: &str) -> Result<bool, TopicError> {
        let mut state = self.state();
        let removed = state.registry.unsubscribe(id, filter)?;
        if removed && state.registry.topics(id).is_empty() {
            state.subscribers.remove(&id);
        }
        Ok(removed)
    }

    /// Removes every subscription of a connection (it closed).
    pub fn unsubscribe_all(&self, id: u64) {
        let mut state = self.state();
        if state.subscribers.remove(&id).is_some() {
            state.registry.unsubscribe_all(id);
        }
    }

    pub fn is_subscribed(&self, id: u64, filter: &str) -> bool {
        self.state().registry.is_subscribed(id, filter)
    }

    pub fn topics(&self, id: u64) -> Vec<String> {
        self.state().registry.topics(id)
    }

    /// How many connections a publish to `topic` would reach.
    pub fn count_matches(&self, topic: &str) -> Result<usize, TopicError> {
        self.state().registry.count_matches(topic)
    }

    /// Subscriptions held in all, (connection, filter) pairs.
    pub fn len(&self) -> usize {
        self.state().registry.len()
    }

    /// Whether no subscription is left.
    pub fn is_empty(&self) -> bool {
        let state = self.state();
        state.registry.is_empty() && state.subscribers.is_empty()
    }

    /// Queues one message to every subscriber of `topic` but `exclude`. `compressed` is the payload
    /// compressed on its own with a full window: it goes to the receivers that can take it.
    pub fn publish(
        &self,
        topic: &str,
        opcode: u8,
        payload: &[u8],
        compressed: Option<&[u8]>,
        exclude: Option<u64>,
    ) -> Result<Published, TopicError> {
        validate_topic(topic)?;
        let frame = encode_frame(opcode, payload);
        let compressed_frame = compressed.map(|c| encode_frame(opcode | encode::RSV1, c));
        let mut published = Published {
            payload: frame.slice(frame.len() - payload.len()..),
            ..Published::default()
        };
        let state = self.state();
        state.registry.for_each_match(topic, |id| {
            if Some(id) == exclude {
                return;
            }
            let Some(conn) = state.subscribers.get(&id) else {
                return;
            };
            let frame = match &compressed_frame {
                Some(compressed) if conn.deflate.is_some_and(|d| d.takes_shared_frames()) => {
                    compressed
                }
                _ => &frame,
            };
            match conn.send_encoded(frame) {
                Queued::Yes { wake } => {
                    published.delivered += 1;
                    if wake {
                        published.to_wake.push(Arc::clone(conn));
                    }
                }
                Queued::Full => published.dropped.push(id),
                Queued::Closed => {}
            }
        })?;
        Ok(published)
    }
}

fn encode_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(encode::header_len(payload.len()) + payload.len());
    put_frame(&mut frame, opcode, payload);
    frame.freeze()
}
