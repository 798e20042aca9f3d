//! Names on the broker: the channel (Redis) or subject (NATS) a topic is published on, and the broker
//! subscriptions that carry what an MQTT filter matches.
//!
//! Redis: a topic is the channel `prefix:topic`. A filter without wildcards is that channel; a filter with
//! `+` is a glob pattern where `+` becomes `*` (which also crosses `/`, so it over-matches: the receiver
//! re-checks with MQTT semantics) and the literal levels have their glob characters escaped.
//!
//! NATS: a topic is the subject `prefix.t1.t2…`, one token per level; `+` is `*`, which matches exactly
//! one token. A level is kept as it is when it is made of ASCII letters, digits, `-` and `_`; any other
//! byte is written `%XX` (hex), and an empty level is the token `%`. So every topic has a valid subject,
//! and two topics never share one.
//!
//! `P/#` also matches `P` itself (MQTT), which `P.>` does not (NATS `>` needs one token or more; the Redis
//! glob `P/*` needs the `/`): such a filter is carried by two subscriptions, the one of `P` and `P`'s
//! deeper one. `#` alone is one subscription to everything under the prefix.

use std::fmt::Write;

use crate::pubsub::{MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL};

/// Which broker's naming rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Redis,
    Nats,
}

/// One subscription on the broker: a channel or subject, and whether it has wildcards (Redis subscribes
/// to patterns with another command).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subscription {
    pub name: String,
    pub pattern: bool,
}

/// The names of one app's topics on one broker.
#[derive(Debug)]
pub struct Naming {
    dialect: Dialect,
    prefix: String,
}

impl Naming {
    /// # Errors
    /// A prefix that is empty, or that the broker could not take as the start of a name.
    pub fn new(dialect: Dialect, prefix: &str) -> Result<Self, String> {
        let invalid = |why: &str| Err(format!("invalid pubsub_prefix {prefix:?}: {why}"));
        if prefix.is_empty() {
            return invalid("it must not be empty");
        }
        if dialect == Dialect::Nats {
            if prefix.contains(|c: char| c.is_whitespace() || c == '*' || c == '>') {
                return invalid("a NATS subject has no whitespace, '*' or '>'");
            }
            if prefix.split('.').any(str::is_empty) {
                return invalid("a NATS subject has no empty token");
            }
        }
        Ok(Self {
            dialect,
            prefix: prefix.to_owned(),
        })
    }

    /// The channel or subject `topic` (a valid published topic) is published on.
    pub fn channel(&self, topic: &str) -> String {
        match self.dialect {
            Dialect::Redis => format!("{}:{topic}", self.prefix),
            Dialect::Nats => {
                let mut subject = self.prefix.clone();
                for level in topic.split(SEPARATOR) {
                    subject.push('.');
                    push_token(&mut subject, level);
                }
                subject
            }
        }
    }

    /// The broker subscriptions that together carry every topic a valid `filter` matches.
    pub fn subscriptions(&self, filter: &str) -> Vec<Subscription> {
        match filter.strip_suffix(MULTI_LEVEL) {
            Some("") => vec![self.everything()],
            Some(parent) => {
                let parent = &parent[..parent.len() - SEPARATOR.len_utf8()];
                vec![self.exact_levels(parent), self.below(parent)]
            }
            None => vec![self.exact_levels(filter)],
        }
    }

    /// Which of [`Naming::subscriptions`]`(filter)` carries `topic` (a topic `filter` matches).
    pub fn carrier(&self, filter: &str, topic: &str) -> Subscription {
        match filter.strip_suffix(MULTI_LEVEL) {
            Some("") => self.everything(),
            Some(parent) => {
                let parent = &parent[..parent.len() - SEPARATOR.len_utf8()];
                if levels(topic) == levels(parent) {
                    self.exact_levels(parent)
                } else {
                    self.below(parent)
                }
            }
            None => self.exact_levels(filter),
        }
    }

    /// Every topic.
    fn everything(&self) -> Subscription {
        let name = match self.dialect {
            Dialect::Redis => format!("{}:*", glob_escaped(&self.prefix)),
            Dialect::Nats => format!("{}.>", self.prefix),
        };
        Subscription {
            name,
            pattern: true,
        }
    }

    /// The topics of `filter`'s levels exactly (a filter without `#`).
    fn exact_levels(&self, filter: &str) -> Subscription {
        let pattern = filter.split(SEPARATOR).any(|level| level == SINGLE_LEVEL);
        let name = match (self.dialect, pattern) {
            (Dialect::Redis, false) => self.channel(filter),
            (Dialect::Redis, true) => {
                let mut glob = glob_escaped(&self.prefix);
                glob.push(':');
                for (index, level) in filter.split(SEPARATOR).enumerate() {
                    if index > 0 {
                        glob.push(SEPARATOR);
                    }
                    if level == SINGLE_LEVEL {
                        glob.push('*');
                    } else {
                        glob.push_str(&glob_escaped(level));
                    }
                }
                glob
            }
            (Dialect::Nats, _) => {
                let mut subject = self.prefix.clone();
                for level in filter.split(SEPARATOR) {
                    subject.push('.');
                    if level == SINGLE_LEVEL {
                        subject.push('*');
                    } else {
                        push_token(&mut subject, level);
                    }
                }
                subject
            }
        };
        Subscription { name, pattern }
    }

    /// The topics with more levels than `filter` (a filter without `#`) that start with its levels.
    fn below(&self, filter: &str) -> Subscription {
        let exact = self.exact_levels(filter);
        let mut name = match (self.dialect, exact.pattern) {
            // A channel name is not glob-escaped.
            (Dialect::Redis, false) => {
                format!("{}:{}", glob_escaped(&self.prefix), glob_escaped(filter))
            }
            _ => exact.name,
        };
        name.push_str(match self.dialect {
            Dialect::Redis => "/*",
            Dialect::Nats => ".>",
        });
        Subscription {
            name,
            pattern: true,
        }
    }
}

fn levels(topic: &str) -> usize {
    topic.split(SEPARATOR).count()
}

/// A topic level as one NATS token (see the module documentation).
fn push_token(subject: &mut String, level: &str) {
    if level.is_empty() {
        subject.push('%');
        return;
    }
    for byte in level.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            subject.push(char::from(byte));
        } else {
            write!(subject, "%{byte:02X}").expect("writing to a String");
        }
    }
}

/// `text` matched literally by a Redis glob.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis() -> Naming {
        Naming::new(Dialect::Redis, "app").expect("valid prefix")
    }

    fn nats() -> Naming {
        Naming::new(Dialect::Nats, "app").expect("valid prefix")
    }

    fn names(subscriptions: Vec<Subscription>) -> Vec<(String, bool)> {
        subscriptions
            .into_iter()
            .map(|s| (s.name, s.pattern))
            .collect()
    }

    fn owned(names: &[(&str, bool)]) -> Vec<(String, bool)> {
        names.iter().map(|&(n, p)| (n.to_owned(), p)).collect()
    }

    #[test]
    fn redis_channels_are_the_topic_under_the_prefix() {
        assert_eq!(redis().channel("chat/lobby"), "app:chat/lobby");
        assert_eq!(redis().channel("a*b/[x]"), "app:a*b/[x]");
    }

    #[test]
    fn redis_subscriptions() {
        let naming = redis();
        for (filter, expected) in [
            ("chat/lobby", owned(&[("app:chat/lobby", false)])),
            ("a*b", owned(&[("app:a*b", false)])),
            ("chat/+", owned(&[("app:chat/*", true)])),
            ("+/x?y", owned(&[("app:*/x\\?y", true)])),
            ("#", owned(&[("app:*", true)])),
            (
                "chat/#",
                owned(&[("app:chat", false), ("app:chat/*", true)]),
            ),
            (
                "a[1]/#",
                owned(&[("app:a[1]", false), ("app:a\\[1\\]/*", true)]),
            ),
            ("+/#", owned(&[("app:*", true), ("app:*/*", true)])),
        ] {
            assert_eq!(names(naming.subscriptions(filter)), expected, "{filter}");
        }
        let special = Naming::new(Dialect::Redis, "a*").expect("valid prefix");
        assert_eq!(
            names(special.subscriptions("#")),
            owned(&[("a\\*:*", true)])
        );
        assert_eq!(special.channel("t"), "a*:t");
    }

    #[test]
    fn nats_subjects_escape_what_a_token_cannot_hold() {
        let naming = nats();
        assert_eq!(naming.channel("chat/lobby"), "app.chat.lobby");
        assert_eq!(naming.channel("a.b/c d"), "app.a%2Eb.c%20d");
        assert_eq!(naming.channel("*/>/%"), "app.%2A.%3E.%25");
        assert_eq!(naming.channel("/x/"), "app.%.x.%");
        assert_eq!(naming.channel("é"), "app.%C3%A9");
        assert_eq!(naming.channel("Ok-_9"), "app.Ok-_9");
    }

    #[test]
    fn nats_subscriptions() {
        let naming = nats();
        for (filter, expected) in [
            ("chat/lobby", owned(&[("app.chat.lobby", false)])),
            ("chat/+", owned(&[("app.chat.*", true)])),
            ("+/a.b", owned(&[("app.*.a%2Eb", true)])),
            ("#", owned(&[("app.>", true)])),
            (
                "chat/#",
                owned(&[("app.chat", false), ("app.chat.>", true)]),
            ),
            ("+/#", owned(&[("app.*", true), ("app.*.>", true)])),
        ] {
            assert_eq!(names(naming.subscriptions(filter)), expected, "{filter}");
        }
    }

    #[test]
    fn the_carrier_is_one_of_the_filters_subscriptions() {
        for naming in [redis(), nats()] {
            for (filter, topic, which) in [
                ("chat/#", "chat", 0),
                ("chat/#", "chat/a", 1),
                ("chat/#", "chat/a/b", 1),
                ("#", "x/y", 0),
                ("a/+", "a/b", 0),
                ("a/b", "a/b", 0),
            ] {
                assert_eq!(
                    naming.carrier(filter, topic),
                    naming.subscriptions(filter)[which],
                    "{filter} {topic}"
                );
            }
        }
    }

    #[test]
    fn prefixes_the_broker_cannot_take_are_refused() {
        assert!(Naming::new(Dialect::Redis, "").is_err());
        assert!(Naming::new(Dialect::Redis, "a b.*").is_ok());
        for prefix in ["", "a b", "a.*", "a>", "a..b", ".a", "a."] {
            assert!(Naming::new(Dialect::Nats, prefix).is_err(), "{prefix}");
        }
        assert!(Naming::new(Dialect::Nats, "org.app-1").is_ok());
    }
}
