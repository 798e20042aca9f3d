//! What this node's local subscribers need from the broker: the broker subscriptions of the filters that
//! have at least one local subscriber, and the changes not yet sent to the broker.
//!
//! The registry calls [`Interest::add`] on a filter's first local subscriber and [`Interest::remove`] on
//! its last; the broker task takes the changes in batches. Several filters can share a broker subscription
//! (`a/#` and `a` both need the channel `a`), so each one is counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::subjects::{Naming, Subscription};

/// The broker subscriptions this node needs (see the module documentation).
#[derive(Debug)]
pub struct Interest {
    naming: Arc<Naming>,
    state: Mutex<State>,
    changed: Notify,
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
            changed: Notify::new(),
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
            self.changed.notify_one();
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

#[cfg(test)]
mod tests {
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
}
