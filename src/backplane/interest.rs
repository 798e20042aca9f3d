//! What this node's local subscribers need from the broker: the broker subscriptions of the filters that
//! have at least one local subscriber, and the changes not yet sent to the broker.
//!
//! The registry calls [`Interest::add`] on a filter's first local subscriber and [`Interest::remove`] on
//! its last; the broker task takes the changes in batches. Several filters can share a broker subscription
//! (`a/#` and `a` both need the channel `a`), so each one is counted.
//!
//! A change wakes the broker task, which takes everything pending. While a thread holds an
//! [`InterestHold`] (the Python thread does while it dispatches a batch of events), its changes wake the
//! task once, when the hold ends: a handler that subscribes to 10 000 topics hands them over in one batch
//! however the threads are scheduled, instead of in whatever trickle the task sees while it runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::subjects::{Naming, Subscription};

/// The broker subscriptions this node needs (see the module documentation).
#[derive(Debug)]
pub struct Interest {
    naming: Arc<Naming>,
    state: Mutex<State>,
    changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    /// Each needed subscription and how many filters need it.
    needed: HashMap<Subscription, usize>,
    /// Subscriptions to take (true) or drop (false) on the broker, the latest wish for each.
    pending: HashMap<Subscription, bool>,
}

/// Subscription changes to send to the broker.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub subscribe: Vec<Subscription>,
    pub unsubscribe: Vec<Subscription>,
}

impl Interest {
    pub fn new(naming: Arc<Naming>) -> Self {
        Self {
            naming,
            state: Mutex::default(),
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn naming(&self) -> &Arc<Naming> {
        &self.naming
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("interest poisoned")
    }

    /// A valid `filter` got its first local subscriber.
    pub fn add(&self, filter: &str) {
        let mut state = self.state();
        let mut changed = false;
        for subscription in self.naming.subscriptions(filter) {
            let count = state.needed.entry(subscription.clone()).or_default();
            *count += 1;
            if *count == 1 {
                state.pending.insert(subscription, true);
                changed = true;
            }
        }
        drop(state);
        if changed {
            self.wake();
        }
    }

    /// A valid `filter` lost its last local subscriber.
    pub fn remove(&self, filter: &str) {
        let mut state = self.state();
        let mut changed = false;
        for subscription in self.naming.subscriptions(filter) {
            let Some(count) = state.needed.get_mut(&subscription) else {
                debug_assert!(false, "{subscription:?} removed more often than added");
                continue;
            };
            *count -= 1;
            if *count == 0 {
                state.needed.remove(&subscription);
                state.pending.insert(subscription, false);
                changed = true;
            }
        }
        drop(state);
        if changed {
            self.wake();
        }
    }

    /// Wakes the broker task now, or when this thread's hold ends.
    fn wake(&self) {
        let deferred = HOLD.with(|hold| {
            let mut hold = hold.borrow_mut();
            if hold.depth == 0 {
                return false;
            }
            if !hold.owed.iter().any(|n| Arc::ptr_eq(n, &self.changed)) {
                hold.owed.push(Arc::clone(&self.changed));
            }
            true
        });
        if !deferred {
            self.changed.notify_one();
        }
    }

    /// Resolves when changes may be waiting (a change made before the call counts).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The changes made since the last call.
    pub fn take_changes(&self) -> Changes {
        let mut changes = Changes::default();
        for (subscription, wanted) in self.state().pending.drain() {
            if wanted {
                changes.subscribe.push(subscription);
            } else {
                changes.unsubscribe.push(subscription);
            }
        }
        changes
    }

    /// Everything needed now, to subscribe on a fresh connection; pending changes are forgotten.
    pub fn take_all(&self) -> Vec<Subscription> {
        let mut state = self.state();
        state.pending.clear();
        state.needed.keys().cloned().collect()
    }
}

#[derive(Default)]
struct Hold {
    depth: u32,
    /// The broker tasks to wake when the outermost hold ends (one per engine changed meanwhile).
    owed: Vec<Arc<Notify>>,
}

thread_local! {
    static HOLD: RefCell<Hold> = RefCell::default();
}

/// Defers the wake-ups of the broker tasks for this thread's subscription changes until it is dropped
/// (see the module documentation); nests.
pub struct InterestHold(PhantomData<*const ()>);

impl InterestHold {
    pub fn begin() -> Self {
        HOLD.with(|hold| hold.borrow_mut().depth += 1);
        Self(PhantomData)
    }
}

impl Drop for InterestHold {
    fn drop(&mut self) {
        let owed = HOLD.with(|hold| {
            let mut hold = hold.borrow_mut();
            hold.depth -= 1;
            if hold.depth == 0 {
                std::mem::take(&mut hold.owed)
            } else {
                Vec::new()
            }
        });
        for changed in owed {
            changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::backplane::subjects::Dialect;

    fn interest() -> Interest {
        Interest::new(Arc::new(
            Naming::new(Dialect::Redis, "p").expect("valid prefix"),
        ))
    }

    fn names(mut subscriptions: Vec<Subscription>) -> Vec<String> {
        subscriptions.sort();
        subscriptions.into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn shared_subscriptions_are_counted() {
        let interest = interest();
        interest.add("a");
        interest.add("a/#");
        let changes = interest.take_changes();
        assert_eq!(names(changes.subscribe), ["p:a", "p:a/*"]);
        assert!(changes.unsubscribe.is_empty());
        interest.remove("a");
        assert_eq!(
            interest.take_changes(),
            Changes::default(),
            "a/# still needs p:a"
        );
        interest.remove("a/#");
        let changes = interest.take_changes();
        assert_eq!(names(changes.unsubscribe), ["p:a", "p:a/*"]);
        assert!(interest.take_all().is_empty());
    }

    #[test]
    fn the_latest_wish_wins_and_take_all_resets_the_pending_changes() {
        let interest = interest();
        interest.add("x");
        interest.remove("x");
        interest.add("y");
        let changes = interest.take_changes();
        assert_eq!(names(changes.subscribe), ["p:y"]);
        assert_eq!(names(changes.unsubscribe), ["p:x"]);
        interest.add("z");
        assert_eq!(names(interest.take_all()), ["p:y", "p:z"]);
        assert_eq!(interest.take_changes(), Changes::default());
    }

    #[test]
    fn changes_under_a_hold_wake_the_broker_task_once_when_it_ends() {
        let interest = interest();
        let outer = InterestHold::begin();
        interest.add("a");
        let inner = InterestHold::begin();
        interest.add("b");
        drop(inner);
        interest.remove("a");
        assert!(
            interest.changed().now_or_never().is_none(),
            "nothing wakes the task while held"
        );
        drop(outer);
        assert!(interest.changed().now_or_never().is_some());
        assert!(interest.changed().now_or_never().is_none(), "woken once");
        let changes = interest.take_changes();
        assert_eq!(names(changes.subscribe), ["p:b"]);
        assert_eq!(names(changes.unsubscribe), ["p:a"]);
    }
}
