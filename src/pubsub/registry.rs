//! The registry: who is subscribed to which filter, and who a publish reaches.

use std::collections::HashMap;
use std::hash::Hash;

use super::matches::Matches;
use super::topic::{validate_filter, validate_topic, TopicError};
use super::trie::{NodeId, Trie};

/// Subscriptions of keys (e.g. connection ids) to MQTT topic filters, matched against published topics.
///
/// A publish costs O(levels × wildcard branching + receivers), never O(all subscriptions). Each subscriber keeps
/// only a 4-byte node id per filter besides its map entry. Unsubscribing frees the trie nodes nobody needs, so the
/// registry is [`Registry::is_empty`] again once every key has left.
#[derive(Debug)]
pub struct Registry<K> {
    trie: Trie<K>,
    /// Each key's filters as trie nodes, in subscription order.
    by_key: HashMap<K, Vec<NodeId>>,
    len: usize,
}

impl<K: Copy + Eq + Hash> Default for Registry<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash> Registry<K> {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            trie: Trie::new(),
            by_key: HashMap::new(),
            len: 0,
        }
    }

    /// Subscribes `key` to `filter`. Returns whether it was not subscribed to it already.
    ///
    /// # Errors
    /// A malformed filter (empty, `+` or `#` inside a level, `#` before the last level).
    pub fn subscribe(&mut self, key: K, filter: &str) -> Result<bool, TopicError> {
        validate_filter(filter)?;
        let (node, added) = self.trie.insert(filter, key);
        if added {
            self.by_key.entry(key).or_default().push(node);
            self.len += 1;
        }
        Ok(added)
    }

    /// Unsubscribes `key` from `filter`. Returns whether it was subscribed to it.
    ///
    /// # Errors
    /// A malformed filter, as for [`Registry::subscribe`].
    pub fn unsubscribe(&mut self, key: K, filter: &str) -> Result<bool, TopicError> {
        validate_filter(filter)?;
        let Some(node) = self.trie.find(filter) else {
            return Ok(false);
        };
        if !self.trie.remove(node, key) {
            return Ok(false);
        }
        let nodes = self
            .by_key
            .get_mut(&key)
            .expect("a subscriber has an entry");
        let position = nodes
            .iter()
            .position(|&n| n == node)
            .expect("the entry lists the filter");
        nodes.remove(position);
        if nodes.is_empty() {
            self.forget(key);
        }
        self.len -= 1;
        Ok(true)
    }

    /// Unsubscribes `key` from all its filters (when a connection closes). Returns how many there were.
    pub fn unsubscribe_all(&mut self, key: K) -> usize {
        let Some(nodes) = self.forget(key) else {
            return 0;
        };
        for &node in &nodes {
            self.trie.remove(node, key);
        }
        self.len -= nodes.len();
        nodes.len()
    }

    /// Drops the entry of `key`, shrinking the map once it is mostly empty.
    fn forget(&mut self, key: K) -> Option<Vec<NodeId>> {
        let nodes = self.by_key.remove(&key);
        if self.by_key.capacity() > 16 && self.by_key.len() * 4 < self.by_key.capacity() {
            self.by_key.shrink_to_fit();
        }
        nodes
    }

    /// Whether `key` is subscribed to exactly this filter string (a malformed filter is subscribed by nobody).
    pub fn is_subscribed(&self, key: K, filter: &str) -> bool {
        self.trie
            .find(filter)
            .is_some_and(|node| self.trie.subscribers(node).contains(&key))
    }

    /// The filters of `key`, in the order it subscribed to them.
    pub fn topics(&self, key: K) -> Vec<String> {
        self.by_key
            .get(&key)
            .map(|nodes| nodes.iter().map(|&node| self.trie.filter(node)).collect())
            .unwrap_or_default()
    }

    /// How many keys are subscribed to exactly this filter string (not the keys a publish to it would reach: see
    /// [`Registry::count_matches`]).
    pub fn subscriber_count(&self, filter: &str) -> usize {
        self.trie
            .find(filter)
            .map_or(0, |node| self.trie.subscribers(node).len())
    }

    /// Calls `f` once with each key that a publish to `topic` reaches, in no particular order, even when several
    /// of the key's filters match.
    ///
    /// # Errors
    /// A malformed topic (empty, or containing `+` or `#`); `f` is not called then.
    pub fn for_each_match(&self, topic: &str, f: impl FnMut(K)) -> Result<(), TopicError> {
        self.matches(topic)?.for_each(f);
        Ok(())
    }

    /// How many distinct keys a publish to `topic` reaches.
    ///
    /// # Errors
    /// A malformed topic, as for [`Registry::for_each_match`].
    pub fn count_matches(&self, topic: &str) -> Result<usize, TopicError> {
        Ok(self.matches(topic)?.count())
    }

    /// Of the filters that match `topic`, the one that sorts first (byte order), if any: one choice among
    /// several that every caller makes the same way.
    ///
    /// # Errors
    /// A malformed topic, as for [`Registry::for_each_match`].
    pub fn first_matching_filter(&self, topic: &str) -> Result<Option<String>, TopicError> {
        validate_topic(topic)?;
        let mut first: Option<String> = None;
        self.trie.for_each_matching_node(topic, |node| {
            let filter = self.trie.filter(node);
            if first.as_ref().is_none_or(|first| filter < *first) {
                first = Some(filter);
            }
        });
        Ok(first)
    }

    fn matches(&self, topic: &str) -> Result<Matches<'_, K>, TopicError> {
        validate_topic(topic)?;
        let mut matches = Matches::new();
        self.trie
            .for_each_matching(topic, |subscribers| matches.add(subscribers));
        Ok(matches)
    }

    /// True when there are no subscriptions and the trie holds no node but its root.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty() && self.trie.is_empty()
    }

    /// The number of subscriptions, counting each (key, filter) pair once.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::TopicErrorKind;

    fn registry(subscriptions: &[(u64, &str)]) -> Registry<u64> {
        let mut registry = Registry::new();
        for &(key, filter) in subscriptions {
            registry.subscribe(key, filter).expect(filter);
        }
        registry
    }

    fn receivers(registry: &Registry<u64>, topic: &str) -> Vec<u64> {
        let mut keys = Vec::new();
        registry
            .for_each_match(topic, |key| keys.push(key))
            .expect(topic);
        keys.sort_unstable();
        assert_eq!(registry.count_matches(topic), Ok(keys.len()), "{topic}");
        keys
    }

    #[test]
    fn a_topic_reaches_its_subscribers_in_the_order_they_subscribed() {
        let order: Vec<u64> = [40, 7, 1000, 3, 12].into();
        let mut registry = Registry::new();
        for &key in &order {
            registry.subscribe(key, "news").expect("valid filter");
        }
        let mut reached = Vec::new();
        registry
            .for_each_match("news", |key| reached.push(key))
            .expect("valid topic");
        assert_eq!(reached, order, "the same order in every process");
        registry.unsubscribe(7, "news").expect("valid filter");
        reached.clear();
        registry
            .for_each_match("news", |key| reached.push(key))
            .expect("valid topic");
        assert_eq!(
            reached,
            [40, 12, 1000, 3],
            "the last one takes the place of one that left"
        );
    }

    #[test]
    fn exact_topics() {
        let registry = registry(&[
            (1, "chat/lobby"),
            (2, "chat/lobby"),
            (3, "chat/other"),
            (4, "chat"),
        ]);
        assert_eq!(receivers(&registry, "chat/lobby"), vec![1, 2]);
        assert_eq!(receivers(&registry, "chat/other"), vec![3]);
        assert_eq!(receivers(&registry, "chat"), vec![4]);
        assert_eq!(receivers(&registry, "chat/lobby/x"), Vec::<u64>::new());
        assert_eq!(receivers(&registry, "nobody"), Vec::<u64>::new());
    }

    #[test]
    fn single_level_wildcard() {
        let registry = registry(&[(1, "a/+/c"), (2, "+"), (3, "a/+"), (4, "+/+/+")]);
        assert_eq!(receivers(&registry, "a/b/c"), vec![1, 4]);
        assert_eq!(receivers(&registry, "a/xyz/c"), vec![1, 4]);
        assert_eq!(receivers(&registry, "a/b/d"), vec![4]);
        assert_eq!(receivers(&registry, "a"), vec![2]);
        assert_eq!(receivers(&registry, "a/b"), vec![3]);
        assert_eq!(receivers(&registry, "a/b/c/d"), Vec::<u64>::new());
    }

    #[test]
    fn multi_level_wildcard() {
        let registry = registry(&[(1, "a/#"), (2, "#"), (3, "a/b/#"), (4, "+/#")]);
        assert_eq!(receivers(&registry, "a"), vec![1, 2, 4]);
        assert_eq!(receivers(&registry, "a/b"), vec![1, 2, 3, 4]);
        assert_eq!(receivers(&registry, "a/b/c/d/e"), vec![1, 2, 3, 4]);
        assert_eq!(receivers(&registry, "b"), vec![2, 4]);
        assert_eq!(receivers(&registry, "/"), vec![2, 4]);
    }

    #[test]
    fn everything_matches_hash_alone() {
        let registry = registry(&[(9, "#")]);
        for topic in ["a", "a/b", "/", "//", "x/y/z/w", "é"] {
            assert_eq!(receivers(&registry, topic), vec![9], "{topic}");
        }
    }

    #[test]
    fn overlapping_subscriptions_yield_a_key_once() {
        let registry = registry(&[
            (1, "a/b"),
            (1, "a/+"),
            (1, "#"),
            (1, "a/#"),
            (2, "a/b"),
            (2, "+/b"),
            (3, "a/+"),
            (3, "x"),
        ]);
        let mut yielded = Vec::new();
        registry
            .for_each_match("a/b", |key| yielded.push(key))
            .unwrap();
        yielded.sort_unstable();
        assert_eq!(yielded, vec![1, 2, 3]);
        assert_eq!(registry.count_matches("a/b"), Ok(3));
        assert_eq!(registry.count_matches("a"), Ok(1));
        assert_eq!(registry.count_matches("x"), Ok(2));
    }

    #[test]
    fn empty_levels() {
        let registry = registry(&[
            (1, "a//b"),
            (2, "a/+/b"),
            (3, "/"),
            (4, "+/+"),
            (5, "/a"),
            (6, "a/"),
        ]);
        assert_eq!(receivers(&registry, "a//b"), vec![1, 2]);
        assert_eq!(receivers(&registry, "a/b"), vec![4]);
        assert_eq!(receivers(&registry, "/"), vec![3, 4]);
        assert_eq!(receivers(&registry, "/a"), vec![4, 5]);
        assert_eq!(receivers(&registry, "a/"), vec![4, 6]);
        assert_eq!(receivers(&registry, "a"), Vec::<u64>::new());
    }

    #[test]
    fn malformed_filters_are_rejected() {
        let mut registry = Registry::new();
        for (filter, message) in [
            (
                "a/#/b",
                "invalid topic filter 'a/#/b': '#' must be the last level",
            ),
            (
                "a+/b",
                "invalid topic filter 'a+/b': '+' must be a whole level, not part of 'a+'",
            ),
            (
                "a/b#",
                "invalid topic filter 'a/b#': '#' must be a whole level, not part of 'b#'",
            ),
            (
                "+a",
                "invalid topic filter '+a': '+' must be a whole level, not part of '+a'",
            ),
            (
                "",
                "invalid topic filter '': a topic filter must not be empty",
            ),
        ] {
            assert_eq!(
                registry.subscribe(1, filter).unwrap_err().to_string(),
                message
            );
            assert_eq!(
                registry.unsubscribe(1, filter).unwrap_err().to_string(),
                message
            );
            assert!(!registry.is_subscribed(1, filter));
            assert_eq!(registry.subscriber_count(filter), 0);
        }
        assert!(registry.is_empty());
    }

    #[test]
    fn malformed_published_topics_are_rejected() {
        let registry = registry(&[(1, "#")]);
        for (topic, kind) in [
            ("", TopicErrorKind::Empty),
            ("a/+", TopicErrorKind::WildcardInTopic),
            ("#", TopicErrorKind::WildcardInTopic),
            ("a/b#", TopicErrorKind::WildcardInTopic),
        ] {
            let mut called = false;
            let error = registry
                .for_each_match(topic, |_| called = true)
                .unwrap_err();
            assert_eq!(error.kind(), kind, "{topic}");
            assert!(!called, "{topic}");
            assert_eq!(registry.count_matches(topic), Err(error));
        }
        assert_eq!(
            registry.count_matches("a/+").unwrap_err().to_string(),
            "invalid topic 'a/+': '+' is a wildcard, allowed only in subscription filters, not in a published topic"
        );
    }

    #[test]
    fn the_first_matching_filter_sorts_first() {
        let registry = registry(&[(1, "a/b"), (2, "a/+"), (3, "#"), (4, "x/#"), (5, "a/b/c")]);
        let first = |topic| registry.first_matching_filter(topic).expect(topic);
        assert_eq!(first("a/b").as_deref(), Some("#"));
        let registry = self::registry(&[(1, "a/b"), (2, "a/+"), (4, "x/#")]);
        let first = |topic| registry.first_matching_filter(topic).expect(topic);
        assert_eq!(first("a/b").as_deref(), Some("a/+"));
        assert_eq!(first("a/c").as_deref(), Some("a/+"));
        assert_eq!(first("x").as_deref(), Some("x/#"));
        assert_eq!(first("y"), None);
        assert!(registry.first_matching_filter("a/#").is_err());
    }

    #[test]
    fn subscribe_and_unsubscribe_report_changes() {
        let mut registry = Registry::new();
        assert_eq!(registry.subscribe(1, "a/+"), Ok(true));
        assert_eq!(registry.subscribe(1, "a/+"), Ok(false));
        assert_eq!(registry.len(), 1);
        assert!(registry.is_subscribed(1, "a/+"));
        assert!(!registry.is_subscribed(1, "a/b"));
        assert!(!registry.is_subscribed(2, "a/+"));
        assert_eq!(registry.unsubscribe(2, "a/+"), Ok(false));
        assert_eq!(registry.unsubscribe(1, "a/b"), Ok(false));
        assert_eq!(registry.unsubscribe(1, "never/seen"), Ok(false));
        assert_eq!(registry.unsubscribe(1, "a"), Ok(false));
        assert_eq!(registry.unsubscribe(1, "a/+"), Ok(true));
        assert_eq!(registry.unsubscribe(1, "a/+"), Ok(false));
        assert!(!registry.is_subscribed(1, "a/+"));
        assert_eq!(registry.len(), 0);
        assert!(registry.is_empty());
        assert_eq!(registry.unsubscribe_all(1), 0);
    }

    #[test]
    fn unsubscribe_keeps_other_subscriptions() {
        let mut registry = registry(&[(1, "a/b"), (2, "a/b"), (1, "a/b/c"), (1, "a/#")]);
        assert_eq!(registry.unsubscribe(1, "a/b"), Ok(true));
        assert_eq!(receivers(&registry, "a/b"), vec![1, 2]);
        assert_eq!(receivers(&registry, "a/b/c"), vec![1]);
        assert_eq!(registry.unsubscribe(1, "a/#"), Ok(true));
        assert_eq!(receivers(&registry, "a/b"), vec![2]);
        assert_eq!(registry.topics(1), vec!["a/b/c"]);
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn topics_in_subscription_order() {
        let mut registry = registry(&[
            (1, "z"),
            (1, "a/#"),
            (2, "q"),
            (1, "m/+/n"),
            (1, "/"),
            (1, "a//b"),
        ]);
        assert_eq!(registry.topics(1), vec!["z", "a/#", "m/+/n", "/", "a//b"]);
        registry.unsubscribe(1, "a/#").unwrap();
        registry.subscribe(1, "a/#").unwrap();
        registry.subscribe(1, "z").unwrap();
        assert_eq!(registry.topics(1), vec!["z", "m/+/n", "/", "a//b", "a/#"]);
        assert_eq!(registry.topics(2), vec!["q"]);
        assert_eq!(registry.topics(3), Vec::<String>::new());
    }

    #[test]
    fn subscriber_count_is_per_exact_filter() {
        let mut registry = registry(&[(1, "a/b"), (2, "a/b"), (3, "a/+"), (1, "a/+"), (4, "#")]);
        assert_eq!(registry.subscriber_count("a/b"), 2);
        assert_eq!(registry.subscriber_count("a/+"), 2);
        assert_eq!(registry.subscriber_count("#"), 1);
        assert_eq!(registry.subscriber_count("a"), 0);
        assert_eq!(registry.subscriber_count("a/c"), 0);
        assert_eq!(registry.count_matches("a/b"), Ok(4));
        registry.unsubscribe_all(1);
        assert_eq!(registry.subscriber_count("a/b"), 1);
        assert_eq!(registry.subscriber_count("a/+"), 1);
    }

    #[test]
    fn count_matches_counts_distinct_keys() {
        let mut registry = Registry::new();
        for key in 0..100u64 {
            registry.subscribe(key, "room/1").unwrap();
            if key % 2 == 0 {
                registry.subscribe(key, "room/+").unwrap();
            }
            if key % 3 == 0 {
                registry.subscribe(key, "#").unwrap();
            }
        }
        registry.subscribe(1000, "room/+").unwrap();
        registry.subscribe(1001, "room/#").unwrap();
        assert_eq!(registry.count_matches("room/1"), Ok(102));
        assert_eq!(registry.count_matches("room/2"), Ok(50 + 17 + 2));
        assert_eq!(registry.count_matches("room"), Ok(34 + 1));
        assert_eq!(registry.count_matches("elsewhere"), Ok(34));
    }

    #[test]
    fn unsubscribe_all_prunes_everything() {
        let mut registry = Registry::new();
        // Fewer under Miri, which interprets every step (1200 keys take it over 6 minutes); still past
        // 100, so that `room/{}` is shared by several keys.
        let keys: u64 = if cfg!(miri) { 110 } else { 10_000 };
        for key in 0..keys {
            let filters = [
                format!("user/{key}"),
                format!("room/{}", key % 100),
                format!("room/{}/+", key % 7),
                format!("device/{}/#", key % 1000),
                "room/#".to_owned(),
                "+/+/status".to_owned(),
                "#".to_owned(),
            ];
            for filter in &filters {
                assert_eq!(registry.subscribe(key, filter), Ok(true));
            }
        }
        assert_eq!(registry.len(), 7 * keys as usize);
        assert_eq!(registry.count_matches("room/3"), Ok(keys as usize));
        assert_eq!(registry.count_matches("user/42/x"), Ok(keys as usize));
        for key in 0..keys {
            assert_eq!(registry.unsubscribe_all(key), 7);
        }
        assert_eq!(registry.len(), 0);
        assert!(registry.is_empty());
        assert_eq!(registry.count_matches("room/3"), Ok(0));
        assert_eq!(registry.subscriber_count("#"), 0);
        assert_eq!(registry.topics(5), Vec::<String>::new());
        // The registry is as good as new afterwards.
        assert_eq!(registry.subscribe(1, "room/3"), Ok(true));
        assert_eq!(receivers(&registry, "room/3"), vec![1]);
    }

    #[test]
    fn mixed_unsubscribe_paths_prune_everything() {
        let mut registry = Registry::new();
        let keys: u64 = if cfg!(miri) { 50 } else { 1_000 }; // Miri interprets every step
        for key in 0..keys {
            for filter in ["a/b/c", "a/+/c", "a/#", "+/b/#", "x"] {
                registry.subscribe(key, filter).unwrap();
            }
        }
        for key in 0..keys {
            if key % 2 == 0 {
                assert_eq!(registry.unsubscribe(key, "a/+/c"), Ok(true));
                assert_eq!(registry.unsubscribe(key, "x"), Ok(true));
                assert_eq!(registry.unsubscribe_all(key), 3);
            } else {
                for filter in ["x", "a/#", "a/b/c", "+/b/#", "a/+/c"] {
                    assert_eq!(registry.unsubscribe(key, filter), Ok(true));
                }
                assert_eq!(registry.unsubscribe_all(key), 0);
            }
        }
        assert!(registry.is_empty());
        assert_eq!(registry.len(), 0);
    }
}
