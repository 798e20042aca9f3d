//! A queue from one side of the broker task to the other, bounded in messages and in bytes: a push past
//! either bound is refused (the caller drops and counts the message) and the receiver takes batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// The bounds of the broker's two queues, to the broker and from it: what a stalled or flooding broker
/// can cost a node each way.
pub const CAPACITY: usize = 16 * 1024;
pub const CAPACITY_BYTES: usize = 16 * 1024 * 1024;
/// A batch taken from either: at most this many messages, and none more once this many bytes are taken
/// (a batch is held until the broker, or the fan-out, has taken it).
pub const BATCH: usize = 256;
pub const BATCH_BYTES: usize = 1024 * 1024;

/// What a message counts for against the byte bound.
pub trait Weighed {
    fn weight(&self) -> usize;
}

pub fn bounded<T: Weighed>(messages: usize, bytes: usize) -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = mpsc::channel(messages);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let sender = Sender {
        sender,
        queued_bytes: Arc::clone(&queued_bytes),
        capacity_bytes: bytes,
    };
    (
        sender,
        Receiver {
            receiver,
            queued_bytes,
        },
    )
}

#[derive(Debug)]
pub struct Sender<T> {
    sender: mpsc::Sender<T>,
    queued_bytes: Arc<AtomicUsize>,
    capacity_bytes: usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            queued_bytes: Arc::clone(&self.queued_bytes),
            capacity_bytes: self.capacity_bytes,
        }
    }
}

#[derive(Debug)]
pub struct Receiver<T> {
    receiver: mpsc::Receiver<T>,
    queued_bytes: Arc<AtomicUsize>,
}

impl<T: Weighed> Sender<T> {
    /// Queues `message`, or returns false when the queue is full in messages or in bytes (or its
    /// receiver is gone). A message heavier than the whole byte bound is still taken by an empty queue.
    pub fn push(&self, message: T) -> bool {
        let weight = message.weight();
        let before = self.queued_bytes.fetch_add(weight, Ordering::AcqRel);
        let fits = before == 0 || before + weight <= self.capacity_bytes;
        if fits && self.sender.try_send(message).is_ok() {
            return true;
        }
        self.queued_bytes.fetch_sub(weight, Ordering::AcqRel);
        false
    }
}

impl<T: Weighed> Receiver<T> {
    /// Waits for messages and moves the next ones into `batch` (empty): at most `count`, and past the
    /// first no more once `bytes` are taken. 0: every sender is gone and nothing will come again.
    /// Cancel-safe: nothing is taken unless it is returned.
    pub async fn next_batch(&mut self, batch: &mut Vec<T>, count: usize, bytes: usize) -> usize {
        let Some(first) = self.receiver.recv().await else {
            return 0;
        };
        self.fill(first, batch, count, bytes)
    }

    /// [`Self::next_batch`] for a thread outside the runtime, which it blocks.
    pub fn next_batch_blocking(&mut self, batch: &mut Vec<T>, count: usize, bytes: usize) -> usize {
        let Some(first) = self.receiver.blocking_recv() else {
            return 0;
        };
        self.fill(first, batch, count, bytes)
    }

    fn fill(&mut self, first: T, batch: &mut Vec<T>, count: usize, bytes: usize) -> usize {
        let mut taken = first.weight();
        batch.push(first);
        while batch.len() < count && taken < bytes {
            let Ok(message) = self.receiver.try_recv() else {
                break;
            };
            taken += message.weight();
            batch.push(message);
        }
        self.queued_bytes.fetch_sub(taken, Ordering::AcqRel);
        batch.len()
    }

    #[cfg(test)]
    pub fn try_take(&mut self) -> Option<T> {
        let message = self.receiver.try_recv().ok()?;
        self.queued_bytes
            .fetch_sub(message.weight(), Ordering::AcqRel);
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weighed for Vec<u8> {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    fn take(receiver: &mut Receiver<Vec<u8>>, count: usize, bytes: usize) -> Vec<Vec<u8>> {
        let mut batch = Vec::new();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(receiver.next_batch(&mut batch, count, bytes));
        batch
    }

    #[test]
    fn bounded_in_messages_keeping_the_order() {
        let (sender, mut receiver) = bounded(4, 1000);
        let pushed: Vec<bool> = (0..6).map(|n| sender.push(vec![n])).collect();
        assert_eq!(pushed, [true, true, true, true, false, false]);
        assert_eq!(take(&mut receiver, 10, 1000), [[0], [1], [2], [3]]);
    }

    #[test]
    fn bounded_in_bytes_and_taking_makes_room() {
        let (sender, mut receiver) = bounded(100, 10);
        assert!(sender.push(vec![0; 6]));
        assert!(sender.push(vec![1; 4]));
        assert!(!sender.push(vec![2]), "10 bytes are queued");
        assert_eq!(
            take(&mut receiver, 10, 5).len(),
            1,
            "a batch stops at its bytes"
        );
        assert!(sender.push(vec![3; 6]));
        assert_eq!(take(&mut receiver, 10, 100), [vec![1; 4], vec![3; 6]]);
    }

    #[test]
    fn a_message_heavier_than_the_bound_fits_an_empty_queue_only() {
        let (sender, mut receiver) = bounded(100, 10);
        assert!(sender.push(vec![0; 11]));
        assert!(!sender.push(vec![1; 11]));
        assert_eq!(receiver.try_take(), Some(vec![0; 11]));
        assert!(sender.push(vec![2; 11]));
    }
}
