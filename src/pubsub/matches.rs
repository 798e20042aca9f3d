//! The subscribers a publish reaches, each once although several of its filters may match.
//!
//! The matching filters' subscriber sets are gathered with the largest one apart. Its subscribers are yielded as
//! they are; another set's subscriber is yielded unless the largest set has it. With one other set that is the
//! whole deduplication; with more, a `seen` set holds the subscribers of the smaller sets only. So the common
//! cases, one matching filter (an exact topic) or two, allocate nothing, and every case costs O(receivers).

use std::collections::HashSet;
use std::hash::Hash;

use super::trie::Subscribers;

/// The subscriber sets of the filters that match one published topic.
#[derive(Debug)]
pub(super) struct Matches<'a, K> {
    largest: Option<&'a Subscribers<K>>,
    others: Vec<&'a Subscribers<K>>,
}

impl<'a, K: Copy + Eq + Hash> Matches<'a, K> {
    /// No matching filter yet.
    pub(super) fn new() -> Self {
        Self {
            largest: None,
            others: Vec::new(),
        }
    }

    /// Adds the subscribers of one more matching filter.
    pub(super) fn add(&mut self, subscribers: &'a Subscribers<K>) {
        match self.largest {
            None => self.largest = Some(subscribers),
            Some(largest) if subscribers.len() > largest.len() => {
                self.others.push(largest);
                self.largest = Some(subscribers);
            }
            Some(_) => self.others.push(subscribers),
        }
    }

    /// Calls `f` once with each distinct subscriber: the largest set's in its order, then the others'.
    pub(super) fn for_each(&self, mut f: impl FnMut(K)) {
        let Some(largest) = self.largest else {
            return;
        };
        largest.iter().copied().for_each(&mut f);
        let fresh = |key: &K| !largest.contains(key);
        match self.others.as_slice() {
            [] => {}
            [other] => other.iter().copied().filter(|key| fresh(key)).for_each(f),
            others => {
                let mut seen = HashSet::with_capacity(others.iter().map(|set| set.len()).sum());
                for other in others {
                    for &key in *other {
                        if fresh(&key) && seen.insert(key) {
                            f(key);
                        }
                    }
                }
            }
        }
    }

    /// How many distinct subscribers [`Matches::for_each`] yields.
    pub(super) fn count(&self) -> usize {
        match (self.largest, self.others.is_empty()) {
            (None, _) => 0,
            (Some(largest), true) => largest.len(),
            (Some(_), false) => {
                let mut count = 0;
                self.for_each(|_| count += 1);
                count
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[u32]) -> Subscribers<u32> {
        keys.iter().copied().collect()
    }

    fn yielded(matches: &Matches<'_, u32>) -> Vec<u32> {
        let mut keys = Vec::new();
        matches.for_each(|key| keys.push(key));
        keys.sort_unstable();
        keys
    }

    #[test]
    fn nothing_matched() {
        let matches = Matches::<u32>::new();
        assert_eq!(yielded(&matches), Vec::<u32>::new());
        assert_eq!(matches.count(), 0);
    }

    #[test]
    fn one_set_is_yielded_as_is() {
        let a = set(&[3, 1, 2]);
        let mut matches = Matches::new();
        matches.add(&a);
        assert_eq!(yielded(&matches), vec![1, 2, 3]);
        assert_eq!(matches.count(), 3);
    }

    #[test]
    fn two_overlapping_sets_yield_each_key_once() {
        let small = set(&[2, 9]);
        let large = set(&[1, 2, 3]);
        for order in [[&small, &large], [&large, &small]] {
            let mut matches = Matches::new();
            order
                .into_iter()
                .for_each(|subscribers| matches.add(subscribers));
            assert_eq!(yielded(&matches), vec![1, 2, 3, 9]);
            assert_eq!(matches.count(), 4);
        }
    }

    #[test]
    fn many_overlapping_sets_yield_each_key_once() {
        let sets = [
            set(&[1, 2]),
            set(&[2, 3, 4, 5]),
            set(&[5, 6]),
            set(&[1, 6, 7]),
            set(&[7]),
        ];
        let mut matches = Matches::new();
        sets.iter().for_each(|subscribers| matches.add(subscribers));
        assert_eq!(yielded(&matches), vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(matches.count(), 7);
    }

    #[test]
    fn empty_and_identical_sets() {
        let empty = set(&[]);
        let same = set(&[4, 5]);
        let mut matches = Matches::new();
        [&empty, &same, &same, &empty]
            .into_iter()
            .for_each(|subscribers| matches.add(subscribers));
        assert_eq!(yielded(&matches), vec![4, 5]);
        assert_eq!(matches.count(), 2);
    }
}
