use super::ProtocolError;

/// Validates UTF-8 across the fragments of one text message, so a bad byte is caught in the fragment that
/// carries it rather than at the end of the message.
#[derive(Debug, Default)]
pub struct Utf8Validator {
    /// The start of a code point cut at the end of the previous fragment (at most 3 bytes).
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// Checks the next fragment. `last` says whether it ends the message (then nothing may be left pending).
    pub fn feed(&mut self, chunk: &[u8], last: bool) -> Result<(), ProtocolError> {
        self.check(chunk, last)
            .map_err(|()| ProtocolError::invalid_utf8())
    }

    fn check(&mut self, mut chunk: &[u8], last: bool) -> Result<(), ()> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]).ok_or(())?;
            let take = (need - have).min(chunk.len());
            self.pending[have..have + take].copy_from_slice(&chunk[..take]);
            let filled = have + take;
            chunk = &chunk[take..];
            match simdutf8::compat::from_utf8(&self.pending[..filled]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() && filled < need => {
                    self.pending_len = filled as u8;
                    return if last { Err(()) } else { Ok(()) };
                }
                Err(_) => return Err(()),
            }
        }
        if simdutf8::basic::from_utf8(chunk).is_ok() {
            return Ok(());
        }
        let err = simdutf8::compat::from_utf8(chunk).expect_err("basic check failed");
        match err.error_len() {
            None if !last => {
                let tail = &chunk[err.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            _ => Err(()),
        }
    }
}

fn sequence_len(first: u8) -> Option<usize> {
    match first {
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], cut: usize) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::default();
        v.feed(&bytes[..cut], false)?;
        v.feed(&bytes[cut..], true)
    }

    #[test]
    fn accepts_valid_text_cut_anywhere() {
        let text = "κόσμε €𝄞 plain".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(feed_split(text, cut), Ok(()), "cut at {cut}");
        }
    }

    #[test]
    fn accepts_a_code_point_spread_over_four_fragments() {
        let mut v = Utf8Validator::default();
        let clef = "𝄞".as_bytes();
        for (i, b) in clef.iter().enumerate() {
            assert_eq!(v.feed(&[*b], i == 3), Ok(()));
        }
    }

    #[test]
    fn rejects_invalid_bytes_in_the_fragment_that_carries_them() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"ok \xff", false).is_err());
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"\xed\xa0\x80", false).is_err(), "surrogate");
    }

    #[test]
    fn rejects_a_message_that_ends_inside_a_code_point() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"ab\xe2\x82", false), Ok(()));
        assert!(v.feed(b"", true).is_err());
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"ab\xe2\x82", true).is_err());
    }

    #[test]
    fn rejects_a_bad_continuation_after_a_cut() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"\xe2", false), Ok(()));
        assert!(v.feed(b"\x28\xa1", true).is_err());
    }
}
