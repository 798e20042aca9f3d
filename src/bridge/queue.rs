use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::wake_fd::WakeFd;
use super::{Event, InboundBacklog};

/// Events from every connection of a server, in the order each connection produced them.
#[derive(Debug)]
pub struct EventQueue {
    state: Mutex<State>,
    wake: WakeFd,
    /// An I/O thread pushed to the idle consumer and put off the wake-up to the end of its turn.
    wake_deferred: AtomicBool,
    me: Weak<EventQueue>,
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

/// Events that may wait for a deferred wake-up before the consumer is woken anyway.
const DEFERRED_AT_MOST: usize = 1024;
/// Events the queue keeps room for between batches (a few tens of KiB).
const KEPT_ROOM: usize = 1024;

thread_local! {
    /// The queue whose I/O thread this is (its address; 0 on other threads).
    static IO_THREAD_OF: Cell<usize> = const { Cell::new(0) };
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
    pub fn new(per_connection: usize, total: usize) -> std::io::Result<Arc<Self>> {
        let wake = WakeFd::new()?;
        Ok(Arc::new_cyclic(|me| Self {
            backlog: InboundBacklog::new(per_connection, total),
            traffic: Traffic::default(),
            state: Mutex::new(State {
                events: Vec::new(),
                armed: true,
            }),
            wake,
            wake_deferred: AtomicBool::new(false),
            me: me.clone(),
            wakeups: AtomicU64::new(0),
            events: AtomicU64::new(0),
        }))
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
        self.add(|queue| queue.push(event));
    }

    /// Moves all of `events` into the queue with one lock and at most one wake-up.
    pub fn push_all(&self, events: &mut Vec<Event>) {
        if !events.is_empty() {
            self.add(|queue| queue.append(events));
        }
    }

    /// Moves all of `events` into the queue from the thread that consumes it, which drains it next:
    /// nobody is woken.
    pub fn push_from_consumer(&self, events: &mut Vec<Event>) {
        if !events.is_empty() {
            let mut state = self.state.lock().expect("event queue poisoned");
            state.events.append(events);
        }
    }

    fn add(&self, put: impl FnOnce(&mut Vec<Event>)) {
        let (wake, waiting) = {
            let mut state = self.state.lock().expect("event queue poisoned");
            put(&mut state.events);
            (std::mem::take(&mut state.armed), state.events.len())
        };
        self.wake_consumer(wake, waiting);
    }

    /// `wake`: this push found the consumer idle. On one of this queue's I/O threads the wake-up waits
    /// for the end of the thread's turn (the connections that were ready have all run), so the consumer
    /// gets everything that turn produced at once, instead of being woken, and on a shared core switched
    /// to, for the turn's first event. Elsewhere the wake-up is now.
    fn wake_consumer(&self, wake: bool, waiting: usize) {
        if wake {
            match self.is_own_io_thread().then(|| self.me.upgrade()).flatten() {
                Some(queue) => {
                    self.wake_deferred.store(true, Ordering::Release);
                    // Yielding puts the task behind every task that is ready now: it runs when they ran.
                    tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        queue.deferred_wake_due();
                    });
                }
                _ => self.signal(),
            }
        }
        // A turn that does not end soon still hands over in batches of bounded size.
        if waiting >= DEFERRED_AT_MOST {
            self.deferred_wake_due();
        }
    }

    fn deferred_wake_due(&self) {
        if self.wake_deferred.load(Ordering::Acquire)
            && self.wake_deferred.swap(false, Ordering::AcqRel)
        {
            self.signal();
        }
    }

    /// Called once on each thread of this queue's runtime when it starts.
    pub fn io_thread_starts(&self) {
        IO_THREAD_OF.set(self as *const Self as usize);
    }

    fn is_own_io_thread(&self) -> bool {
        IO_THREAD_OF.get() == self as *const Self as usize
    }

    fn signal(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        self.wake.signal();
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
        if state.events.capacity() <= KEPT_ROOM {
            // Moved, not swapped: the queue keeps its room for the next batch instead of growing again.
            batch.append(&mut state.events);
        } else {
            // After a burst, the room goes with the batch and is freed.
            std::mem::swap(&mut state.events, batch);
        }
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
        readable_within(fd, 0)
    }

    /// Whether `fd` is readable, or becomes so within `milliseconds`, without reading it. Asked of a
    /// fresh epoll instance rather than of poll(2), which Miri does not have (scripts/miri.sh); edge
    /// triggered, the only kind Miri has: adding a descriptor that is readable already is an edge.
    fn readable_within(fd: RawFd, milliseconds: i32) -> bool {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: epoll_create1 has no memory-safety preconditions; the descriptor is checked and owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `epoll` is a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        let mut interest = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: a live epoll_event, read during the call; `fd` is the queue's open eventfd.
        let added =
            unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut interest) };
        assert_eq!(added, 0, "{}", std::io::Error::last_os_error());
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }];
        // SAFETY: room for the one event asked for, written during the call.
        unsafe { libc::epoll_wait(epoll.as_raw_fd(), ready.as_mut_ptr(), 1, milliseconds) == 1 }
    }

    fn io_runtime(queue: &Arc<EventQueue>) -> tokio::runtime::Runtime {
        let starting = Arc::clone(queue);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(move || starting.io_thread_starts())
            .build()
            .unwrap()
    }

    fn room(queue: &EventQueue) -> usize {
        queue.state.lock().unwrap().events.capacity()
    }

    #[test]
    fn the_queue_keeps_room_for_a_usual_batch_and_frees_a_burst() {
        let queue = EventQueue::new(1 << 20, 1 << 26).unwrap();
        let mut batch = Vec::new();
        queue.push_all(&mut (0..100).map(message).collect());
        assert!(queue.take(&mut batch));
        assert_eq!(batch.len(), 100);
        assert!(room(&queue) >= 100, "kept for the next batch");

        batch.clear();
        queue.push_all(&mut (0..KEPT_ROOM as u64 + 1).map(message).collect());
        assert!(queue.take(&mut batch));
        assert_eq!(batch.len(), KEPT_ROOM + 1);
        assert!(
            room(&queue) <= KEPT_ROOM,
            "the burst's room left with the batch"
        );
    }

    #[test]
    fn an_io_thread_wakes_the_consumer_once_its_turn_ends() {
        let queue = EventQueue::new(1 << 20, 1 << 26).unwrap();
        let runtime = io_runtime(&queue);
        let pushing = Arc::clone(&queue);
        let woken_during_the_turn = runtime.block_on(async move {
            tokio::spawn(async move {
                for id in 0..10 {
                    pushing.push(message(id));
                }
                readable(pushing.fd())
            })
            .await
            .unwrap()
        });
        assert!(!woken_during_the_turn);
        // A safety bound, not a speed assertion: the turn has ended, the wake-up is on its way.
        assert!(readable_within(queue.fd(), 5000));
        assert_eq!(queue.stats().wakeups, 1);
    }

    #[test]
    fn a_long_turn_still_hands_over_in_bounded_batches() {
        let queue = EventQueue::new(1 << 20, 1 << 26).unwrap();
        let runtime = io_runtime(&queue);
        let pushing = Arc::clone(&queue);
        let woken = runtime.block_on(async move {
            tokio::spawn(async move {
                for id in 0..DEFERRED_AT_MOST as u64 {
                    pushing.push(message(id));
                }
                readable(pushing.fd())
            })
            .await
            .unwrap()
        });
        assert!(
            woken,
            "woken at {DEFERRED_AT_MOST} events, before the turn ended"
        );
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
