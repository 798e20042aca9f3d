//! Fan-out of a publish to the subscribed connections: the frame is encoded once and the same bytes are
//! queued to every receiver.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{validate_topic, FrozenRun, PublishRun, Registry, TopicError};
use crate::backplane::Interest;
use crate::net::{ConnHandle, ConnIdMap, Publication, Queued};
use crate::protocol::encode;

/// The subscriptions of one server's connections.
#[derive(Debug, Default)]
pub struct Topics {
    state: Mutex<State>,
    /// Told of each filter's first subscriber and last, when a broker carries publishes between nodes.
    interest: Option<Arc<Interest>>,
}

#[derive(Debug, Default)]
struct State {
    registry: Registry<u64>,
    /// The connections that hold at least one subscription.
    subscribers: ConnIdMap<Arc<ConnHandle>>,
}

/// What a compressed publish did.
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

    /// Subscriptions whose filters' first subscribers and last are reported to `interest`.
    pub fn with_interest(interest: Arc<Interest>) -> Self {
        Self {
            state: Mutex::default(),
            interest: Some(interest),
        }
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
            if let Some(interest) = &self.interest {
                if state.registry.subscriber_count(filter) == 1 {
                    interest.add(filter);
                }
            }
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
        if let Some(interest) = &self.interest {
            if removed && state.registry.subscriber_count(filter) == 0 {
                interest.remove(filter);
            }
        }
        Ok(removed)
    }

    /// Removes every subscription of a connection (it closed).
    pub fn unsubscribe_all(&self, id: u64) {
        let mut state = self.state();
        if state.subscribers.remove(&id).is_none() {
            return;
        }
        let Some(interest) = &self.interest else {
            state.registry.unsubscribe_all(id);
            return;
        };
        let filters = state.registry.topics(id);
        state.registry.unsubscribe_all(id);
        for filter in filters {
            if state.registry.subscriber_count(&filter) == 0 {
                interest.remove(&filter);
            }
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

    /// Of the subscribed filters that match `topic`, the one that sorts first (see
    /// `Registry::first_matching_filter`).
    pub fn first_matching_filter(&self, topic: &str) -> Result<Option<String>, TopicError> {
        self.state().registry.first_matching_filter(topic)
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
    /// negotiated compression (see `ConnHandle::send_published`).
    pub fn publish_compressed(
        &self,
        topic: &str,
        opcode: u8,
        payload: &[u8],
        exclude: Option<u64>,
    ) -> Result<Published, TopicError> {
        validate_topic(topic)?;
        let publication = Publication::new(opcode, payload);
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

    /// Whether a publish to `topic` would reach any open subscriber but `exclude`.
    pub fn reaches(&self, topic: &str, exclude: Option<u64>) -> Result<bool, TopicError> {
        let state = self.state();
        let mut reaches = false;
        state.registry.for_each_match(topic, |id| {
            reaches = reaches
                || Some(id) != exclude && state.subscribers.get(&id).is_some_and(|c| c.is_open());
        })?;
        Ok(reaches)
    }

    /// Queues a run of plain messages to every subscriber of its topic but the one it excludes: each
    /// subscriber takes the run's leading messages that fit its `max_backpressure` under one lock.
    pub fn publish_run(&self, run: PublishRun) -> RunPublished {
        let FrozenRun {
            topic,
            exclude,
            frames,
            ends,
            payloads,
        } = run.freeze();
        let mut matched = 0;
        let mut delivered = 0;
        let mut to_wake = Vec::new();
        let mut refused = Vec::new();
        let state = self.state();
        state
            .registry
            .for_each_match(&topic, |id| {
                if Some(id) == exclude {
                    return;
                }
                let Some(conn) = state.subscribers.get(&id) else {
                    return;
                };
                let Some(queued) = conn.send_run(&frames, &ends) else {
                    return;
                };
                matched += 1;
                delivered += queued.accepted;
                if queued.wake {
                    to_wake.push(Arc::clone(conn));
                }
                if queued.refused > 0 {
                    refused.push((id, queued.accepted..queued.accepted + queued.refused));
                }
            })
            .expect("a run's topic is validated when the run begins");
        drop(state);
        RunPublished {
            matched,
            delivered,
            to_wake,
            refused,
            frames,
            ends,
            payloads,
        }
    }
}

/// What the fan-out of a run did.
#[derive(Debug)]
pub struct RunPublished {
    /// Open subscribers the run matched (the excluded one aside).
    pub matched: usize,
    /// Messages queued, one per message and receiver.
    pub delivered: usize,
    /// Receivers whose writer was parked: the caller wakes them.
    pub to_wake: Vec<Arc<ConnHandle>>,
    /// Receivers that refused messages of the run (over their `max_backpressure`), and which.
    refused: Vec<(u64, Range<usize>)>,
    frames: Bytes,
    ends: Vec<usize>,
    payloads: Vec<usize>,
}

impl RunPublished {
    /// Each refused message: the receiver, the payload (a view of the run's frames) and whether it is binary.
    pub fn dropped(&self) -> impl Iterator<Item = (u64, Bytes, bool)> + '_ {
        self.refused.iter().flat_map(move |(id, messages)| {
            messages.clone().map(move |m| {
                let start = if m == 0 { 0 } else { self.ends[m - 1] };
                let binary = self.frames[start] & 0x0f == encode::BINARY;
                (
                    *id,
                    self.frames.slice(self.payloads[m]..self.ends[m]),
                    binary,
                )
            })
        })
    }
}
