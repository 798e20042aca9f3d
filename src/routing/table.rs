//! The compiled route table: a segment trie plus a hash map of fully static paths.

use std::collections::HashMap;
use std::fmt;

use super::pattern::{normalize, Pattern, PatternError, PatternErrorKind, Segment};
use super::percent::percent_decode;

/// A set of route patterns, each with a value, matched against request paths.
///
/// Build it once with [`insert`](Self::insert), then call [`find`](Self::find) per request.
///
/// # Matching rules
///
/// - Paths are matched as given (still percent-encoded), case-sensitively, without the query
///   string (the caller strips `?...`). A path that does not start with `/` matches nothing.
/// - One trailing slash is ignored on both sides: `/connect/` matches `/connect`, and a route
///   registered as `/connect/` is the route `/connect`.
/// - At each segment a static segment beats a parameter, which beats a wildcard, whatever the
///   insertion order. If the preferred branch fails further down, the next one is tried
///   (backtracking): with `/a/:x/c` and `/a/b/d`, the path `/a/b/c` matches `/a/:x/c`.
/// - `:name` matches one non-empty segment. A trailing `*` matches the rest of the path, also
///   when it is empty: `/files/*` matches `/files`, `/files/`, `/files/a` and `/files/a/b`
///   (like Express). A wildcard captures nothing; the caller has the full path.
///
/// # Cost
///
/// A path equal to a fully static route is found with one hash lookup. Otherwise the trie is
/// walked one segment at a time; each trie node is visited at most once per lookup, so the cost
/// is O(segments) for the usual tables and never more than the size of the table. Neither path
/// allocates; only the captured parameters do (one `Vec` and one `String` per parameter).
pub struct RouteTable<T> {
    routes: Vec<Route<T>>,
    /// Fully static routes by normalized pattern: the fast path.
    statics: HashMap<Box<str>, usize>,
    root: Node,
}

/// One registered route.
struct Route<T> {
    /// The pattern as it was given (for error messages).
    pattern: Box<str>,
    segments: Vec<Segment>,
    param_count: usize,
    value: T,
}

/// A trie node: the routes that end here and the branches one segment further.
#[derive(Default)]
struct Node {
    /// The route whose pattern ends exactly at this node.
    route: Option<usize>,
    /// The route whose pattern ends with a `*` just after this node.
    wildcard: Option<usize>,
    statics: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
}

/// A successful [`RouteTable::find`]: the route's value and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    /// The value given to [`RouteTable::insert`] for the matching pattern.
    pub value: &'a T,
    /// `(name, percent-decoded value)` for each `:name` of the pattern, in pattern order.
    /// A `*` adds nothing. Empty (and unallocated) when the pattern has no parameters.
    pub params: Vec<(&'a str, String)>,
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable {
            routes: Vec::new(),
            statics: HashMap::new(),
            root: Node::default(),
        }
    }

    /// Adds `pattern` with its `value`.
    ///
    /// Fails, leaving the table unchanged, if the pattern is invalid (see the
    /// [module documentation](super)) or if a route of the same shape is already there: patterns
    /// that differ only in parameter names (`/a/:x`, `/a/:y`) or in a trailing slash (`/a`,
    /// `/a/`) are the same route.
    pub fn insert(&mut self, pattern: &str, value: T) -> Result<(), PatternError> {
        let parsed = Pattern::parse(pattern)?;
        let index = self.routes.len();
        let mut node = &mut self.root;
        let mut wildcard = false;
        for segment in &parsed.segments {
            node = match segment {
                Segment::Static(text) => node.statics.entry(text.clone()).or_default(),
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
                Segment::Wildcard => {
                    wildcard = true;
                    break;
                }
            };
        }
        let slot = if wildcard {
            &mut node.wildcard
        } else {
            &mut node.route
        };
        if let Some(existing) = *slot {
            // The walk may have left empty nodes behind; they never match anything.
            return Err(PatternError::new(
                pattern,
                PatternErrorKind::Duplicate {
                    existing: self.routes[existing].pattern.to_string(),
                },
            ));
        }
        *slot = Some(index);
        if parsed.is_static() {
            self.statics.insert(parsed.normalized, index);
        }
        let param_count = parsed
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Param(_)))
            .count();
        self.routes.push(Route {
            pattern: pattern.into(),
            segments: parsed.segments,
            param_count,
            value,
        });
        Ok(())
    }

    /// Finds the route for `path` (the path part of the request target, without `?query`).
    ///
    /// Returns `None` when no route matches. See the [type documentation](Self) for the rules.
    pub fn find(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        if !path.starts_with('/') {
            return None;
        }
        let path = normalize(path);
        if let Some(&index) = self.statics.get(path) {
            return Some(RouteMatch {
                value: &self.routes[index].value,
                params: Vec::new(),
            });
        }
        // `rest` is either empty (end of path) or starts with '/'.
        let rest = if path == "/" { "" } else { path };
        let index = self.root.lookup(rest)?;
        let route = &self.routes[index];
        Some(RouteMatch {
            value: &route.value,
            params: route.capture(rest),
        })
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True if the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.routes.iter().map(|r| (&r.pattern, &r.value)))
            .finish()
    }
}

impl Node {
    /// The route matching `rest` from this node, preferring static, then parameter, then
    /// wildcard branches. `rest` is empty or starts with '/'.
    fn lookup(&self, rest: &str) -> Option<usize> {
        if rest.is_empty() {
            return self.route.or(self.wildcard);
        }
        let (segment, tail) = split_first(rest);
        if !self.statics.is_empty() {
            if let Some(found) = self.statics.get(segment).and_then(|n| n.lookup(tail)) {
                return Some(found);
            }
        }
        if !segment.is_empty() {
            if let Some(found) = self.param.as_ref().and_then(|n| n.lookup(tail)) {
                return Some(found);
            }
        }
        self.wildcard
    }
}

impl<T> Route<T> {
    /// The parameters of this route in `rest`, which it is known to match.
    fn capture<'a>(&'a self, mut rest: &str) -> Vec<(&'a str, String)> {
        if self.param_count == 0 {
            return Vec::new();
        }
        let mut params = Vec::with_capacity(self.param_count);
        for segment in &self.segments {
            let (value, tail) = split_first(rest);
            match segment {
                Segment::Static(_) => {}
                Segment::Param(name) => params.push((&**name, percent_decode(value).into_owned())),
                Segment::Wildcard => break,
            }
            rest = tail;
        }
        params
    }
}

/// Splits `"/seg/more"` into `("seg", "/more")` and `"/seg"` into `("seg", "")`.
fn split_first(rest: &str) -> (&str, &str) {
    let after = rest.strip_prefix('/').unwrap_or(rest);
    match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(patterns: &[&'static str]) -> RouteTable<&'static str> {
        let mut t = RouteTable::new();
        for p in patterns {
            t.insert(p, *p).unwrap();
        }
        t
    }

    /// The pattern that matches `path`, or `None`.
    fn hit(t: &RouteTable<&'static str>, path: &str) -> Option<&'static str> {
        t.find(path).map(|m| *m.value)
    }

    fn params(t: &RouteTable<&'static str>, path: &str) -> Vec<(String, String)> {
        let m = t.find(path).expect("no match");
        m.params
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_table() {
        let t: RouteTable<()> = RouteTable::default();
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert!(t.find("/").is_none());
        assert!(t.find("/a").is_none());
    }

    #[test]
    fn static_routes() {
        let t = table(&["/", "/connect", "/ws/chat", "/ws/chat/admin"]);
        assert_eq!(t.len(), 4);
        assert!(!t.is_empty());
        assert_eq!(hit(&t, "/"), Some("/"));
        assert_eq!(hit(&t, "/connect"), Some("/connect"));
        assert_eq!(hit(&t, "/ws/chat"), Some("/ws/chat"));
        assert_eq!(hit(&t, "/ws/chat/admin"), Some("/ws/chat/admin"));
        assert_eq!(hit(&t, "/ws"), None);
        assert_eq!(hit(&t, "/ws/chat/admin/x"), None);
        assert_eq!(hit(&t, "/Connect"), None, "case-sensitive");
        assert_eq!(hit(&t, "/connectx"), None);
        assert!(t.find("/connect").unwrap().params.is_empty());
    }

    #[test]
    fn paths_without_leading_slash_match_nothing() {
        let t = table(&["/", "/*", "/a"]);
        assert_eq!(hit(&t, ""), None);
        assert_eq!(hit(&t, "a"), None);
        assert_eq!(hit(&t, "*"), None);
        assert_eq!(hit(&t, "http://host/a"), None);
    }

    #[test]
    fn parameters() {
        let t = table(&["/chat/:room", "/users/:id/posts/:post"]);
        assert_eq!(hit(&t, "/chat/lobby"), Some("/chat/:room"));
        assert_eq!(params(&t, "/chat/lobby"), kv(&[("room", "lobby")]));
        assert_eq!(
            params(&t, "/users/42/posts/7"),
            kv(&[("id", "42"), ("post", "7")])
        );
        // A parameter needs a non-empty segment and exactly one segment.
        assert_eq!(hit(&t, "/chat"), None);
        assert_eq!(hit(&t, "/chat/"), None);
        assert_eq!(hit(&t, "/chat/a/b"), None);
        assert_eq!(hit(&t, "/users//posts/7"), None);
    }

    #[test]
    fn params_are_in_pattern_order_with_names_from_their_route() {
        // Two routes share the parameter branch but name it differently.
        let t = table(&["/a/:first/x/:second", "/a/:other/y"]);
        assert_eq!(
            params(&t, "/a/1/x/2"),
            kv(&[("first", "1"), ("second", "2")])
        );
        assert_eq!(params(&t, "/a/1/y"), kv(&[("other", "1")]));
    }

    #[test]
    fn wildcard() {
        let t = table(&["/files/*"]);
        for path in ["/files", "/files/", "/files/a", "/files/a/b", "/files/a/b/"] {
            assert_eq!(hit(&t, path), Some("/files/*"), "{path}");
            assert!(t.find(path).unwrap().params.is_empty(), "{path}");
        }
        assert_eq!(hit(&t, "/filesx"), None);
        assert_eq!(hit(&t, "/"), None);
        assert_eq!(hit(&t, "/other/a"), None);
    }

    #[test]
    fn root_wildcard_matches_everything() {
        let t = table(&["/*"]);
        for path in ["/", "/a", "/a/b/c", "//", "/a//b"] {
            assert_eq!(hit(&t, path), Some("/*"), "{path}");
        }
    }

    #[test]
    fn wildcard_after_parameter() {
        let t = table(&["/u/:name/*"]);
        assert_eq!(params(&t, "/u/bob/x/y"), kv(&[("name", "bob")]));
        assert_eq!(params(&t, "/u/bob"), kv(&[("name", "bob")]));
        assert_eq!(hit(&t, "/u"), None);
    }

    #[test]
    fn static_beats_parameter_beats_wildcard() {
        // Registered from weakest to strongest, so insertion order cannot explain the result.
        let t = table(&["/chat/*", "/chat/:room", "/chat/new"]);
        assert_eq!(hit(&t, "/chat/new"), Some("/chat/new"));
        assert_eq!(hit(&t, "/chat/lobby"), Some("/chat/:room"));
        assert_eq!(hit(&t, "/chat/lobby/x"), Some("/chat/*"));
        assert_eq!(hit(&t, "/chat"), Some("/chat/*"));
        // The same, with strongest first.
        let t = table(&["/chat/new", "/chat/:room", "/chat/*"]);
        assert_eq!(hit(&t, "/chat/new"), Some("/chat/new"));
        assert_eq!(hit(&t, "/chat/lobby"), Some("/chat/:room"));
        assert_eq!(hit(&t, "/chat/lobby/x"), Some("/chat/*"));
    }

    #[test]
    fn exact_route_beats_wildcard_at_the_same_node() {
        let t = table(&["/files/*", "/files"]);
        assert_eq!(hit(&t, "/files"), Some("/files"));
        assert_eq!(hit(&t, "/files/"), Some("/files"));
        assert_eq!(hit(&t, "/files/a"), Some("/files/*"));
    }

    #[test]
    fn precedence_is_per_level() {
        // At the first level the static `a` wins, even though the route under it is a parameter
        // and the other route is all static below a parameter.
        let t = table(&["/a/:x", "/:y/b"]);
        assert_eq!(hit(&t, "/a/b"), Some("/a/:x"));
        assert_eq!(hit(&t, "/z/b"), Some("/:y/b"));
    }

    #[test]
    fn backtracking() {
        let t = table(&["/a/:x/c", "/a/b/d"]);
        assert_eq!(hit(&t, "/a/b/c"), Some("/a/:x/c"));
        assert_eq!(params(&t, "/a/b/c"), kv(&[("x", "b")]));
        assert_eq!(hit(&t, "/a/b/d"), Some("/a/b/d"));
        assert_eq!(hit(&t, "/a/b/e"), None);
    }

    #[test]
    fn backtracking_to_a_wildcard() {
        let t = table(&["/a/*", "/a/b/c", "/a/:x/d"]);
        assert_eq!(hit(&t, "/a/b/c"), Some("/a/b/c"));
        assert_eq!(hit(&t, "/a/b/d"), Some("/a/:x/d"));
        assert_eq!(hit(&t, "/a/b/e"), Some("/a/*"));
        assert_eq!(hit(&t, "/a/b"), Some("/a/*"));
        // A deeper wildcard wins over a shallower one, as it is reached first.
        let t = table(&["/*", "/a/:x/*"]);
        assert_eq!(hit(&t, "/a/b/c"), Some("/a/:x/*"));
        assert_eq!(hit(&t, "/a"), Some("/*"));
    }

    #[test]
    fn deep_backtracking() {
        let t = table(&["/:a/:b/:c/end", "/x/y/z/other", "/x/:b/z/more"]);
        assert_eq!(
            params(&t, "/x/y/z/end"),
            kv(&[("a", "x"), ("b", "y"), ("c", "z")])
        );
        assert_eq!(params(&t, "/x/y/z/more"), kv(&[("b", "y")]));
        assert_eq!(hit(&t, "/x/y/z/other"), Some("/x/y/z/other"));
    }

    #[test]
    fn trailing_slash() {
        let t = table(&["/connect", "/room/:id/", "/"]);
        assert_eq!(hit(&t, "/connect/"), Some("/connect"));
        assert_eq!(hit(&t, "/connect"), Some("/connect"));
        assert_eq!(hit(&t, "/room/7"), Some("/room/:id/"));
        assert_eq!(params(&t, "/room/7/"), kv(&[("id", "7")]));
        // Only one slash is stripped.
        assert_eq!(hit(&t, "/connect//"), None);
        assert_eq!(hit(&t, "/"), Some("/"));
    }

    #[test]
    fn percent_decoded_params() {
        let t = table(&["/chat/:room", "/f/:name/raw"]);
        assert_eq!(params(&t, "/chat/my%20room"), kv(&[("room", "my room")]));
        assert_eq!(params(&t, "/chat/caf%C3%A9"), kv(&[("room", "café")]));
        assert_eq!(params(&t, "/chat/100%"), kv(&[("room", "100%")]));
        assert_eq!(params(&t, "/chat/%zz"), kv(&[("room", "%zz")]));
        assert_eq!(params(&t, "/chat/%FF"), kv(&[("room", "\u{FFFD}")]));
        // An encoded slash is part of one segment, decoded after splitting.
        assert_eq!(params(&t, "/f/a%2Fb/raw"), kv(&[("name", "a/b")]));
    }

    #[test]
    fn static_segments_match_the_raw_path() {
        let t = table(&["/my%20room", "/café"]);
        assert_eq!(hit(&t, "/my%20room"), Some("/my%20room"));
        assert_eq!(hit(&t, "/my room"), None);
        assert_eq!(hit(&t, "/café"), Some("/café"));
        assert_eq!(hit(&t, "/caf%C3%A9"), None);
    }

    #[test]
    fn duplicates_are_rejected() {
        let mut t = table(&["/a/:x", "/b", "/c/*", "/"]);
        let cases = [
            ("/a/:y", "/a/:x"),
            ("/a/:x", "/a/:x"),
            ("/b/", "/b"),
            ("/c/*/", "/c/*"),
            ("/", "/"),
        ];
        for (pattern, existing) in cases {
            let e = t.insert(pattern, "dup").unwrap_err();
            assert_eq!(e.pattern(), pattern);
            assert_eq!(
                e.kind(),
                &PatternErrorKind::Duplicate {
                    existing: existing.into()
                }
            );
        }
        assert_eq!(
            t.insert("/a/:y", "dup").unwrap_err().to_string(),
            "duplicate route pattern \"/a/:y\": it has the same shape as \"/a/:x\", registered before"
        );
        // The table is unchanged.
        assert_eq!(t.len(), 4);
        assert_eq!(hit(&t, "/a/1"), Some("/a/:x"));
        assert_eq!(params(&t, "/a/1"), kv(&[("x", "1")]));
        // Different shapes are not duplicates.
        t.insert("/a/:x/b", "/a/:x/b").unwrap();
        t.insert("/a/*", "/a/*").unwrap();
        t.insert("/c", "/c").unwrap();
        t.insert("/c/:x", "/c/:x").unwrap();
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        let mut t = RouteTable::new();
        let cases = [
            ("connect", "it must start with '/'"),
            ("/a/:", "empty parameter name in segment 2"),
            ("/a/*/b", "'*' in segment 2 must be the last segment"),
            ("/a/b*", "'*' must be a whole segment"),
            ("/:x/:x", "parameter name \"x\" is used more than once"),
            ("/a//b", "empty segment 2"),
        ];
        for (pattern, problem) in cases {
            let msg = t.insert(pattern, ()).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("invalid route pattern {pattern:?}: ")),
                "{msg}"
            );
            assert!(msg.contains(problem), "{msg}");
        }
        assert!(t.is_empty());
    }

    #[test]
    fn failed_insert_leaves_no_matching_trace() {
        // A duplicate creates no route, and the empty nodes its walk may leave match nothing.
        let mut t = table(&["/a/:x"]);
        assert!(t.insert("/a/:y", "dup").is_err());
        assert_eq!(hit(&t, "/a"), None);
        assert_eq!(hit(&t, "/a/1/2"), None);
    }

    #[test]
    fn many_siblings() {
        let mut t = RouteTable::new();
        let n = if cfg!(miri) { 50 } else { 200 }; // Miri interprets every step
        for i in 0..n {
            t.insert(&format!("/r{i}/:id"), i).unwrap();
            t.insert(&format!("/s/{i}"), 1000 + i).unwrap();
        }
        assert_eq!(t.len(), 2 * n);
        let m = t.find(&format!("/r{}/abc", n / 2 + 3)).unwrap();
        assert_eq!(*m.value, n / 2 + 3);
        assert_eq!(m.params, vec![("id", "abc".to_string())]);
        assert_eq!(
            *t.find(&format!("/s/{}/", n - 1)).unwrap().value,
            1000 + n - 1
        );
        assert!(t.find(&format!("/s/{n}")).is_none());
    }

    #[test]
    fn long_paths_do_not_recurse_past_the_table() {
        let t = table(&["/a/:x", "/*"]);
        let long = "/a".repeat(100_000);
        assert_eq!(hit(&t, &long), Some("/*"));
        let t = table(&["/a/:x"]);
        assert_eq!(hit(&t, &long), None);
    }

    #[test]
    fn debug_lists_patterns() {
        let t = table(&["/a", "/b/:c"]);
        assert_eq!(format!("{t:?}"), r#"{"/a": "/a", "/b/:c": "/b/:c"}"#);
    }
}
