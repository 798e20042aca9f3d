//! The subscription trie: one node per filter level, each node holding the subscribers of the filter that ends there.
//!
//! Nodes live in an arena and are named by a [`NodeId`] (4 bytes), so a subscriber's filters are stored as node ids
//! rather than strings. A node's exact-level children are found by hashing the level, its `+` and `#` children sit
//! in their own slots. A node that has neither subscribers nor children is freed at once (pruning), so the trie
//! holds only the root when nobody is subscribed.
//!
//! The trie trusts its input: filters and topics are validated by the caller (see `topic.rs`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use indexmap::IndexSet;

use super::topic::{MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL};

/// The subscribers of one filter, iterated in the order they subscribed (a removal moves the last one into
/// the gap): a publish reaches them in an order that is the same in every run, not one that changes with
/// each process's hash seed.
pub(super) type Subscribers<K> = IndexSet<K>;

/// Names a node of the trie: the node of a filter stays at the same id while it has subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NodeId(u32);

impl NodeId {
    const ROOT: Self = Self(0);

    fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a node hangs off its parent.
#[derive(Debug)]
enum Label {
    /// The root, or a free slot of the arena.
    Root,
    /// An exact level (shared with the parent's `children` key).
    Exact(Arc<str>),
    /// The `+` level.
    SingleLevel,
    /// The `#` level.
    MultiLevel,
}

#[derive(Debug)]
struct Node<K> {
    parent: NodeId,
    label: Label,
    children: HashMap<Arc<str>, NodeId>,
    single_level: Option<NodeId>,
    multi_level: Option<NodeId>,
    subscribers: Subscribers<K>,
}

impl<K> Node<K> {
    fn new(parent: NodeId, label: Label) -> Self {
        Self {
            parent,
            label,
            children: HashMap::new(),
            single_level: None,
            multi_level: None,
            subscribers: Subscribers::default(),
        }
    }

    /// The child for a filter level: `+` and `#` name the wildcard children.
    fn child(&self, level: &str) -> Option<NodeId> {
        match level {
            SINGLE_LEVEL => self.single_level,
            MULTI_LEVEL => self.multi_level,
            _ => self.children.get(level).copied(),
        }
    }

    fn is_bare(&self) -> bool {
        self.subscribers.is_empty()
            && self.children.is_empty()
            && self.single_level.is_none()
            && self.multi_level.is_none()
    }
}

/// True when a hash table uses under a quarter of its capacity and is worth shrinking.
fn is_sparse(len: usize, capacity: usize) -> bool {
    capacity > 16 && len * 4 < capacity
}

/// The subscription trie (see the module documentation).
#[derive(Debug)]
pub(super) struct Trie<K> {
    nodes: Vec<Node<K>>,
    free: Vec<NodeId>,
}

impl<K: Copy + Eq + Hash> Trie<K> {
    /// A trie holding only its root.
    pub(super) fn new() -> Self {
        Self {
            nodes: vec![Node::new(NodeId::ROOT, Label::Root)],
            free: Vec::new(),
        }
    }

    /// True when only the root is left.
    pub(super) fn is_empty(&self) -> bool {
        self.nodes.len() - self.free.len() == 1
    }

    fn node(&self, id: NodeId) -> &Node<K> {
        &self.nodes[id.index()]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<K> {
        &mut self.nodes[id.index()]
    }

    /// The subscribers of the filter whose node is `id`.
    pub(super) fn subscribers(&self, id: NodeId) -> &Subscribers<K> {
        &self.node(id).subscribers
    }

    /// The node of a filter, if it exists. A malformed filter has none: the nodes only spell valid filters.
    pub(super) fn find(&self, filter: &str) -> Option<NodeId> {
        filter
            .split(SEPARATOR)
            .try_fold(NodeId::ROOT, |id, level| self.node(id).child(level))
    }

    /// Adds `key` to the subscribers of a valid `filter`, creating the missing nodes. Returns the filter's node
    /// and whether `key` was not subscribed to it before.
    pub(super) fn insert(&mut self, filter: &str, key: K) -> (NodeId, bool) {
        let id = filter
            .split(SEPARATOR)
            .fold(NodeId::ROOT, |id, level| self.child(id, level));
        let added = self.node_mut(id).subscribers.insert(key);
        (id, added)
    }

    /// The child of `parent` for `level`, created if missing.
    fn child(&mut self, parent: NodeId, level: &str) -> NodeId {
        if let Some(id) = self.node(parent).child(level) {
            return id;
        }
        match level {
            SINGLE_LEVEL => {
                let id = self.allocate(Node::new(parent, Label::SingleLevel));
                self.node_mut(parent).single_level = Some(id);
                id
            }
            MULTI_LEVEL => {
                let id = self.allocate(Node::new(parent, Label::MultiLevel));
                self.node_mut(parent).multi_level = Some(id);
                id
            }
            _ => {
                let level: Arc<str> = level.into();
                let id = self.allocate(Node::new(parent, Label::Exact(Arc::clone(&level))));
                self.node_mut(parent).children.insert(level, id);
                id
            }
        }
    }

    fn allocate(&mut self, node: Node<K>) -> NodeId {
        match self.free.pop() {
            Some(id) => {
                *self.node_mut(id) = node;
                id
            }
            None => {
                let id = u32::try_from(self.nodes.len()).expect("more than 2^32 trie nodes");
                self.nodes.push(node);
                NodeId(id)
            }
        }
    }

    /// Removes `key` from the subscribers of node `id` and frees the nodes left bare. Returns whether `key` was
    /// subscribed there.
    pub(super) fn remove(&mut self, id: NodeId, key: K) -> bool {
        let subscribers = &mut self.node_mut(id).subscribers;
        if !subscribers.swap_remove(&key) {
            return false;
        }
        if is_sparse(subscribers.len(), subscribers.capacity()) {
            subscribers.shrink_to_fit();
        }
        self.prune(id);
        true
    }

    /// Frees `id` and then its ancestors while they are bare (never the root).
    fn prune(&mut self, mut id: NodeId) {
        while id != NodeId::ROOT && self.node(id).is_bare() {
            let freed = std::mem::replace(self.node_mut(id), Node::new(NodeId::ROOT, Label::Root));
            self.free.push(id);
            let parent = self.node_mut(freed.parent);
            match freed.label {
                Label::Exact(level) => {
                    parent.children.remove(&level);
                    if is_sparse(parent.children.len(), parent.children.capacity()) {
                        parent.children.shrink_to_fit();
                    }
                }
                Label::SingleLevel => parent.single_level = None,
                Label::MultiLevel => parent.multi_level = None,
                Label::Root => unreachable!("the root is never pruned"),
            }
            id = freed.parent;
        }
        if self.is_empty() {
            // Give the arena's memory back once everybody has left.
            *self = Self::new();
        }
    }

    /// The filter whose node is `id`, rebuilt from the labels on the way to the root.
    pub(super) fn filter(&self, mut id: NodeId) -> String {
        let mut levels = Vec::new();
        while id != NodeId::ROOT {
            let node = self.node(id);
            levels.push(match &node.label {
                Label::Exact(level) => &**level,
                Label::SingleLevel => SINGLE_LEVEL,
                Label::MultiLevel => MULTI_LEVEL,
                Label::Root => unreachable!("a free slot is never a subscribed filter's node"),
            });
            id = node.parent;
        }
        levels.reverse();
        levels.join("/")
    }

    /// Calls `found` with the subscribers of every filter that matches a valid published `topic`, each filter
    /// once. Costs O(levels × wildcard branching): only nodes on paths that spell a matching filter are visited.
    pub(super) fn for_each_matching<'a>(
        &'a self,
        topic: &str,
        mut found: impl FnMut(&'a Subscribers<K>),
    ) {
        self.for_each_matching_node(topic, |id| found(&self.node(id).subscribers));
    }

    /// Calls `found` with the node of every subscribed filter that matches a valid published `topic`, each
    /// once (see [`Trie::for_each_matching`]).
    pub(super) fn for_each_matching_node(&self, topic: &str, mut found: impl FnMut(NodeId)) {
        // Each state is a node and the topic levels left after it (`None` once all are consumed). The next state
        // is kept in a local and only the other branches of a wildcard fork go on the stack, so an exact topic
        // allocates nothing. The loop (rather than recursion) keeps deep topics off the call stack.
        let mut pending: Vec<(NodeId, Option<&str>)> = Vec::new();
        let mut next = Some((NodeId::ROOT, Some(topic)));
        while let Some((id, rest)) = next.take().or_else(|| pending.pop()) {
            let node = self.node(id);
            if let Some(multi) = node.multi_level {
                found(multi);
            }
            let Some(rest) = rest else {
                if !node.subscribers.is_empty() {
                    found(id);
                }
                continue;
            };
            let (level, tail) = match rest.split_once(SEPARATOR) {
                Some((level, tail)) => (level, Some(tail)),
                None => (rest, None),
            };
            next = node.children.get(level).map(|&child| (child, tail));
            if let Some(single) = node.single_level {
                match next {
                    None => next = Some((single, tail)),
                    Some(_) => pending.push((single, tail)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(trie: &Trie<u32>, topic: &str) -> Vec<Vec<u32>> {
        let mut sets = Vec::new();
        trie.for_each_matching(topic, |subscribers| {
            let mut keys: Vec<u32> = subscribers.iter().copied().collect();
            keys.sort_unstable();
            sets.push(keys);
        });
        sets.sort();
        sets
    }

    #[test]
    fn insert_find_and_filter_round_trip() {
        let mut trie = Trie::new();
        for filter in ["a", "a/b", "a/+/c", "a/#", "#", "+", "/", "a//b", "+/+/#"] {
            let (id, added) = trie.insert(filter, 1);
            assert!(added, "{filter}");
            assert_eq!(trie.find(filter), Some(id), "{filter}");
            assert_eq!(trie.filter(id), filter);
            assert_eq!(trie.insert(filter, 1), (id, false), "{filter}");
        }
        assert_eq!(trie.find("a/+/c/d"), None);
        assert_eq!(trie.find("a/#/b"), None);
        assert_eq!(trie.find("a+"), None);
    }

    #[test]
    fn intermediate_nodes_have_no_subscribers() {
        let mut trie = Trie::new();
        trie.insert("a/b/c", 7);
        let middle = trie.find("a/b").expect("intermediate node");
        assert!(trie.subscribers(middle).is_empty());
        assert_eq!(matching(&trie, "a/b"), Vec::<Vec<u32>>::new());
        assert_eq!(matching(&trie, "a/b/c"), vec![vec![7]]);
    }

    #[test]
    fn matching_visits_each_matching_filter_once() {
        let mut trie = Trie::new();
        trie.insert("a/b", 1);
        trie.insert("a/+", 2);
        trie.insert("+/b", 3);
        trie.insert("+/+", 4);
        trie.insert("a/#", 5);
        trie.insert("#", 6);
        trie.insert("a/b/#", 7);
        trie.insert("a/c", 8);
        trie.insert("a/b/c", 9);
        let expected: Vec<Vec<u32>> = (1..=7).map(|key| vec![key]).collect();
        assert_eq!(matching(&trie, "a/b"), expected);
        assert_eq!(matching(&trie, "a"), vec![vec![5], vec![6]]);
    }

    #[test]
    fn remove_prunes_bare_nodes_only() {
        let mut trie = Trie::new();
        let (deep, _) = trie.insert("a/b/c", 1);
        let (shallow, _) = trie.insert("a", 2);
        assert!(!trie.remove(deep, 2));
        assert!(trie.remove(deep, 1));
        assert_eq!(trie.find("a/b/c"), None);
        assert_eq!(trie.find("a/b"), None);
        assert_eq!(trie.find("a"), Some(shallow));
        assert!(!trie.is_empty());
        assert!(trie.remove(shallow, 2));
        assert!(trie.is_empty());
        assert_eq!(trie.nodes.len(), 1);
    }

    #[test]
    fn freed_slots_are_reused() {
        let mut trie = Trie::new();
        trie.insert("keep", 0);
        let (id, _) = trie.insert("x/y", 1);
        trie.remove(id, 1);
        let before = trie.nodes.len();
        let (again, _) = trie.insert("p/q", 1);
        assert_eq!(trie.nodes.len(), before);
        assert_eq!(trie.filter(again), "p/q");
    }

    #[test]
    fn deep_filters_do_not_recurse() {
        // Under Miri, which has no native stack to overflow, the loops still run, on fewer levels.
        let levels = if cfg!(miri) { 500 } else { 100_000 };
        let filter = vec!["x"; levels].join("/");
        let mut trie = Trie::new();
        let (id, _) = trie.insert(&filter, 1);
        assert_eq!(matching(&trie, &filter), vec![vec![1]]);
        assert_eq!(trie.filter(id), filter);
        trie.remove(id, 1);
        assert!(trie.is_empty());
    }
}
