//! Maps keyed by connection id, without SipHash: the ids are the engine's own sequential numbers, so
//! there is nothing to defend against, and a publish looks one up per receiver.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from connection id to `V`.
pub type ConnIdMap<V> = HashMap<u64, V, BuildHasherDefault<ConnIdHasher>>;

/// Fibonacci hashing of a `u64`: one multiplication spreads sequential ids over every bit, the high ones
/// included, which the hash table's per-slot tags are taken from.
#[derive(Default)]
pub struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("connection ids are u64")
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_get_distinct_high_bits() {
        let tags: std::collections::HashSet<u64> = (1..=128u64)
            .map(|id| {
                let mut hasher = ConnIdHasher::default();
                hasher.write_u64(id);
                hasher.finish() >> 57
            })
            .collect();
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
    }
}
