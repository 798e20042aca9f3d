//! Growing a buffer within a bound: `BytesMut::reserve` doubles the allocation as it sees fit, which may
//! go past what the buffer is allowed to hold.

use bytes::BytesMut;

/// Makes `buf` able to hold `needed` bytes in all. Its capacity doubles (so growing a buffer step by step
/// costs linear time) but never goes past `ceiling` (at least `needed`).
pub fn grow_within(buf: &mut BytesMut, needed: usize, ceiling: usize) {
    if buf.capacity() >= needed {
        return;
    }
    let mut grown = BytesMut::with_capacity(grown_capacity(buf.capacity(), needed, ceiling));
    grown.extend_from_slice(buf);
    *buf = grown;
}

fn grown_capacity(capacity: usize, needed: usize, ceiling: usize) -> usize {
    capacity.saturating_mul(2).max(needed).min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_doubles_up_to_the_ceiling() {
        assert_eq!(grown_capacity(0, 1024, 100_001), 1024);
        assert_eq!(grown_capacity(4096, 5120, 100_001), 8192, "doubled");
        assert_eq!(grown_capacity(1024, 66_560, 100_001), 66_560, "needed");
        assert_eq!(grown_capacity(65_536, 90_000, 100_001), 100_001, "capped");
        assert_eq!(
            grown_capacity(usize::MAX / 2 + 1, usize::MAX, usize::MAX),
            usize::MAX
        );
    }

    #[test]
    fn the_buffer_keeps_its_bytes_and_gets_the_capacity_asked() {
        let mut buf = BytesMut::from(&b"abc"[..]);
        grow_within(&mut buf, 10, 1000);
        assert_eq!((&buf[..], buf.capacity()), (&b"abc"[..], 10));
        grow_within(&mut buf, 12, 15);
        assert_eq!((&buf[..], buf.capacity()), (&b"abc"[..], 15));
        grow_within(&mut buf, 8, 8);
        assert_eq!(buf.capacity(), 15, "room enough already");
    }
}
