//! `echo --json`: the "typical app" load. Each message is a JSON text `{"room": "room-<k>", "text": "..."}`, the
//! rooms taken in turn from a fixed set; the server's app parses it, updates its state and answers with a small
//! JSON text of its own. Any text reply that parses as JSON is the answer to the oldest message in flight.

use serde::de::IgnoredAny;

use crate::ws::{encode_frame, make_payload, OP_TEXT};

/// A connection's messages, one per room, each masked once: sending is a copy.
pub struct RoomMessages {
    frames: Vec<Vec<u8>>,
}

impl RoomMessages {
    /// `rooms` messages whose text is `text_len` ASCII letters and digits (a pattern that depends on `salt`).
    pub fn new(rooms: usize, text_len: usize, salt: usize, mask: [u8; 4]) -> RoomMessages {
        let text = make_payload(text_len, salt, false);
        let text = std::str::from_utf8(&text).expect("ASCII text");
        let frames = (0..rooms)
            .map(|k| {
                let message = format!(r#"{{"room": "room-{k}", "text": "{text}"}}"#);
                let mut frame = Vec::with_capacity(message.len() + 14);
                encode_frame(&mut frame, OP_TEXT, message.as_bytes(), mask);
                frame
            })
            .collect();
        RoomMessages { frames }
    }

    /// Queues message number `seq` (room `seq mod rooms`).
    pub fn push(&self, out: &mut Vec<u8>, seq: u32) {
        out.extend_from_slice(&self.frames[seq as usize % self.frames.len()]);
    }
}

/// Checks a reply: a text message that is JSON.
pub fn check_reply(opcode: u8, data: &[u8], seq: u32) -> Result<(), String> {
    if opcode != OP_TEXT {
        return Err(format!(
            "reply to message {seq}: opcode {opcode}, expected text"
        ));
    }
    serde_json::from_slice::<IgnoredAny>(data)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "reply to message {seq} is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&data[..data.len().min(80)])
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0], 0x80 | OP_TEXT);
        let len = (frame[1] & 0x7F) as usize;
        assert!(len < 126);
        let mask = &frame[2..6];
        frame[6..6 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect()
    }

    #[test]
    fn messages_rotate_over_the_rooms() {
        let m = RoomMessages::new(3, 32, 7, [9, 8, 7, 6]);
        let mut out = Vec::new();
        for seq in 0..4 {
            out.clear();
            m.push(&mut out, seq);
            let v: serde_json::Value = serde_json::from_slice(&unmask(&out)).unwrap();
            assert_eq!(v["room"], format!("room-{}", seq % 3));
            assert_eq!(v["text"].as_str().unwrap().len(), 32);
        }
    }

    #[test]
    fn replies() {
        assert!(check_reply(OP_TEXT, br#"{"room": "room-1", "count": 3}"#, 0).is_ok());
        assert!(check_reply(OP_TEXT, b"{\"room\": ", 5)
            .unwrap_err()
            .contains("message 5 is not JSON"));
        assert!(check_reply(0x2, b"{}", 0).unwrap_err().contains("opcode"));
    }
}
