//! The Redis backplane: one RESP3 connection publishes (pipelined) and holds the subscriptions, whose
//! messages arrive as pushes that the client hands to the node's bounded inbox as it reads them. A lost
//! connection is made again after a backoff, and every needed subscription taken again, in batches.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisError, Value,
};
use tokio::sync::Notify;

use super::counters::Counters;
use super::inbound::{Arrival, Inbox};
use super::interest::Changes;
use super::link::{Backoff, Link};
use super::outbox::{self, Outgoing, Receiver};
use super::queue;
use super::subjects::Subscription;

/// Channels or patterns per SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE or PUNSUBSCRIBE.
const SUBSCRIPTION_BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connected Redis that answers nothing for this long is treated as lost (a stopped or hung server
/// keeps its connections open, and the batch waiting for it would be held meanwhile). Redis answers in
/// microseconds; the client's own default, 0.5 s, could be reached by a node starved of CPU.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for `url` that speaks RESP3 (Redis 6 or later), whatever the URL asks: pub/sub messages
/// arrive as pushes on the connection that also publishes.
///
/// # Errors
/// A URL the client refuses.
pub fn client(url: &str) -> Result<Client, RedisError> {
    let info = url.into_connection_info()?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings))
}

/// Keeps this node connected to Redis until the engine stops (the task is dropped then).
pub async fn run(client: Client, link: Arc<Link>, mut outbox: Receiver, inbox: Inbox) {
    let mut backoff = Backoff::new();
    loop {
        let error = match Session::open(&client, &link, &inbox).await {
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
    connection: MultiplexedConnection,
    /// Notified by the client when the connection is lost.
    lost: Arc<Notify>,
    held: HashSet<Subscription>,
}

impl Session {
    /// Connects and subscribes to everything the node needs.
    async fn open(client: &Client, link: &Link, inbox: &Inbox) -> Result<Self, RedisError> {
        let lost = Arc::new(Notify::new());
        let receive = {
            let inbox = inbox.clone();
            let lost = Arc::clone(&lost);
            move |push: PushInfo| -> Result<(), Infallible> {
                receive(push, &inbox, &lost);
                Ok(())
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(ANSWER_TIMEOUT))
            .set_push_sender(receive);
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut session = Self {
            connection,
            lost,
            held: HashSet::new(),
        };
        let everything = Changes {
            subscribe: link.interest.take_all(),
            unsubscribe: Vec::new(),
        };
        session.apply(everything, &link.counters).await?;
        Ok(session)
    }

    /// Serves until the connection fails (the error) or the engine stops (None).
    async fn serve(mut self, link: &Link, outbox: &mut Receiver) -> Option<RedisError> {
        let mut batch = Vec::with_capacity(queue::BATCH);
        loop {
            let result = tokio::select! {
                () = self.lost.notified() => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
                }
                () = link.interest.changed() => {
                    self.apply(link.interest.take_changes(), &link.counters).await
                }
                n = outbox.next_batch(&mut batch, queue::BATCH, queue::BATCH_BYTES) => {
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
        let result = pipe.query_async::<()>(&mut self.connection).await;
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
                    self.connection.punsubscribe(chunk).await?;
                } else {
                    self.connection.unsubscribe(chunk).await?;
                }
            }
        }
        for (pattern, names) in by_kind(&subscribe) {
            for chunk in names.chunks(SUBSCRIPTION_BATCH) {
                if pattern {
                    self.connection.psubscribe(chunk).await?;
                } else {
                    self.connection.subscribe(chunk).await?;
                }
            }
        }
        counters.set_subscriptions(self.held.len());
        Ok(())
    }
}

/// Called by the client for each push it reads: a message goes to the inbox; the end of the connection
/// is told to the session. Subscription confirmations are the commands' answers already.
fn receive(push: PushInfo, inbox: &Inbox, lost: &Notify) {
    let pattern = match push.kind {
        PushKind::Message => false,
        PushKind::PMessage => true,
        PushKind::Disconnection => return lost.notify_one(),
        _ => return,
    };
    // [channel, payload], or [pattern, channel, payload]: the subscription that carried it comes first.
    let mut data = push.data.into_iter();
    let name = data.next().and_then(text);
    let payload = data.nth(usize::from(pattern));
    // Names this node did not subscribe to (not UTF-8) and malformed pushes carry nothing for it.
    if let (Some(name), Some(Value::BulkString(bytes))) = (name, payload) {
        inbox.push(Arrival {
            via: Arc::new(Subscription { pattern, name }),
            bytes: Bytes::from(bytes),
        });
    }
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        _ => None,
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
