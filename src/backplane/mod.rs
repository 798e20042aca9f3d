//! Pub/sub across processes and machines through a broker (Redis or NATS): what one node publishes reaches
//! the subscribers of every node. See docs/scale-out.md for the design and its reasons.
//!
//! The broker client runs on its own thread ("hyperws-broker", one tokio task or a few). Publishers hand
//! it their messages through a bounded queue ([`outbox`]); it hands what other nodes publish through
//! another ([`inbound`]) to a thread that fans them out locally ("hyperws-deliver"), without Python. The local registry tells [`Interest`] when a filter gets its
//! first local subscriber or loses its last, and the broker task subscribes and unsubscribes accordingly.

mod counters;
mod envelope;
mod inbound;
mod interest;
mod link;
mod nats;
mod outbox;
mod queue;
mod redis;
mod subjects;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;

pub use counters::Counters;
pub use interest::{Interest, InterestHold};
pub use subjects::Naming;

use crate::bridge::EventQueue;
use crate::pubsub::Topics;
use link::Link;
use outbox::{Outbox, Outgoing};
use subjects::Dialect;

/// Which broker, and the names of this app's topics on it.
pub struct Config {
    broker: Broker,
    naming: Arc<Naming>,
}

enum Broker {
    Redis(Box<::redis::Client>),
    Nats(String),
}

impl Config {
    /// # Errors
    /// A URL whose scheme is none of `redis://`, `rediss://` (TLS), `nats://` and `tls://` (NATS over
    /// TLS), naming it; a URL the client refuses; or a prefix the broker cannot take.
    pub fn parse(url: &str, prefix: &str) -> Result<Self, String> {
        let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
        let (broker, dialect) = match scheme {
            "redis" | "rediss" => {
                let client =
                    redis::client(url).map_err(|e| format!("invalid Redis URL {url:?}: {e}"))?;
                (Broker::Redis(Box::new(client)), Dialect::Redis)
            }
            "nats" | "tls" => (Broker::Nats(url.to_owned()), Dialect::Nats),
            _ => {
                return Err(format!(
                    "unsupported pubsub URL scheme {scheme:?} in {url:?}: use redis://, rediss://, \
                     nats:// or tls://"
                ))
            }
        };
        Ok(Self {
            broker,
            naming: Arc::new(Naming::new(dialect, prefix)?),
        })
    }

    pub fn naming(&self) -> &Arc<Naming> {
        &self.naming
    }
}

/// This node's connection to the broker (see the module documentation).
pub struct Backplane {
    link: Arc<Link>,
    outbox: Outbox,
    stop: Arc<Notify>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Backplane {
    /// Starts connecting to the broker on a thread of its own. `interest` must be the one `topics` reports
    /// its filters to.
    ///
    /// # Errors
    /// The thread or its runtime could not be made.
    pub fn start(
        config: Config,
        interest: Arc<Interest>,
        topics: Arc<Topics>,
        events: Arc<EventQueue>,
    ) -> std::io::Result<Self> {
        let link = Arc::new(Link::new(node_id(), interest, topics, events));
        let (outbox, receiver) = Outbox::new(Arc::clone(&link.counters));
        let (inbox, deliveries) = inbound::inbox(Arc::clone(&link.counters));
        let stop = Arc::new(Notify::new());
        // Ends when every inbox is gone: with the broker thread's runtime, or at once if that thread
        // cannot be started.
        let delivering = std::thread::Builder::new()
            .name("hyperws-deliver".to_owned())
            .spawn({
                let link = Arc::clone(&link);
                move || deliveries.run(&link)
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("hyperws-broker".to_owned())
            .spawn({
                let link = Arc::clone(&link);
                let stop = Arc::clone(&stop);
                move || {
                    runtime.block_on(async move {
                        let serve = async {
                            match config.broker {
                                Broker::Redis(client) => {
                                    redis::run(*client, link, receiver, inbox).await;
                                }
                                Broker::Nats(url) => nats::run(url, link, receiver, inbox).await,
                            }
                        };
                        tokio::select! {
                            () = stop.notified() => {}
                            () = serve => {}
                        }
                    });
                }
            })?;
        Ok(Self {
            link,
            outbox,
            stop,
            threads: Mutex::new(vec![thread, delivering]),
        })
    }

    /// Sends a message published on this node to the other nodes (a valid topic), or drops and counts it.
    pub fn publish(&self, topic: &str, binary: bool, compress: bool, payload: &[u8]) {
        self.outbox.push(Outgoing {
            topic: topic.into(),
            binary,
            compress,
            payload: Bytes::copy_from_slice(payload),
        });
    }

    pub fn counters(&self) -> &Counters {
        &self.link.counters
    }

    /// Waits up to `timeout` for the first connection; the error when there is none.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), String> {
        self.link.wait_first_attempt(timeout)
    }

    /// Disconnects and stops the threads (blocks until they have stopped). Repeating it does nothing.
    pub fn stop(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().expect("broker threads poisoned"));
        if threads.is_empty() {
            return;
        }
        self.stop.notify_one();
        for thread in threads {
            // A panic on that thread was already reported by the panic hook.
            let _ = thread.join();
        }
    }
}

impl Drop for Backplane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A random id for this node (the process id and the time keep two nodes apart even if the hasher's
/// random keys came out the same).
fn node_id() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(since_epoch.as_nanos());
    hasher.finish()
}
