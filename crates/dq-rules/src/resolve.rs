//! Resolving the fields a rule set reads, once per record.
//!
//! Rules name fields by path; looking each one up separately costs a hashed lookup per rule and
//! per path segment (serde_json maps with `preserve_order` are IndexMaps keyed with SipHash, and
//! that hashing was about half of a record's evaluation cost). At build time the leading field
//! names of every path go into a trie; per record each trie node with several children walks its
//! object once ([`RecordView::for_each_field`]) and picks out the children, so a field several
//! rules read (`order_id`, `customer` of `customer.id` and `customer.email`) is found once.

use rustc_hash::FxHashMap;

use crate::path::FieldPath;
use crate::value::RecordView;

/// Above this many children a node matches keys by hash instead of comparing against each.
const LINEAR_CHILDREN: usize = 12;

/// Records resolving to at most this many trie nodes keep their slots on the stack.
const STACK_SLOTS: usize = 32;

/// A child's name with its length and first 8 bytes as a number: most keys are told apart by
/// two integer comparisons, and keys of up to 8 bytes are matched without a `memcmp` call.
#[derive(Debug)]
struct Child {
    len: usize,
    head: u64,
    name: Box<str>,
    node: usize,
}

/// The first 8 bytes of `name`, zero-padded, as a little-endian number.
#[inline]
fn head(name: &[u8]) -> u64 {
    match name.first_chunk::<8>() {
        Some(first) => u64::from_le_bytes(*first),
        None => {
            let mut head = 0u64;
            for (i, &byte) in name.iter().enumerate() {
                head |= u64::from(byte) << (8 * i);
            }
            head
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    children: Vec<Child>,
    by_name: Option<FxHashMap<Box<str>, usize>>,
}

impl Node {
    #[inline]
    fn child(&self, name: &str) -> Option<usize> {
        match &self.by_name {
            Some(map) => map.get(name).copied(),
            None => {
                let bytes = name.as_bytes();
                let (len, head) = (bytes.len(), head(bytes));
                self.children
                    .iter()
                    .find(|c| {
                        c.len == len
                            && c.head == head
                            && (len <= 8 || c.name.as_bytes().get(8..) == bytes.get(8..))
                    })
                    .map(|c| c.node)
            }
        }
    }
}

/// The trie of leading field names. Node 0 is the record; a node always comes after its parent.
#[derive(Debug)]
pub(crate) struct FieldTrie {
    nodes: Vec<Node>,
}

impl FieldTrie {
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }

    /// Adds the path's leading field names; returns the node they lead to and how many
    /// segments that covers.
    pub(crate) fn insert(&mut self, path: &FieldPath) -> (usize, usize) {
        let mut node = 0;
        let mut depth = 0;
        for name in path.leading_fields() {
            node = match self.nodes[node].child(name) {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    let parent = &mut self.nodes[node];
                    parent.children.push(Child {
                        len: name.len(),
                        head: head(name.as_bytes()),
                        name: name.into(),
                        node: child,
                    });
                    if parent.children.len() > LINEAR_CHILDREN {
                        parent.by_name = Some(
                            parent
                                .children
                                .iter()
                                .map(|c| (c.name.clone(), c.node))
                                .collect(),
                        );
                    }
                    child
                }
            };
            depth += 1;
        }
        (node, depth)
    }

    /// Calls `with` with the value of every node in `record` (`None` where a field on the way is
    /// missing or not an object).
    #[inline]
    pub(crate) fn resolve<'v, V: RecordView, R>(
        &self,
        record: &'v V,
        with: impl FnOnce(&[Option<&'v V>]) -> R,
    ) -> R {
        let count = self.nodes.len();
        if count <= STACK_SLOTS {
            let mut slots: [Option<&'v V>; STACK_SLOTS] = [None; STACK_SLOTS];
            self.fill(record, &mut slots[..count]);
            with(&slots[..count])
        } else {
            let mut slots = vec![None; count];
            self.fill(record, &mut slots);
            with(&slots)
        }
    }

    fn fill<'v, V: RecordView>(&self, record: &'v V, slots: &mut [Option<&'v V>]) {
        slots[0] = Some(record);
        for (index, node) in self.nodes.iter().enumerate() {
            // Parents come first, so this node's value is final here.
            let Some(value) = slots[index] else {
                continue;
            };
            match node.children.as_slice() {
                [] => {}
                [only] => slots[only.node] = value.field(&only.name),
                _ => {
                    let mut remaining = node.children.len();
                    let walked = value.for_each_field(&mut |name, field| {
                        if let Some(child) = node.child(name)
                            && slots[child].is_none()
                        {
                            // The first time a name comes is the value `field` returns.
                            slots[child] = Some(field);
                            remaining -= 1;
                        }
                        remaining > 0
                    });
                    if !walked {
                        for child in &node.children {
                            slots[child.node] = value.field(&child.name);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_prefixes_resolve_once_and_missing_parents_stay_missing() {
        let mut trie = FieldTrie::new();
        let paths = ["a.b", "a.c", "d", "a.b", "x.y", "$", "items[*].sku", "n.m"];
        let nodes: Vec<(usize, usize)> = paths
            .iter()
            .map(|p| trie.insert(&FieldPath::parse(p).expect("valid path")))
            .collect();
        assert_eq!(nodes[0], nodes[3]);
        assert_eq!(nodes[5], (0, 0));
        assert_eq!(nodes[6].1, 1);
        let record = json!({"a": {"b": 1, "c": [2]}, "d": "e", "items": [], "n": 5});
        trie.resolve(&record, |slots| {
            let at = |i: usize| slots[nodes[i].0].cloned();
            assert_eq!(at(0), Some(json!(1)));
            assert_eq!(at(1), Some(json!([2])));
            assert_eq!(at(2), Some(json!("e")));
            assert_eq!(at(4), None);
            assert_eq!(at(5), Some(record.clone()));
            assert_eq!(at(6), Some(json!([])));
            assert_eq!(at(7), None, "a field of a number is missing");
        });
    }

    #[test]
    fn keys_sharing_their_first_8_bytes_are_told_apart() {
        let mut trie = FieldTrie::new();
        let paths = ["created_at", "created_by", "created_", "c", "é", "createdXat"];
        let nodes: Vec<usize> = paths
            .iter()
            .map(|p| trie.insert(&FieldPath::parse(p).expect("valid path")).0)
            .collect();
        let record = json!({"created_by": 2, "created_": 3, "createdXat": 6, "c": 4, "é": 5, "other": 0});
        trie.resolve(&record, |slots| {
            let found: Vec<Option<serde_json::Value>> =
                nodes.iter().map(|n| slots[*n].cloned()).collect();
            assert_eq!(
                found,
                vec![None, Some(json!(2)), Some(json!(3)), Some(json!(4)), Some(json!(5)), Some(json!(6))]
            );
        });
    }

    #[test]
    fn wide_nodes_match_by_hash() {
        let mut trie = FieldTrie::new();
        let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let nodes: Vec<usize> = names
            .iter()
            .map(|n| trie.insert(&FieldPath::parse(n).expect("valid path")).0)
            .collect();
        let record: serde_json::Value = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(i, n)| (n.clone(), json!(i)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        trie.resolve(&record, |slots| {
            for (i, node) in nodes.iter().enumerate() {
                let expected = (i % 3 != 0).then(|| json!(i));
                assert_eq!(slots[*node].cloned(), expected, "f{i}");
            }
        });
    }
}
