//! Joining a mount prefix with a route pattern, for nested routers.

/// Joins a router's mount `prefix` with a route `pattern`, with exactly one `/` between them.
///
/// One trailing slash is dropped from the prefix, and a pattern of `/` (or empty) stands for the
/// prefix itself. A pattern without a leading `/` is joined with one. Nothing else is checked or
/// rewritten: [`RouteTable::insert`](super::RouteTable::insert) validates the result, so a bad
/// prefix (`ws`, `/ws//`) is reported there, naming the joined pattern. Nested mounts compose:
/// `join_prefix(&join_prefix("/api", "/v1"), "/chat/:room")` is `/api/v1/chat/:room`.
///
/// ```
/// # use hyperws::routing::join_prefix;
/// assert_eq!(join_prefix("/ws", "/connect"), "/ws/connect");
/// assert_eq!(join_prefix("/", "/x"), "/x");
/// assert_eq!(join_prefix("/ws/", "/"), "/ws");
/// ```
pub fn join_prefix(prefix: &str, pattern: &str) -> String {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if pattern.is_empty() || pattern == "/" {
        return if prefix.is_empty() {
            "/".to_owned()
        } else {
            prefix.to_owned()
        };
    }
    let mut joined = String::with_capacity(prefix.len() + pattern.len() + 1);
    joined.push_str(prefix);
    if !pattern.starts_with('/') {
        joined.push('/');
    }
    joined.push_str(pattern);
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_with_one_slash() {
        assert_eq!(join_prefix("/ws", "/connect"), "/ws/connect");
        assert_eq!(join_prefix("/ws/", "/connect"), "/ws/connect");
        assert_eq!(join_prefix("/ws", "connect"), "/ws/connect");
        assert_eq!(join_prefix("/ws", "/chat/:room/*"), "/ws/chat/:room/*");
        assert_eq!(join_prefix("/rooms/:id", "/chat"), "/rooms/:id/chat");
    }

    #[test]
    fn root_prefix_and_root_pattern() {
        assert_eq!(join_prefix("/", "/x"), "/x");
        assert_eq!(join_prefix("", "/x"), "/x");
        assert_eq!(join_prefix("/ws/", "/"), "/ws");
        assert_eq!(join_prefix("/ws", "/"), "/ws");
        assert_eq!(join_prefix("/ws", ""), "/ws");
        assert_eq!(join_prefix("/", "/"), "/");
        assert_eq!(join_prefix("", ""), "/");
    }

    #[test]
    fn nests() {
        let v1 = join_prefix("/api", "/v1/");
        assert_eq!(join_prefix(&v1, "/chat/:room"), "/api/v1/chat/:room");
        assert_eq!(join_prefix(&join_prefix("/", "/"), "/x"), "/x");
    }

    #[test]
    fn keeps_the_pattern_trailing_slash_and_bad_prefixes_for_insert_to_judge() {
        assert_eq!(join_prefix("/ws", "/connect/"), "/ws/connect/");
        assert_eq!(join_prefix("ws", "/x"), "ws/x");
        assert_eq!(join_prefix("/ws//", "/x"), "/ws//x");
        let mut t = crate::routing::RouteTable::new();
        let err = t.insert(&join_prefix("ws", "/x"), ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid route pattern \"ws/x\": it must start with '/'"
        );
    }
}
