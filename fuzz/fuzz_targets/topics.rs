//! The MQTT topic registry, as a sequence of operations checked after each against a model: a list of
//! (connection, filter) pairs and matching written plainly.
//!
//! Input: one operation per line, a letter, a connection (the byte modulo 4: `0`..`3`), then a filter or
//! a topic: `s1a/+/c` subscribes connection 1 to `a/+/c`, `u1a/+/c` unsubscribes it, `x1` unsubscribes
//! it from everything, `p0a/b/c` publishes to `a/b/c`.
//! Checks every answer of the registry: validation, what changed, who a publish reaches (each once),
//! the count of subscriptions, each connection's filters in order, and that nothing is left at the end.

#![no_main]

use hyperws::pubsub::Registry;
use libfuzzer_sys::fuzz_target;

const CONNECTIONS: u8 = 4;

fuzz_target!(|data: &[u8]| {
    let mut registry = Registry::new();
    let mut model: Vec<(u8, String)> = Vec::new();
    for line in data.split(|&c| c == b'\n') {
        let [op, connection, text @ ..] = line else {
            continue;
        };
        let connection = connection % CONNECTIONS;
        let Ok(text) = std::str::from_utf8(text) else {
            continue;
        };
        let subscribed = model
            .iter()
            .position(|(c, f)| *c == connection && f == text);
        match op {
            b's' => {
                let added = registry.subscribe(connection, text).ok();
                let expected = is_valid_filter(text).then_some(subscribed.is_none());
                assert_eq!(added, expected, "subscribe {text:?}");
                if added == Some(true) {
                    model.push((connection, text.to_owned()));
                }
            }
            b'u' => {
                let removed = registry.unsubscribe(connection, text).ok();
                let expected = is_valid_filter(text).then_some(subscribed.is_some());
                assert_eq!(removed, expected, "unsubscribe {text:?}");
                if let Some(at) = subscribed {
                    model.remove(at);
                }
            }
            b'x' => {
                let count = model.iter().filter(|(c, _)| *c == connection).count();
                assert_eq!(registry.unsubscribe_all(connection), count);
                model.retain(|(c, _)| *c != connection);
            }
            b'p' => check_publish(&registry, &model, text),
            _ => {}
        }
        check_state(&registry, &model, text);
    }
    for connection in 0..CONNECTIONS {
        registry.unsubscribe_all(connection);
    }
    assert_eq!(registry.len(), 0);
    assert!(registry.is_empty());
});

fn check_publish(registry: &Registry<u8>, model: &[(u8, String)], topic: &str) {
    let mut reached = Vec::new();
    let result = registry.for_each_match(topic, |connection| reached.push(connection));
    assert_eq!(result.is_ok(), is_valid_topic(topic), "publish {topic:?}");
    if result.is_err() {
        assert!(reached.is_empty());
        return;
    }
    assert_eq!(registry.count_matches(topic), Ok(reached.len()));
    reached.sort_unstable();
    let mut expected: Vec<u8> = model
        .iter()
        .filter(|(_, filter)| matches(filter, topic))
        .map(|(c, _)| *c)
        .collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(reached, expected, "who a publish to {topic:?} reaches");
}

fn check_state(registry: &Registry<u8>, model: &[(u8, String)], text: &str) {
    assert_eq!(registry.len(), model.len());
    assert_eq!(registry.is_empty(), model.is_empty());
    let exact = model.iter().filter(|(_, f)| f == text);
    assert_eq!(registry.subscriber_count(text), exact.clone().count());
    for connection in 0..CONNECTIONS {
        let filters: Vec<String> = model
            .iter()
            .filter(|(c, _)| *c == connection)
            .map(|(_, f)| f.clone())
            .collect();
        assert_eq!(registry.topics(connection), filters);
        let is_subscribed = exact.clone().any(|(c, _)| *c == connection);
        assert_eq!(registry.is_subscribed(connection, text), is_subscribed);
    }
}

fn is_valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| match *level {
            "#" => i + 1 == levels.len(),
            "+" => true,
            level => !level.contains(['+', '#']),
        })
}

fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// MQTT matching, level by level: `+` is any one level, `#` is whatever is left (even nothing).
fn matches(filter: &str, topic: &str) -> bool {
    let (mut filter, mut topic) = (filter.split('/'), topic.split('/'));
    loop {
        match (filter.next(), topic.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            _ => return false,
        }
    }
}
