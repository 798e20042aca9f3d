//! The plain HTTP routes: a route table of paths, each with its handlers by method. Matching a
//! request happens on the I/O thread and costs no Python.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::routing::{PatternErrorKind, RouteTable};

/// A handler on the Python side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Index of the handler in the server's HTTP route list.
    pub index: usize,
    /// The pattern the handler was added with (for the access log).
    pub pattern: Arc<str>,
    /// How long the handler has to answer; then the client gets 503.
    pub timeout: Duration,
}

/// A route's handler and the names of its pattern's parameters (patterns of the same shape share a
/// path but may name their parameters differently).
#[derive(Debug)]
struct Handler {
    route: HttpRoute,
    names: Vec<String>,
}

/// The handlers of one path.
#[derive(Debug, Default)]
struct Endpoint {
    methods: Vec<(String, Handler)>,
    any: Option<Handler>,
}

impl Endpoint {
    /// The handler for `method`: its own, or `any`; HEAD falls back to GET.
    fn handler(&self, method: &str) -> Option<&Handler> {
        let find = |wanted: &str| {
            self.methods
                .iter()
                .find(|(m, _)| m == wanted)
                .map(|(_, handler)| handler)
        };
        find(method)
            .or(self.any.as_ref())
            .or_else(|| (method == "HEAD").then(|| find("GET")).flatten())
    }

    /// The `Allow` header of a 405.
    fn allow(&self) -> String {
        let mut methods: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        if methods.contains(&"GET") && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
        methods.join(", ")
    }
}

/// Where a request to a path with HTTP routes goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    Found {
        route: HttpRoute,
        params: Vec<(String, String)>,
    },
    /// 405, with the methods the path has.
    NotAllowed { allow: String },
}

/// Every plain HTTP route of a server.
#[derive(Debug, Default)]
pub struct HttpRoutes {
    table: RouteTable<usize>,
    endpoints: Vec<Endpoint>,
    /// The pattern each endpoint was created with, for patterns of the same shape added later.
    by_pattern: HashMap<String, usize>,
}

impl HttpRoutes {
    /// Adds the handler of `method` (upper case; `ANY` for every method) on `pattern`. Patterns of the
    /// same shape (`/a/:x`, `/a/:y`) are one path; the same method twice on it is an error.
    pub fn add(&mut self, pattern: &str, method: &str, route: HttpRoute) -> Result<(), String> {
        let endpoint = match self.table.insert(pattern, self.endpoints.len()) {
            Ok(()) => {
                self.endpoints.push(Endpoint::default());
                self.by_pattern
                    .insert(pattern.to_owned(), self.endpoints.len() - 1);
                self.endpoints.len() - 1
            }
            Err(error) => match error.kind() {
                PatternErrorKind::Duplicate { existing } => self.by_pattern[existing.as_str()],
                _ => return Err(error.to_string()),
            },
        };
        let endpoint = &mut self.endpoints[endpoint];
        let handler = Handler {
            route,
            names: pattern
                .split('/')
                .filter_map(|segment| segment.strip_prefix(':'))
                .map(str::to_owned)
                .collect(),
        };
        let taken = if method == "ANY" {
            endpoint.any.replace(handler).is_some()
        } else if endpoint.methods.iter().any(|(m, _)| m == method) {
            true
        } else {
            endpoint.methods.push((method.to_owned(), handler));
            false
        };
        if taken {
            return Err(format!(
                "duplicate HTTP route: {method} {pattern:?} is already routed"
            ));
        }
        Ok(())
    }

    /// The route for a request; `None` when no HTTP route has this path.
    pub fn route(&self, path: &str, method: &str) -> Option<Routed> {
        let found = self.table.find(path)?;
        let endpoint = &self.endpoints[*found.value];
        Some(match endpoint.handler(method) {
            Some(handler) => Routed::Found {
                route: handler.route.clone(),
                params: handler
                    .names
                    .iter()
                    .cloned()
                    .zip(found.params.into_iter().map(|(_, value)| value))
                    .collect(),
            },
            None => Routed::NotAllowed {
                allow: endpoint.allow(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(index: usize, pattern: &str) -> HttpRoute {
        HttpRoute {
            index,
            pattern: Arc::from(pattern),
            timeout: Duration::from_secs(1),
        }
    }

    fn found(index: usize, pattern: &str, params: &[(&str, &str)]) -> Option<Routed> {
        Some(Routed::Found {
            route: route(index, pattern),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn methods_share_a_path_and_head_falls_back_to_get() {
        let mut routes = HttpRoutes::default();
        routes
            .add("/items/:id", "GET", route(0, "/items/:id"))
            .unwrap();
        routes
            .add("/items/:key", "POST", route(1, "/items/:key"))
            .unwrap();
        routes.add("/any", "ANY", route(2, "/any")).unwrap();
        routes.add("/any", "DELETE", route(3, "/any")).unwrap();
        let get = found(0, "/items/:id", &[("id", "7")]);
        assert_eq!(routes.route("/items/7", "GET"), get);
        let post = found(1, "/items/:key", &[("key", "7")]);
        assert_eq!(routes.route("/items/7", "POST"), post);
        assert_eq!(routes.route("/items/7", "HEAD"), get);
        assert_eq!(
            routes.route("/items/7", "PUT"),
            Some(Routed::NotAllowed {
                allow: "GET, POST, HEAD".into()
            })
        );
        assert_eq!(routes.route("/any", "PATCH"), found(2, "/any", &[]));
        assert_eq!(routes.route("/any", "DELETE"), found(3, "/any", &[]));
        assert_eq!(routes.route("/nope", "GET"), None);
    }

    #[test]
    fn duplicates_and_bad_patterns_are_errors() {
        let mut routes = HttpRoutes::default();
        routes.add("/a/:x", "GET", route(0, "/a/:x")).unwrap();
        let error = routes.add("/a/:y", "GET", route(1, "/a/:y")).unwrap_err();
        assert!(error.contains("duplicate HTTP route: GET"), "{error}");
        routes.add("/a/:y", "ANY", route(2, "/a/:y")).unwrap();
        assert!(routes.add("/a/:z", "ANY", route(3, "/a/:z")).is_err());
        assert!(routes.add("nope", "GET", route(4, "nope")).is_err());
    }
}
