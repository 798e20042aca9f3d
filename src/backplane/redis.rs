//! The Redis backplane: one connection publishes (pipelined), one holds the subscriptions. A lost
//! connection is made again after a backoff, and every needed subscription taken again, in batches.

use std::collections::HashSet;
use std::sync::Arc;
use std::future::Future;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{Client, Msg, RedisError};

use super::counters::Counters;
use super::inbound::RECEIVE_BATCH;
use super::interest::Changes;
use super::link::{Backoff, Link};
use super::outbox::{self, Outgoing, Receiver};
use super::subjects::Subscription;

/// Channels or patterns per SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE or PUNSUBSCRIBE.
const SUBSCRIPTION_BATCH: usize = 512;
/// Messages per pipeline of PUBLISH.
const PUBLISH_BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connected Redis that answers nothing for this long is treated as lost (a stopped or hung server
/// keeps its connections open, and the batch waiting for it would be held meanwhile).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps this node connected to Redis until the engine stops (the task is dropped then).
pub async fn run(client: Client, link: Arc<Link>, mut outbox: Receiver) {
    let mut backoff = Backoff::new();
    loop {
        let error = match Session::open(&client, &link).await {
            Ok(session) => {
                link.up();
                backoff.reset();
                match session.serve(&link, &mut outbox).await {
                    Some(error) => error,
                    None => return,
                }
            }
            Err(error) => error,
        };
        link.counters.set_subscriptions(0);
        link.down(format!("Redis: {error}"));
        outbox::discard_for(backoff.next_delay(), &mut outbox, &link.counters).await;
    }
}

struct Session {
    publisher: MultiplexedConnection,
    sink: PubSubSink,
    messages: PubSubStream,
    held: HashSet<Subscription>,
}

impl Session {
    /// Connects and subscribes to everything the node needs.
    async fn open(client: &Client, link: &Link) -> Result<Self, RedisError> {
        let connect = async {
            let publisher = client.get_multiplexed_async_connection().await?;
            let (sink, messages) = client.get_async_pubsub().await?.split();
            Ok::<_, RedisError>((publisher, sink, messages))
        };
        let (publisher, sink, messages) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })??;
        let mut session = Self {
            publisher,
            sink,
            messages,
            held: HashSet::new(),
        };
        let everything = Changes {
            subscribe: link.interest.take_all(),
            unsubscribe: Vec::new(),
        };
        answered(session.apply(everything, &link.counters)).await?;
        Ok(session)
    }

    /// Serves until the connection fails (the error) or the engine stops (None).
    async fn serve(mut self, link: &Link, outbox: &mut Receiver) -> Option<RedisError> {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            let result = tokio::select! {
                message = self.messages.next() => match message {
                    Some(first) => {
                        self.deliver(first, link);
                        Ok(())
                    }
                    None => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
                },
                () = link.interest.changed() => {
                    let changes = link.interest.take_changes();
                    answered(self.apply(changes, &link.counters)).await
                }
                n = outbox.next_batch(&mut batch, PUBLISH_BATCH) => {
                    if n == 0 {
                        return None;
                    }
                    self.publish(&mut batch, link).await
                }
            };
            if let Err(error) = result {
                return Some(error);
            }
        }
    }

    /// Delivers `first` and the messages already read after it, together.
    fn deliver(&mut self, first: Msg, link: &Link) {
        let mut received = vec![first];
        while received.len() < RECEIVE_BATCH {
            match self.messages.next().now_or_never() {
                Some(Some(message)) => received.push(message),
                // Nothing more yet, or the end, which the next read reports.
                _ => break,
            }
        }
        let carried: Vec<(Subscription, &[u8])> = received
            .iter()
            .map(|message| (carried_by(message), message.get_payload_bytes()))
            .collect();
        link.deliver(carried.iter().map(|(via, bytes)| (via, *bytes)));
    }

    async fn publish(&mut self, batch: &mut Vec<Outgoing>, link: &Link) -> Result<(), RedisError> {
        let naming = link.interest.naming();
        let mut pipe = redis::pipe();
        for message in batch.iter() {
            pipe.cmd("PUBLISH")
                .arg(naming.channel(&message.topic))
                .arg(message.envelope(link.node))
                .ignore();
        }
        let n = batch.len();
        batch.clear();
        let result = answered(pipe.query_async::<()>(&mut self.publisher)).await;
        match result {
            Ok(()) => Counters::add(&link.counters.published, n),
            Err(_) => Counters::add(&link.counters.dropped, n),
        }
        result
    }

    /// Sends subscription changes, many channels per command.
    async fn apply(&mut self, changes: Changes, counters: &Counters) -> Result<(), RedisError> {
        let Changes {
            subscribe,
            unsubscribe,
        } = changes;
        let unsubscribe: Vec<Subscription> = unsubscribe
            .into_iter()
            .filter(|s| self.held.remove(s))
            .collect();
        let subscribe: Vec<Subscription> = subscribe
            .into_iter()
            .filter(|s| self.held.insert(s.clone()))
            .collect();
        for (pattern, names) in by_kind(&unsubscribe) {
            for chunk in names.chunks(SUBSCRIPTION_BATCH) {
                if pattern {
                    self.sink.punsubscribe(chunk).await?;
                } else {
                    self.sink.unsubscribe(chunk).await?;
                }
            }
        }
        for (pattern, names) in by_kind(&subscribe) {
            for chunk in names.chunks(SUBSCRIPTION_BATCH) {
                if pattern {
                    self.sink.psubscribe(chunk).await?;
                } else {
                    self.sink.subscribe(chunk).await?;
                }
            }
        }
        counters.set_subscriptions(self.held.len());
        Ok(())
    }
}

/// `request`'s result, or an error when Redis has not answered it in [`ANSWER_TIMEOUT`].
async fn answered<T>(request: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    tokio::time::timeout(ANSWER_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| Err(no_answer()))
}

fn no_answer() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer in {} s", ANSWER_TIMEOUT.as_secs()),
    ))
}

/// The subscription, channel or pattern, that carried `message`.
fn carried_by(message: &Msg) -> Subscription {
    Subscription {
        pattern: message.from_pattern(),
        name: match message.get_pattern::<Option<String>>() {
            Ok(Some(pattern)) => pattern,
            _ => message.get_channel_name().to_owned(),
        },
    }
}

/// The names of channels and of patterns apart (Redis takes them with different commands).
fn by_kind(subscriptions: &[Subscription]) -> [(bool, Vec<&str>); 2] {
    let names = |pattern: bool| {
        subscriptions
            .iter()
            .filter(|s| s.pattern == pattern)
            .map(|s| s.name.as_str())
            .collect()
    };
    [(false, names(false)), (true, names(true))]
}
