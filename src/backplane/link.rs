//! What a broker task shares with the engine: this node's id, the interest, the counters, the local
//! registry to deliver to, and the connection status that Python hears about once per change.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::counters::Counters;
use super::interest::Interest;
use crate::bridge::{Event, EventQueue};
use crate::pubsub::Topics;

pub struct Link {
    /// Names this node in the envelopes it sends.
    pub node: u64,
    pub interest: Arc<Interest>,
    pub counters: Arc<Counters>,
    pub topics: Arc<Topics>,
    pub events: Arc<EventQueue>,
    status: Mutex<Status>,
    status_changed: Condvar,
}

#[derive(Debug, Default)]
struct Status {
    /// Whether any connection was made yet (a later one is a reconnect).
    ever_connected: bool,
    /// Whether Python was told the broker is down, and not yet that it is back.
    reported_down: bool,
    /// Why the latest attempt failed or the latest connection ended.
    last_error: Option<String>,
}

impl Link {
    pub fn new(
        node: u64,
        interest: Arc<Interest>,
        topics: Arc<Topics>,
        events: Arc<EventQueue>,
    ) -> Self {
        Self {
            node,
            interest,
            counters: Arc::default(),
            topics,
            events,
            status: Mutex::default(),
            status_changed: Condvar::new(),
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().expect("broker status poisoned")
    }

    /// The broker is reachable (again). Repeating it changes nothing.
    pub fn up(&self) {
        let mut status = self.status();
        if self.counters.is_connected() {
            return;
        }
        self.counters
            .connected
            .store(true, std::sync::atomic::Ordering::Release);
        if status.ever_connected {
            Counters::add(&self.counters.reconnects, 1);
        }
        status.ever_connected = true;
        status.last_error = None;
        if std::mem::take(&mut status.reported_down) {
            self.events.push(Event::Broker {
                connected: true,
                detail: "connected again".to_owned(),
            });
        }
        self.status_changed.notify_all();
    }

    /// The broker could not be reached, or the connection to it was lost: reported to Python once per
    /// outage.
    pub fn down(&self, error: String) {
        let mut status = self.status();
        self.counters
            .connected
            .store(false, std::sync::atomic::Ordering::Release);
        if !status.reported_down {
            status.reported_down = true;
            self.events.push(Event::Broker {
                connected: false,
                detail: error.clone(),
            });
        }
        status.last_error = Some(error);
        self.status_changed.notify_all();
    }

    /// Waits until the first connection is made or an attempt fails, at most `timeout`; the error when
    /// the broker is not connected then.
    pub fn wait_first_attempt(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut status = self.status();
        loop {
            if self.counters.is_connected() {
                return Ok(());
            }
            if let Some(error) = &status.last_error {
                return Err(error.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no answer within {timeout:?}"));
            }
            status = self
                .status_changed
                .wait_timeout(status, left)
                .expect("broker status poisoned")
                .0;
        }
    }
}

/// Delays between connection attempts: doubling from 100 ms up to 1 s.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        Self(Self::FIRST)
    }

    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        delay
    }
}
