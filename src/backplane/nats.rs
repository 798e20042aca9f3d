//! The NATS backplane. Once connected, the client reconnects by itself and takes its subscriptions again
//! on the new connection; this task reports the connection's state from the client's events, makes and
//! drops one client subscription per broker subscription, and publishes.
//!
//! Subscribing only queues a SUB line in the client's buffered writer, so a burst of subscriptions goes
//! out in a few writes, followed by one round trip that tells when the server has them all. Each
//! subscription is read by its own task, which moves its messages to the node's bounded inbox (messages
//! of one subscription stay in order); dropping it unsubscribes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, Request};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::counters::Counters;
use super::inbound::{Arrival, Inbox};
use super::interest::Changes;
use super::link::{Backoff, Link};
use super::outbox::{self, Outgoing, Receiver};
use super::queue;
use super::subjects::Subscription;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the client pings NATS; a server that misses two pongs is treated as lost (a stopped or hung
/// server keeps its connections open). The client's default is a minute.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Messages the client holds per subscription before its reader moves them to the inbox; past it the
/// client drops them (counted as received and dropped). The client's default is 65 536.
const SUBSCRIPTION_CAPACITY: usize = 4 * queue::BATCH;

/// Keeps this node connected to NATS until the engine stops (the task is dropped then).
pub async fn run(url: String, link: Arc<Link>, mut outbox: Receiver, inbox: Inbox) {
    let mut backoff = Backoff::new();
    let client = loop {
        match connect(&url, &link).await {
            Ok(client) => break client,
            Err(error) => {
                link.down(format!("NATS: {error}"));
                outbox::discard_for(backoff.next_delay(), &mut outbox, &link.counters).await;
            }
        }
    };
    link.up();
    let mut subscriptions = HashMap::new();
    let everything = Changes {
        subscribe: link.interest.take_all(),
        unsubscribe: Vec::new(),
    };
    apply(&client, &link, &inbox, &mut subscriptions, everything).await;
    let mut batch = Vec::with_capacity(queue::BATCH);
    loop {
        tokio::select! {
            () = link.interest.changed() => {
                let changes = link.interest.take_changes();
                apply(&client, &link, &inbox, &mut subscriptions, changes).await;
            }
            n = outbox.next_batch(&mut batch, queue::BATCH, queue::BATCH_BYTES) => {
                if n == 0 {
                    return;
                }
                publish(&client, &link, &mut batch).await;
            }
        }
    }
}

async fn connect(url: &str, link: &Arc<Link>) -> Result<Client, async_nats::ConnectError> {
    let events = Arc::clone(link);
    let reconnect_delay = |attempts: usize| {
        let mut backoff = Backoff::new();
        (1..attempts).fold(Duration::ZERO, |_, _| backoff.next_delay())
    };
    ConnectOptions::new()
        .name("hyperws")
        // The broker does not send this node's own messages back.
        .no_echo()
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(PING_INTERVAL)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let link = Arc::clone(&events);
            async move {
                match event {
                    Event::Connected => link.up(),
                    Event::Disconnected => link.down("NATS: disconnected".to_owned()),
                    Event::SlowConsumer(_) => Counters::add(&link.counters.received_dropped, 1),
                    _ => {}
                }
            }
        })
        .connect(url)
        .await
}

/// Hands the batch to the client and waits until the client has written it to the socket, so that the
/// client holds at most one batch while NATS reads slowly or not at all (its own queue is bounded in
/// commands, not bytes); what waits meanwhile waits in the outbox, which is bounded in bytes.
async fn publish(client: &Client, link: &Link, batch: &mut Vec<Outgoing>) {
    let naming = link.interest.naming();
    let mut handed = 0;
    for message in batch.drain(..) {
        if client.connection_state() != State::Connected {
            Counters::add(&link.counters.dropped, 1);
            continue;
        }
        let envelope = message.envelope(link.node);
        match client
            .publish(naming.channel(&message.topic), envelope.into())
            .await
        {
            Ok(()) => handed += 1,
            Err(_) => Counters::add(&link.counters.dropped, 1),
        }
    }
    if handed > 0 {
        match client.flush().await {
            Ok(()) => Counters::add(&link.counters.published, handed),
            Err(_) => Counters::add(&link.counters.dropped, handed),
        }
    }
}

/// Waits until the server has read everything this client sent before (so the subscriptions counted are
/// in force): NATS reads a connection's lines in order, and answers a request nobody listens to with "no
/// responders". (`flush` only hands the lines to the socket.) A failure means a reconnect, which
/// subscribes again anyway.
async fn round_trip(client: &Client) {
    let inbox = client.new_inbox();
    let request = Request::new()
        .inbox(inbox.clone())
        .timeout(Some(CONNECT_TIMEOUT));
    let _ = client.send_request(format!("{inbox}.sync"), request).await;
}

async fn apply(
    client: &Client,
    link: &Link,
    inbox: &Inbox,
    subscriptions: &mut HashMap<Subscription, JoinHandle<()>>,
    changes: Changes,
) {
    for subscription in changes.unsubscribe {
        if let Some(reader) = subscriptions.remove(&subscription) {
            reader.abort();
        }
    }
    let subscribed_before = subscriptions.len();
    for subscription in changes.subscribe {
        if subscriptions.contains_key(&subscription) {
            continue;
        }
        // Fails only when the client is closed, which it never is while this task runs.
        let Ok(mut subscriber) = client.subscribe(subscription.name.clone()).await else {
            continue;
        };
        let inbox = inbox.clone();
        let via = Arc::new(subscription.clone());
        let reader = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                // A copy: the client's payload shares the allocation of its whole read buffer, which
                // a queued message would keep alive.
                inbox.push(Arrival {
                    via: Arc::clone(&via),
                    bytes: Bytes::copy_from_slice(&message.payload),
                });
            }
        });
        subscriptions.insert(subscription, reader);
    }
    if subscriptions.len() > subscribed_before {
        round_trip(client).await;
    }
    link.counters.set_subscriptions(subscriptions.len());
}
