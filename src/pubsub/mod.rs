//! Topic registry with MQTT wildcards, sans I/O: who is subscribed to what, and who a publish reaches.
//!
//! Topics are levels separated by `/`. A subscription filter may use `+` as a whole level (exactly one level) and
//! `#` as the whole last level (any number of remaining levels, including none: `a/#` matches `a`). Published
//! topics contain no wildcard. Matching walks a trie, so a publish costs O(levels × wildcard branching + receivers)
//! and a key matched through several of its filters is yielded once.
//!
//! ```
//! use hyperws::pubsub::Registry;
//!
//! let mut registry = Registry::new();
//! registry.subscribe(1u64, "chat/+/messages")?;
//! registry.subscribe(2u64, "chat/#")?;
//! registry.subscribe(2u64, "chat/lobby/messages")?;
//! let mut receivers = Vec::new();
//! registry.for_each_match("chat/lobby/messages", |key| receivers.push(key))?;
//! receivers.sort_unstable();
//! assert_eq!(receivers, [1, 2]);
//! assert_eq!(registry.unsubscribe_all(2), 2);
//! # Ok::<(), hyperws::pubsub::TopicError>(())
//! ```

mod fanout;
mod matches;
mod registry;
mod run;
mod topic;
mod trie;

pub use fanout::{Published, RunPublished, Topics};
pub use registry::Registry;
pub use run::{FrozenRun, PublishRun};
pub use topic::{
    validate_filter, validate_topic, TopicError, TopicErrorKind, MULTI_LEVEL, SEPARATOR,
    SINGLE_LEVEL,
};
