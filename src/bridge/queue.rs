use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::wake_fd::WakeFd;
use super::{Event, InboundBacklog};

/// Events from every connection of a server, in the order each connection produced them.
#[derive(Debug)]
pub struct EventQueue {
    state: Mutex<State>,
    wake: WakeFd,
    wakeups: AtomicU64,
    events: AtomicU64,
    backlog: InboundBacklog,
    traffic: Traffic,
}

/// Messages and bytes through a server, for `server.stats()`.
#[derive(Debug, Default)]
pub struct Traffic {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Traffic {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct State {
    events: Vec<Event>,
    /// The consumer found the queue empty and waits for the eventfd: the next push must signal it.
    armed: bool,
}

/// Counters of the hand-over, to show the batching at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub wakeups: u64,
    pub events: u64,
}

impl EventQueue {
    /// A queue whose readers pause above `per_connection` bytes waiting for Python on one connection, or
    /// `total` bytes on all of them.
    pub fn new(per_connection: usize, total: usize) -> std::io::Result<Self> {
        Ok(Self {
            backlog: InboundBacklog::new(per_connection, total),
            traffic: Traffic::default(),
            state: Mutex::new(State {
                events: Vec::new(),
                armed: true,
            }),
            wake: WakeFd::new()?,
            wakeups: AtomicU64::new(0),
            events: AtomicU64::new(0),
        })
    }

    /// The read-side flow control of the connections feeding this queue.
    pub fn backlog(&self) -> &InboundBacklog {
        &self.backlog
    }

    /// Counters of messages and bytes in and out.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The descriptor the consumer's loop watches for readability.
    pub fn fd(&self) -> RawFd {
        self.wake.raw()
    }

    pub fn push(&self, event: Event) {
        let wake = {
            let mut state = self.state.lock().expect("event queue poisoned");
            state.events.push(event);
            std::mem::take(&mut state.armed)
        };
        self.signal_if(wake);
    }

    /// Moves all of `events` into the queue with one lock and at most one wake-up.
    pub fn push_all(&self, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let wake = {
            let mut state = self.state.lock().expect("event queue poisoned");
            state.events.append(events);
            std::mem::take(&mut state.armed)
        };
        self.signal_if(wake);
    }

    fn signal_if(&self, wake: bool) {
        if wake {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.wake.signal();
        }
    }

    /// Consumer side: clears the wake-up signal. Call once at the start of a drain.
    pub fn begin_drain(&self) {
        self.wake.clear();
    }

    /// Consumer side: swaps the waiting events into `batch` (which must be empty). Returns false, and arms
    /// the wake-up for the next push, when there was nothing.
    pub fn take(&self, batch: &mut Vec<Event>) -> bool {
        debug_assert!(batch.is_empty());
        let mut state = self.state.lock().expect("event queue poisoned");
        if state.events.is_empty() {
            state.armed = true;
            return false;
        }
        std::mem::swap(&mut state.events, batch);
        drop(state);
        self.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        true
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            wakeups: self.wakeups.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(id: u64) -> Event {
        Event::Message {
            id,
            data: Bytes::from_static(b"x"),
            binary: true,
        }
    }

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    #[test]
    fn only_the_push_that_finds_the_queue_idle_wakes_the_consumer() {
        let queue = EventQueue::new(1 << 20, 1 << 26).unwrap();
        for id in 0..100 {
            queue.push(message(id));
        }
        assert_eq!(queue.stats().wakeups, 1);
        assert!(readable(queue.fd()));

        queue.begin_drain();
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch));
        assert_eq!(batch.len(), 100);
        batch.clear();
        assert!(!queue.take(&mut batch), "empty queue arms the wake-up");
        assert!(!readable(queue.fd()));

        queue.push_all(&mut vec![message(1), message(2)]);
        assert_eq!(
            queue.stats(),
            QueueStats {
                wakeups: 2,
                events: 100
            }
        );
        assert!(readable(queue.fd()));
    }

    #[test]
    fn events_pushed_during_a_drain_need_no_wake_up() {
        let queue = EventQueue::new(1 << 20, 1 << 26).unwrap();
        queue.push(message(1));
        queue.begin_drain();
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch));
        queue.push(message(2));
        batch.clear();
        assert!(queue.take(&mut batch), "the drain loop picks it up");
        assert_eq!(queue.stats().wakeups, 1);
    }
}
