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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::subjects::{Dialect, Naming};

    fn link() -> Link {
        let naming = Naming::new(Dialect::Redis, "p").expect("valid prefix");
        let interest = Arc::new(Interest::new(Arc::new(naming)));
        let events = EventQueue::new(1 << 20, 1 << 20).expect("an eventfd");
        Link::new(1, interest, Arc::new(Topics::new()), events)
    }

    /// The (connected, detail) of the broker events queued for Python.
    fn reported(link: &Link) -> Vec<(bool, String)> {
        let mut batch = Vec::new();
        link.events.take(&mut batch);
        batch
            .into_iter()
            .map(|event| match event {
                Event::Broker { connected, detail } => (connected, detail),
                _ => unreachable!("only broker events are queued here"),
            })
            .collect()
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_once() {
        let link = link();
        link.up();
        assert_eq!(reported(&link), [], "a first connection is not news");
        link.down("refused".to_owned());
        link.down("refused again".to_owned());
        link.down("and again".to_owned());
        assert_eq!(reported(&link), [(false, "refused".to_owned())]);
        assert!(!link.counters.is_connected());
        link.up();
        link.up();
        assert_eq!(reported(&link), [(true, "connected again".to_owned())]);
        assert_eq!(Counters::read(&link.counters.reconnects), 1);
    }

    #[test]
    fn unreachable_at_start_then_connected_is_no_reconnect() {
        let link = link();
        link.down("refused".to_owned());
        assert_eq!(
            link.wait_first_attempt(Duration::from_secs(1)),
            Err("refused".to_owned())
        );
        link.up();
        assert_eq!(link.wait_first_attempt(Duration::ZERO), Ok(()));
        assert_eq!(reported(&link).len(), 2);
        assert_eq!(Counters::read(&link.counters.reconnects), 0);
    }

    #[test]
    fn waiting_for_a_broker_that_never_answers_times_out() {
        let link = link();
        let error = link
            .wait_first_attempt(Duration::from_millis(10))
            .unwrap_err();
        assert!(error.starts_with("no answer within"), "{error}");
    }

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..6)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
