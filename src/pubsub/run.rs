//! A run of publishes: plain messages published one after another to one topic, encoded back to back, so
//! that each subscriber's queue takes all of them under one lock instead of one lock per message.

use bytes::{Bytes, BytesMut};

use super::{validate_topic, TopicError};
use crate::protocol::encode;

/// A run holding at least this many bytes takes no more messages: it bounds what a run holds and how far
/// past its `max_backpressure` a subscriber's queue can go (by less than one run).
const RUN_LIMIT: usize = 64 * 1024;

/// Messages waiting to be fanned out together.
#[derive(Debug)]
pub struct PublishRun {
    topic: Box<str>,
    exclude: Option<u64>,
    frames: BytesMut,
    /// Where each message's frame ends in `frames`.
    ends: Vec<usize>,
    /// Where each message's payload starts in `frames`.
    payloads: Vec<usize>,
}

impl PublishRun {
    /// An empty run to `topic`, for every subscriber but `exclude`.
    ///
    /// # Errors
    /// A malformed topic (see [`validate_topic`]).
    pub fn new(topic: &str, exclude: Option<u64>) -> Result<Self, TopicError> {
        validate_topic(topic)?;
        Ok(Self {
            topic: topic.into(),
            exclude,
            frames: BytesMut::new(),
            ends: Vec::new(),
            payloads: Vec::new(),
        })
    }

    /// Whether a publish to `topic` excluding `exclude` can join this run.
    pub fn takes(&self, topic: &str, exclude: Option<u64>) -> bool {
        self.frames.len() < RUN_LIMIT && self.exclude == exclude && *self.topic == *topic
    }

    /// Appends one message as a whole frame.
    pub fn push(&mut self, opcode: u8, payload: &[u8]) {
        let header = encode::header_len(payload.len());
        self.frames.reserve(header + payload.len());
        encode::put_header(&mut self.frames, true, opcode, payload.len());
        self.payloads.push(self.frames.len());
        self.frames.extend_from_slice(payload);
        self.ends.push(self.frames.len());
    }

    /// The run ready to fan out, its frames in shared bytes.
    pub fn freeze(self) -> FrozenRun {
        FrozenRun {
            topic: self.topic,
            exclude: self.exclude,
            frames: self.frames.freeze(),
            ends: self.ends,
            payloads: self.payloads,
        }
    }
}

/// A run being fanned out: each receiver queues a slice or a copy of `frames`.
#[derive(Debug)]
pub struct FrozenRun {
    pub topic: Box<str>,
    pub exclude: Option<u64>,
    pub frames: Bytes,
    /// Where each message's frame ends in `frames`.
    pub ends: Vec<usize>,
    /// Where each message's payload starts in `frames`.
    pub payloads: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lie_back_to_back_with_their_bounds_recorded() {
        let mut run = PublishRun::new("news", Some(7)).expect("valid topic");
        run.push(encode::TEXT, b"hi");
        run.push(encode::BINARY, &[0u8; 200]);
        let FrozenRun {
            frames,
            ends,
            payloads,
            ..
        } = run.freeze();
        assert_eq!(ends, [4, 4 + 4 + 200]);
        assert_eq!(payloads, [2, 8]);
        assert_eq!(&frames[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&frames[4..8], &[0x82, 126, 0, 200]);
    }

    #[test]
    fn a_run_takes_only_its_own_topic_and_exclusion_until_full() {
        let mut run = PublishRun::new("a/b", None).expect("valid topic");
        assert!(run.takes("a/b", None));
        assert!(!run.takes("a/c", None));
        assert!(!run.takes("a/b", Some(1)));
        run.push(encode::BINARY, &vec![0u8; RUN_LIMIT]);
        assert!(!run.takes("a/b", None), "a full run takes nothing more");
    }

    #[test]
    fn a_malformed_topic_starts_no_run() {
        assert!(PublishRun::new("a/+", None).is_err());
    }
}
