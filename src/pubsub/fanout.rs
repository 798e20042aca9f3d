//! Fan-out of a publish to the subscribed connections: the frame is encoded once and the same bytes are
//! queued to every receiver.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{validate_topic, Registry, TopicError};
use crate::net::{ConnHandle, ConnIdMap, Publication, Queued};

/// The subscriptions of one server's connections.
#[derive(Debug, Default)]
pub struct Topics {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry<u64>,
    /// The connections that hold at least one subscription.
    subscribers: ConnIdMap<Arc<ConnHandle>>,
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

    /// Queues one message to every subscriber of `topic` but `exclude`, compressed for those that
    /// negotiated compression when `compress` is set (see `ConnHandle::send_published`).
    pub fn publish(
        &self,
        topic: &str,
        opcode: u8,
        payload: &[u8],
        compress: bool,
        exclude: Option<u64>,
    ) -> Result<Published, TopicError> {
        validate_topic(topic)?;
        let publication = Publication::new(opcode, payload, compress);
        let plain = publication.plain();
        let mut published = Published {
            payload: plain.slice(plain.len() - payload.len()..),
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
            match conn.send_published(&publication) {
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
