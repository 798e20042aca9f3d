//! URL routing: route patterns, the compiled route table, and the prefix helper for nested
//! routers. Sans-I/O and Python-free; the Python layer compiles each router's routes into a
//! [`RouteTable`] once, and matching a request costs no Python.
//!
//! # Patterns
//!
//! HyperExpress/Express style, segments separated by `/`:
//!
//! - static text: `/chat/lobby`;
//! - `:name`: one non-empty segment, captured (percent-decoded) under `name`: `/chat/:room`;
//! - a trailing `*`: the rest of the path, possibly empty: `/files/*` matches `/files`,
//!   `/files/`, `/files/a` and `/files/a/b`. It captures nothing.
//!
//! At each level static beats parameter beats wildcard, with backtracking; one trailing slash is
//! ignored (`/connect/` is `/connect`). Invalid patterns and duplicates (same shape, such as
//! `/a/:x` and `/a/:y`) are refused with a [`PatternError`] naming the pattern and the problem.
//!
//! ```
//! use hyperws::routing::{join_prefix, RouteTable};
//!
//! let mut table = RouteTable::new();
//! table.insert(&join_prefix("/ws", "/chat/:room"), "room").unwrap();
//! table.insert("/ws/chat/new", "new").unwrap();
//! table.insert("/static/*", "files").unwrap();
//!
//! let m = table.find("/ws/chat/my%20room").unwrap();
//! assert_eq!(*m.value, "room");
//! assert_eq!(m.params, vec![("room", "my room".to_string())]);
//! assert_eq!(*table.find("/ws/chat/new/").unwrap().value, "new");
//! assert_eq!(*table.find("/static/css/site.css").unwrap().value, "files");
//! assert!(table.find("/nope").is_none());
//!
//! let err = table.insert("/ws/chat/:id", "dup").unwrap_err();
//! assert!(err.to_string().starts_with("duplicate route pattern \"/ws/chat/:id\""));
//! ```

mod pattern;
mod percent;
mod prefix;
mod table;

pub use pattern::{PatternError, PatternErrorKind};
pub use percent::percent_decode;
pub use prefix::join_prefix;
pub use table::{RouteMatch, RouteTable};
