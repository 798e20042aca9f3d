//! Validation of topic names and subscription filters, and the error they report.
//!
//! Levels are separated by `/`. Empty levels are allowed (`a//b` has three levels, the middle one empty), but a
//! topic or filter must not be the empty string. In a filter, `+` must be a whole level and `#` must be the whole
//! last level; a published topic contains neither.

use std::fmt;

/// The separator between the levels of a topic.
pub const SEPARATOR: char = '/';
/// The filter level that matches exactly one topic level.
pub const SINGLE_LEVEL: &str = "+";
/// The filter level that matches any number of remaining topic levels, including none.
pub const MULTI_LEVEL: &str = "#";

/// What is wrong with a topic or a subscription filter (see [`TopicError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicErrorKind {
    /// The topic or filter is the empty string.
    Empty,
    /// A filter has `#` as a level that is not the last one (`a/#/b`).
    MultiLevelNotLast,
    /// A filter has `+` or `#` inside a level next to other characters (`a+/b`, `a/b#`).
    WildcardInsideLevel,
    /// A published topic contains `+` or `#`.
    WildcardInTopic,
}

/// A malformed topic or subscription filter; its `Display` names the input and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    kind: TopicErrorKind,
    message: Box<str>,
}

impl TopicError {
    /// What is wrong with the input.
    pub fn kind(&self) -> TopicErrorKind {
        self.kind
    }

    fn filter(filter: &str, kind: TopicErrorKind, problem: &str) -> Self {
        Self {
            kind,
            message: format!("invalid topic filter '{filter}': {problem}").into(),
        }
    }

    fn topic(topic: &str, kind: TopicErrorKind, problem: &str) -> Self {
        Self {
            kind,
            message: format!("invalid topic '{topic}': {problem}").into(),
        }
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TopicError {}

/// Checks a subscription filter: not empty, `+` only as a whole level, `#` only as the whole last level.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::filter(
            filter,
            TopicErrorKind::Empty,
            "a topic filter must not be empty",
        ));
    }
    let mut levels = filter.split(SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        if level == MULTI_LEVEL {
            if levels.peek().is_some() {
                return Err(TopicError::filter(
                    filter,
                    TopicErrorKind::MultiLevelNotLast,
                    "'#' must be the last level",
                ));
            }
        } else if level != SINGLE_LEVEL {
            if let Some(wildcard) = level.chars().find(|&c| c == '+' || c == '#') {
                return Err(TopicError::filter(
                    filter,
                    TopicErrorKind::WildcardInsideLevel,
                    &format!("'{wildcard}' must be a whole level, not part of '{level}'"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a published topic: not empty and free of the wildcards `+` and `#`.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::topic(
            topic,
            TopicErrorKind::Empty,
            "a topic must not be empty",
        ));
    }
    match topic.bytes().find(|&b| b == b'+' || b == b'#') {
        Some(wildcard) => Err(TopicError::topic(
            topic,
            TopicErrorKind::WildcardInTopic,
            &format!(
                "'{}' is a wildcard, allowed only in subscription filters, not in a published topic",
                char::from(wildcard)
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_error(filter: &str) -> TopicError {
        validate_filter(filter).expect_err(filter)
    }

    fn topic_error(topic: &str) -> TopicError {
        validate_topic(topic).expect_err(topic)
    }

    #[test]
    fn valid_filters() {
        for filter in [
            "a", "a/b/c", "+", "#", "a/#", "+/+/#", "a/+/c", "/", "a//b", "/#", "+/", "é/ü",
        ] {
            assert_eq!(validate_filter(filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn valid_topics() {
        for topic in [
            "a",
            "a/b/c",
            "/",
            "a//b",
            "/a",
            "a/",
            "sport/tennis/player1",
        ] {
            assert_eq!(validate_topic(topic), Ok(()), "{topic}");
        }
    }

    #[test]
    fn empty_filter_and_topic() {
        let error = filter_error("");
        assert_eq!(error.kind(), TopicErrorKind::Empty);
        assert_eq!(
            error.to_string(),
            "invalid topic filter '': a topic filter must not be empty"
        );
        let error = topic_error("");
        assert_eq!(error.kind(), TopicErrorKind::Empty);
        assert_eq!(
            error.to_string(),
            "invalid topic '': a topic must not be empty"
        );
    }

    #[test]
    fn multi_level_wildcard_not_last() {
        for filter in ["a/#/b", "#/a", "#/", "#/#"] {
            assert_eq!(
                filter_error(filter).kind(),
                TopicErrorKind::MultiLevelNotLast,
                "{filter}"
            );
        }
        assert_eq!(
            filter_error("a/#/b").to_string(),
            "invalid topic filter 'a/#/b': '#' must be the last level"
        );
    }

    #[test]
    fn wildcard_inside_level() {
        for filter in ["a+/b", "a/b#", "+a", "a/+b/c", "##", "++", "+#", "a/b/c#"] {
            assert_eq!(
                filter_error(filter).kind(),
                TopicErrorKind::WildcardInsideLevel,
                "{filter}"
            );
        }
        assert_eq!(
            filter_error("a+/b").to_string(),
            "invalid topic filter 'a+/b': '+' must be a whole level, not part of 'a+'"
        );
        assert_eq!(
            filter_error("a/b#").to_string(),
            "invalid topic filter 'a/b#': '#' must be a whole level, not part of 'b#'"
        );
        assert_eq!(
            filter_error("+a").to_string(),
            "invalid topic filter '+a': '+' must be a whole level, not part of '+a'"
        );
    }

    #[test]
    fn wildcards_in_published_topic() {
        for topic in ["+", "#", "a/+", "a/#", "a+b", "a/b#c"] {
            assert_eq!(
                topic_error(topic).kind(),
                TopicErrorKind::WildcardInTopic,
                "{topic}"
            );
        }
        assert_eq!(
            topic_error("a/+/c").to_string(),
            "invalid topic 'a/+/c': '+' is a wildcard, allowed only in subscription filters, not in a published topic"
        );
        assert_eq!(
            topic_error("a/#").to_string(),
            "invalid topic 'a/#': '#' is a wildcard, allowed only in subscription filters, not in a published topic"
        );
    }

    #[test]
    fn error_is_std_error() {
        let error: Box<dyn std::error::Error> = Box::new(filter_error("a/#/b"));
        assert!(error.to_string().contains("'#' must be the last level"));
    }
}
