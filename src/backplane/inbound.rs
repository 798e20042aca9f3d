//! Messages from other nodes: each is delivered to this node's subscribers through the same fan-out as a
//! local publish (the frame encoded once), and only once although several of this node's broker
//! subscriptions may carry it.
//!
//! `a/b`, `a/+` and `#` subscribed here means the broker sends a message to `a/b` three times, once per
//! subscription. Of the local filters that match its topic, the one that sorts first is designated, and
//! the message is delivered only when it came through that filter's broker subscription; so copies are
//! told apart without remembering any message. A Redis pattern that over-matches (`*` crosses `/`)
//! carries topics that no local filter matches: they have no designated filter and are ignored.

use std::sync::Arc;

use bytes::Bytes;

use super::counters::Counters;
use super::envelope::Envelope;
use super::link::Link;
use super::subjects::Subscription;
use crate::bridge::{Event, Traffic};
use crate::net::ConnHandle;
use crate::protocol::encode;
use crate::pubsub::PublishRun;

impl Link {
    /// Delivers the message in `bytes` that arrived through the broker subscription `via`.
    pub fn deliver(&self, via: &Subscription, bytes: &[u8]) {
        let Some(envelope) = Envelope::decode(bytes) else {
            return;
        };
        if envelope.node == self.node {
            return;
        }
        let naming = self.interest.naming();
        let carried_here = matches!(
            self.topics.first_matching_filter(envelope.topic),
            Ok(Some(filter)) if naming.carrier(&filter, envelope.topic) == *via
        );
        if !carried_here {
            return;
        }
        Counters::add(&self.counters.received, 1);
        let opcode = if envelope.binary {
            encode::BINARY
        } else {
            encode::TEXT
        };
        if envelope.compress {
            let Ok(published) =
                self.topics
                    .publish_compressed(envelope.topic, opcode, envelope.payload, None)
            else {
                return;
            };
            let dropped = published
                .dropped
                .iter()
                .map(|&id| (id, published.payload.clone(), envelope.binary));
            self.settle(published.delivered, &published.to_wake, dropped);
        } else {
            let Ok(mut run) = PublishRun::new(envelope.topic, None) else {
                return;
            };
            run.push(opcode, envelope.payload);
            let published = self.topics.publish_run(run);
            self.settle(published.delivered, &published.to_wake, published.dropped());
        }
    }

    /// What `publish::settle` does for a local publish, on this thread that never corks: counts what was
    /// queued, wakes the writers found parked and reports each refused message as a 'dropped' event.
    fn settle(
        &self,
        delivered: usize,
        to_wake: &[Arc<ConnHandle>],
        dropped: impl Iterator<Item = (u64, Bytes, bool)>,
    ) {
        Traffic::add(&self.events.traffic().messages_out, delivered);
        for conn in to_wake {
            conn.wake();
        }
        let mut drops: Vec<Event> = dropped
            .map(|(id, data, binary)| Event::Dropped { id, data, binary })
            .collect();
        self.events.push_all(&mut drops);
    }
}
