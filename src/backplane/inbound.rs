//! Messages from other nodes: each is delivered to this node's subscribers through the same fan-out as a
//! local publish (the frame encoded once), and only once although several of this node's broker
//! subscriptions may carry it.
//!
//! `a/b`, `a/+` and `#` subscribed here means the broker sends a message to `a/b` three times, once per
//! subscription. Of the local filters that match its topic, the one that sorts first is designated, and
//! the message is delivered only when it came through that filter's broker subscription; so copies are
//! told apart without remembering any message. A Redis pattern that over-matches (`*` crosses `/`)
//! carries topics that no local filter matches: they have no designated filter and are ignored.
//!
//! What the broker client reads waits in a queue bounded in messages and in bytes ([`Inbox`]), which a
//! thread of its own ("hyperws-deliver") empties, so the client keeps reading while messages are fanned
//! out (a broker whose client stops reading holds the messages for it, and Redis closes the connection
//! of a subscriber that is 32 MiB behind). When the node cannot fan out as fast as the broker sends, the
//! excess is dropped and counted (`broker_received_dropped`). The thread takes the messages in batches:
//! consecutive plain messages to one topic are fanned out as one run (the registry walked and each
//! subscriber's queue locked once for all of them, as a corked local publish is), and each parked
//! writer is woken once per batch.

use std::sync::Arc;

use bytes::Bytes;

use super::counters::Counters;
use super::envelope::Envelope;
use super::link::Link;
use super::queue::{self, Weighed, BATCH, BATCH_BYTES, CAPACITY, CAPACITY_BYTES};
use super::subjects::Subscription;
use crate::bridge::{Event, Traffic};
use crate::net::ConnHandle;
use crate::protocol::encode;
use crate::pubsub::PublishRun;

/// A message as the broker client read it: the bytes that arrived through a broker subscription.
#[derive(Debug)]
pub struct Arrival {
    pub via: Arc<Subscription>,
    pub bytes: Bytes,
}

impl Weighed for Arrival {
    fn weight(&self) -> usize {
        self.bytes.len()
    }
}

/// The broker client's end of the received messages' queue.
#[derive(Debug, Clone)]
pub struct Inbox {
    sender: queue::Sender<Arrival>,
    counters: Arc<Counters>,
}

/// The delivering end.
pub struct Deliveries {
    receiver: queue::Receiver<Arrival>,
}

pub fn inbox(counters: Arc<Counters>) -> (Inbox, Deliveries) {
    let (sender, receiver) = queue::bounded(CAPACITY, CAPACITY_BYTES);
    (Inbox { sender, counters }, Deliveries { receiver })
}

impl Inbox {
    /// Queues a received message for delivery, or drops and counts it when the queue is full.
    pub fn push(&self, arrival: Arrival) {
        if !self.sender.push(arrival) {
            Counters::add(&self.counters.received_dropped, 1);
        }
    }
}

impl Deliveries {
    /// Delivers received messages as they come, until every [`Inbox`] is gone (blocks the thread).
    pub fn run(mut self, link: &Link) {
        // A batch is what is already queued: the thread never waits for more.
        let mut batch = Vec::with_capacity(BATCH);
        while self
            .receiver
            .next_batch_blocking(&mut batch, BATCH, BATCH_BYTES)
            > 0
        {
            link.deliver(batch.drain(..));
        }
    }
}

impl Link {
    /// Delivers messages read from the broker, in order.
    pub fn deliver(&self, messages: impl IntoIterator<Item = Arrival>) {
        let mut arrivals = Arrivals {
            link: self,
            checked: None,
            run: None,
            delivered: 0,
            to_wake: Vec::new(),
            drops: Vec::new(),
        };
        for Arrival { via, bytes } in messages {
            arrivals.push(&via, &bytes);
        }
        arrivals.finish();
    }
}

/// A batch of received messages on its way to the local subscribers.
struct Arrivals<'a> {
    link: &'a Link,
    /// The topic and subscription of the latest message checked, and whether it was to be delivered
    /// (consecutive messages to one topic are checked once).
    checked: Option<(Box<str>, Subscription, bool)>,
    /// Plain messages to one topic waiting to be fanned out together.
    run: Option<PublishRun>,
    delivered: usize,
    to_wake: Vec<Arc<ConnHandle>>,
    drops: Vec<Event>,
}

impl Arrivals<'_> {
    fn push(&mut self, via: &Subscription, bytes: &[u8]) {
        let Some(envelope) = Envelope::decode(bytes) else {
            return;
        };
        if envelope.node == self.link.node || !self.carried_here(via, envelope.topic) {
            return;
        }
        Counters::add(&self.link.counters.received, 1);
        let opcode = if envelope.binary {
            encode::BINARY
        } else {
            encode::TEXT
        };
        if envelope.compress {
            self.fan_out_run();
            self.publish_compressed(envelope.topic, opcode, envelope.payload, envelope.binary);
            return;
        }
        match &mut self.run {
            Some(run) if run.takes(envelope.topic, None) => run.push(opcode, envelope.payload),
            _ => {
                self.fan_out_run();
                if let Ok(mut run) = PublishRun::new(envelope.topic, None) {
                    run.push(opcode, envelope.payload);
                    self.run = Some(run);
                }
            }
        }
    }

    /// Whether this node delivers a message to `topic` that came through `via` (see the module
    /// documentation).
    fn carried_here(&mut self, via: &Subscription, topic: &str) -> bool {
        if let Some((checked_topic, checked_via, answer)) = &self.checked {
            if **checked_topic == *topic && checked_via == via {
                return *answer;
            }
        }
        let naming = self.link.interest.naming();
        let answer = matches!(
            self.link.topics.first_matching_filter(topic),
            Ok(Some(filter)) if naming.carrier(&filter, topic) == *via
        );
        self.checked = Some((topic.into(), via.clone(), answer));
        answer
    }

    fn fan_out_run(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        let published = self.link.topics.publish_run(run);
        self.delivered += published.delivered;
        self.drops.extend(
            published
                .dropped()
                .map(|(id, data, binary)| Event::Dropped { id, data, binary }),
        );
        self.to_wake.extend(published.to_wake);
    }

    fn publish_compressed(&mut self, topic: &str, opcode: u8, payload: &[u8], binary: bool) {
        let Ok(published) = self
            .link
            .topics
            .publish_compressed(topic, opcode, payload, None)
        else {
            return;
        };
        self.delivered += published.delivered;
        self.drops
            .extend(published.dropped.iter().map(|&id| Event::Dropped {
                id,
                data: published.payload.clone(),
                binary,
            }));
        self.to_wake.extend(published.to_wake);
    }

    /// What `publish::settle` does for a local publish, on this thread that never corks: counts what was
    /// queued, wakes the writers found parked (once each) and reports each refused message as a
    /// 'dropped' event.
    fn finish(mut self) {
        self.fan_out_run();
        let link = self.link;
        Traffic::add(&link.events.traffic().messages_out, self.delivered);
        self.to_wake.sort_unstable_by_key(Arc::as_ptr);
        self.to_wake.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for conn in &self.to_wake {
            conn.wake();
        }
        link.events.push_all(&mut self.drops);
    }
}
