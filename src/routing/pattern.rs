//! Parsing and validation of route patterns.
//!
//! A pattern is a path that starts with `/`, split on `/` into segments. Each segment is one of:
//!
//! - static text (`chat`), compared byte for byte (case-sensitive) with the raw, still
//!   percent-encoded request path;
//! - a parameter `:name`, matching exactly one non-empty path segment; the name is made of ASCII
//!   letters, digits and `_`, and is unique within its pattern;
//! - a wildcard `*`, only as the whole last segment, matching the rest of the path: zero or more
//!   segments (`/files/*` matches `/files`, `/files/`, `/files/a` and `/files/a/b`).
//!
//! One trailing slash is stripped before parsing (except from the root `/`), so `/connect/` and
//! `/connect` are the same pattern. Empty segments (`/a//b`), `?` and `#` (a pattern matches the
//! path only) are rejected.

use std::error::Error;
use std::fmt;

/// One parsed segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text, compared with the raw path segment.
    Static(Box<str>),
    /// `:name`: one non-empty path segment, captured under `name`.
    Param(Box<str>),
    /// A trailing `*`: the rest of the path (possibly nothing).
    Wildcard,
}

/// A validated route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The pattern after trailing-slash normalization (`/a/` becomes `/a`).
    pub(crate) normalized: Box<str>,
    /// The segments, in order; empty for the root pattern `/`.
    pub(crate) segments: Vec<Segment>,
}

impl Pattern {
    /// Parses and validates `pattern`.
    pub(crate) fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        let err = |kind| Err(PatternError::new(pattern, kind));
        if !pattern.starts_with('/') {
            return err(PatternErrorKind::MissingLeadingSlash);
        }
        if let Some(c) = pattern.chars().find(|&c| c == '?' || c == '#') {
            return err(PatternErrorKind::ForbiddenChar(c));
        }
        let normalized = normalize(pattern);
        let mut segments = Vec::new();
        if normalized != "/" {
            let parts: Vec<&str> = normalized[1..].split('/').collect();
            let last = parts.len() - 1;
            for (i, part) in parts.iter().enumerate() {
                let position = i + 1;
                let segment = if part.is_empty() {
                    return err(PatternErrorKind::EmptySegment { position });
                } else if *part == "*" {
                    if i != last {
                        return err(PatternErrorKind::WildcardNotLast { position });
                    }
                    Segment::Wildcard
                } else if part.contains('*') {
                    return err(PatternErrorKind::WildcardNotWholeSegment {
                        segment: (*part).to_owned(),
                    });
                } else if let Some(name) = part.strip_prefix(':') {
                    if name.is_empty() {
                        return err(PatternErrorKind::EmptyParamName { position });
                    }
                    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return err(PatternErrorKind::InvalidParamName {
                            name: name.to_owned(),
                        });
                    }
                    let seen = segments
                        .iter()
                        .any(|s| matches!(s, Segment::Param(n) if &**n == name));
                    if seen {
                        return err(PatternErrorKind::DuplicateParamName {
                            name: name.to_owned(),
                        });
                    }
                    Segment::Param(name.into())
                } else {
                    Segment::Static((*part).into())
                };
                segments.push(segment);
            }
        }
        Ok(Pattern {
            normalized: normalized.into(),
            segments,
        })
    }

    /// True if every segment is static text (the root pattern `/` included).
    pub(crate) fn is_static(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Static(_)))
    }
}

/// Strips one trailing slash, except from the root `/`.
pub(crate) fn normalize(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => path,
    }
}

/// Why a route pattern was refused; see [`PatternError::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternErrorKind {
    /// The pattern does not start with `/`.
    MissingLeadingSlash,
    /// The pattern contains `?` or `#`; patterns match the path only.
    ForbiddenChar(char),
    /// Two slashes in a row (`/a//b`); `position` counts segments from 1.
    EmptySegment {
        /// 1-based index of the empty segment.
        position: usize,
    },
    /// A `:` with no name after it (`/a/:`).
    EmptyParamName {
        /// 1-based index of the segment.
        position: usize,
    },
    /// A parameter name with characters other than ASCII letters, digits and `_`.
    InvalidParamName {
        /// The offending name, without the `:`.
        name: String,
    },
    /// The same parameter name twice in one pattern (`/:id/x/:id`).
    DuplicateParamName {
        /// The repeated name, without the `:`.
        name: String,
    },
    /// A `*` segment that is not the last one (`/a/*/b`).
    WildcardNotLast {
        /// 1-based index of the `*` segment.
        position: usize,
    },
    /// A `*` inside a segment with other text (`/a*`, `/files/*.txt`).
    WildcardNotWholeSegment {
        /// The whole offending segment.
        segment: String,
    },
    /// A route of the same shape is already in the table (`/a/:x` then `/a/:y`, or `/a` then `/a/`).
    Duplicate {
        /// The pattern registered first, as it was given.
        existing: String,
    },
}

/// A route pattern that could not be added to a [`RouteTable`](super::RouteTable).
///
/// The message names the pattern and the problem, for example
/// `invalid route pattern "/a/:": empty parameter name in segment 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    kind: PatternErrorKind,
}

impl PatternError {
    pub(crate) fn new(pattern: &str, kind: PatternErrorKind) -> Self {
        PatternError {
            pattern: pattern.to_owned(),
            kind,
        }
    }

    /// The pattern as it was given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &PatternErrorKind {
        &self.kind
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PatternErrorKind::*;
        let p = &self.pattern;
        if let Duplicate { existing } = &self.kind {
            return write!(
                f,
                "duplicate route pattern {p:?}: it has the same shape as {existing:?}, \
                 registered before"
            );
        }
        write!(f, "invalid route pattern {p:?}: ")?;
        match &self.kind {
            MissingLeadingSlash => write!(f, "it must start with '/'"),
            ForbiddenChar(c) => write!(
                f,
                "{c:?} is not allowed (a pattern matches the path only, without query or fragment)"
            ),
            EmptySegment { position } => write!(f, "empty segment {position} ('//')"),
            EmptyParamName { position } => {
                write!(
                    f,
                    "empty parameter name in segment {position} (':' needs a name)"
                )
            }
            InvalidParamName { name } => write!(
                f,
                "parameter name {name:?} may contain only ASCII letters, digits and '_'"
            ),
            DuplicateParamName { name } => {
                write!(f, "parameter name {name:?} is used more than once")
            }
            WildcardNotLast { position } => {
                write!(f, "'*' in segment {position} must be the last segment")
            }
            WildcardNotWholeSegment { segment } => write!(
                f,
                "'*' must be a whole segment on its own, not part of {segment:?}"
            ),
            Duplicate { .. } => unreachable!("handled above"),
        }
    }
}

impl Error for PatternError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<Segment> {
        Pattern::parse(p).unwrap().segments
    }

    fn kind(p: &str) -> PatternErrorKind {
        Pattern::parse(p).unwrap_err().kind
    }

    fn msg(p: &str) -> String {
        Pattern::parse(p).unwrap_err().to_string()
    }

    #[test]
    fn parses_segments() {
        assert_eq!(segs("/"), vec![]);
        assert_eq!(
            segs("/chat/:room/*"),
            vec![
                Segment::Static("chat".into()),
                Segment::Param("room".into()),
                Segment::Wildcard
            ]
        );
        assert_eq!(segs("/*"), vec![Segment::Wildcard]);
        // A colon inside a segment is static text.
        assert_eq!(segs("/a:b"), vec![Segment::Static("a:b".into())]);
    }

    #[test]
    fn strips_one_trailing_slash() {
        let p = Pattern::parse("/connect/").unwrap();
        assert_eq!(&*p.normalized, "/connect");
        assert_eq!(p.segments, vec![Segment::Static("connect".into())]);
        assert_eq!(&*Pattern::parse("/").unwrap().normalized, "/");
        assert_eq!(
            &*Pattern::parse("/files/*/").unwrap().normalized,
            "/files/*"
        );
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("/a/"), "/a");
        assert_eq!(normalize("/a//"), "/a/");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn is_static() {
        assert!(Pattern::parse("/").unwrap().is_static());
        assert!(Pattern::parse("/a/b").unwrap().is_static());
        assert!(!Pattern::parse("/a/:b").unwrap().is_static());
        assert!(!Pattern::parse("/a/*").unwrap().is_static());
    }

    #[test]
    fn rejects_missing_leading_slash() {
        assert_eq!(kind("chat"), PatternErrorKind::MissingLeadingSlash);
        assert_eq!(kind(""), PatternErrorKind::MissingLeadingSlash);
        assert_eq!(
            msg("chat/:room"),
            "invalid route pattern \"chat/:room\": it must start with '/'"
        );
    }

    #[test]
    fn rejects_empty_param_name() {
        assert_eq!(
            kind("/a/:"),
            PatternErrorKind::EmptyParamName { position: 2 }
        );
        assert_eq!(
            msg("/a/:"),
            "invalid route pattern \"/a/:\": empty parameter name in segment 2 (':' needs a name)"
        );
        assert_eq!(
            kind("/a/:/b"),
            PatternErrorKind::EmptyParamName { position: 2 }
        );
    }

    #[test]
    fn rejects_bad_param_names() {
        assert_eq!(
            kind("/a/:id.json"),
            PatternErrorKind::InvalidParamName {
                name: "id.json".into()
            }
        );
        assert!(msg("/a/:x:y").contains("\"x:y\" may contain only ASCII letters"));
        assert!(Pattern::parse("/a/:room_id2").is_ok());
    }

    #[test]
    fn rejects_duplicate_param_names() {
        assert_eq!(
            kind("/:id/x/:id"),
            PatternErrorKind::DuplicateParamName { name: "id".into() }
        );
        assert_eq!(
            msg("/:id/x/:id"),
            "invalid route pattern \"/:id/x/:id\": parameter name \"id\" is used more than once"
        );
    }

    #[test]
    fn rejects_misplaced_wildcards() {
        assert_eq!(
            kind("/a/*/b"),
            PatternErrorKind::WildcardNotLast { position: 2 }
        );
        assert_eq!(
            msg("/a/*/b"),
            "invalid route pattern \"/a/*/b\": '*' in segment 2 must be the last segment"
        );
        assert_eq!(
            kind("/files/*.txt"),
            PatternErrorKind::WildcardNotWholeSegment {
                segment: "*.txt".into()
            }
        );
        assert_eq!(
            msg("/a*"),
            "invalid route pattern \"/a*\": '*' must be a whole segment on its own, not part of \"a*\""
        );
        assert!(matches!(
            kind("/:*"),
            PatternErrorKind::WildcardNotWholeSegment { .. }
        ));
    }

    #[test]
    fn rejects_empty_segments_and_query() {
        assert_eq!(
            kind("/a//b"),
            PatternErrorKind::EmptySegment { position: 2 }
        );
        assert_eq!(kind("//a"), PatternErrorKind::EmptySegment { position: 1 });
        // Two trailing slashes: one is stripped, the other leaves an empty last segment.
        assert_eq!(kind("/a//"), PatternErrorKind::EmptySegment { position: 2 });
        assert_eq!(kind("/a?b=1"), PatternErrorKind::ForbiddenChar('?'));
        assert_eq!(kind("/a#top"), PatternErrorKind::ForbiddenChar('#'));
        assert!(msg("/a?b").contains("without query or fragment"));
    }

    #[test]
    fn error_accessors_and_trait() {
        let e = Pattern::parse("x").unwrap_err();
        assert_eq!(e.pattern(), "x");
        assert_eq!(e.kind(), &PatternErrorKind::MissingLeadingSlash);
        let boxed: Box<dyn Error> = Box::new(e);
        assert!(boxed.to_string().contains("\"x\""));
    }
}
