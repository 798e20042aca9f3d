//! The wire format of a message between nodes: which node published it, whether it is binary and was
//! published with `compress`, its topic and its payload.
//!
//! `version (1) | flags (1) | node id (8, big endian) | topic length (4, big endian) | topic | payload`.
//! The topic travels in the envelope (not only in the broker's channel or subject name) so that a receiver
//! never has to undo the escaping of a channel name, and an over-matching Redis pattern can be re-checked.

const VERSION: u8 = 1;
const BINARY: u8 = 0b01;
const COMPRESS: u8 = 0b10;
const HEADER: usize = 1 + 1 + 8 + 4;

/// One published message, as nodes exchange it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it (it ignores its own messages when the broker echoes them).
    pub node: u64,
    pub binary: bool,
    pub compress: bool,
    pub topic: &'a str,
    pub payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let topic_len = u32::try_from(self.topic.len()).expect("a topic under 4 GiB");
        let mut flags = 0;
        if self.binary {
            flags |= BINARY;
        }
        if self.compress {
            flags |= COMPRESS;
        }
        let mut bytes = Vec::with_capacity(HEADER + self.topic.len() + self.payload.len());
        bytes.push(VERSION);
        bytes.push(flags);
        bytes.extend_from_slice(&self.node.to_be_bytes());
        bytes.extend_from_slice(&topic_len.to_be_bytes());
        bytes.extend_from_slice(self.topic.as_bytes());
        bytes.extend_from_slice(self.payload);
        bytes
    }

    /// The envelope in `bytes`, or None when they are not one (another version, or not ours at all).
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        let (&[version, flags], rest) = bytes.split_first_chunk::<2>()?;
        if version != VERSION || flags & !(BINARY | COMPRESS) != 0 {
            return None;
        }
        let (node, rest) = rest.split_first_chunk::<8>()?;
        let (topic_len, rest) = rest.split_first_chunk::<4>()?;
        let topic_len = usize::try_from(u32::from_be_bytes(*topic_len)).ok()?;
        if rest.len() < topic_len {
            return None;
        }
        let (topic, payload) = rest.split_at(topic_len);
        Some(Self {
            node: u64::from_be_bytes(*node),
            binary: flags & BINARY != 0,
            compress: flags & COMPRESS != 0,
            topic: std::str::from_utf8(topic).ok()?,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (binary, compress) in [(false, false), (true, false), (false, true), (true, true)] {
            let envelope = Envelope {
                node: 0x0102_0304_0506_0708,
                binary,
                compress,
                topic: "chat/lobby/é",
                payload: &[0, 1, 2, 255],
            };
            assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope));
        }
    }

    #[test]
    fn empty_payload() {
        let envelope = Envelope {
            node: 1,
            binary: false,
            compress: false,
            topic: "t",
            payload: b"",
        };
        assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope));
    }

    #[test]
    fn foreign_or_truncated_bytes_are_rejected() {
        let bytes = Envelope {
            node: 7,
            binary: true,
            compress: false,
            topic: "news",
            payload: b"x",
        }
        .encode();
        for cut in 0..HEADER + 4 {
            assert_eq!(Envelope::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(Envelope::decode(&other_version), None);
        let mut unknown_flag = bytes.clone();
        unknown_flag[1] |= 0b100;
        assert_eq!(Envelope::decode(&unknown_flag), None);
        assert_eq!(Envelope::decode(b"hello world, not an envelope"), None);
    }
}
