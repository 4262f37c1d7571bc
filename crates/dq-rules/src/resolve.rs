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

/// A key as two numbers that are the whole key for keys of up to 16 bytes (first and last 8,
/// first and last 4, or the bytes themselves, overlapping), so most keys are matched with two
/// integer comparisons instead of a `memcmp` call; longer keys compare the rest too.
#[inline]
pub(crate) fn key_parts(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len();
    if let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (u64::from_le_bytes(*first), u64::from_le_bytes(*last))
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        (
            u64::from(u32::from_le_bytes(*first)),
            u64::from(u32::from_le_bytes(*last)),
        )
    } else if let (Some(first), Some(last)) = (bytes.first(), bytes.last()) {
        let middle = bytes.get(len / 2).copied().unwrap_or(0);
        (
            u64::from(*first) | u64::from(middle) << 8 | u64::from(*last) << 16,
            0,
        )
    } else {
        (0, 0)
    }
}

#[derive(Debug)]
struct Child {
    parts: (u64, u64),
    name: Box<str>,
    node: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Sorted by name length; `by_len[n]..by_len[n + 1]` are the children of length `n`.
    children: Vec<Child>,
    by_len: Vec<usize>,
    by_name: Option<FxHashMap<Box<str>, usize>>,
}

impl Node {
    fn add(&mut self, name: &str, node: usize) {
        let at = self
            .children
            .partition_point(|c| c.name.len() <= name.len());
        self.children.insert(
            at,
            Child {
                parts: key_parts(name.as_bytes()),
                name: name.into(),
                node,
            },
        );
        let longest = self.children.last().map_or(0, |c| c.name.len());
        self.by_len = (0..=longest + 1)
            .map(|len| self.children.partition_point(|c| c.name.len() < len))
            .collect();
        if self.children.len() > LINEAR_CHILDREN {
            self.by_name = Some(
                self.children
                    .iter()
                    .map(|c| (c.name.clone(), c.node))
                    .collect(),
            );
        }
    }

    #[inline(always)]
    fn child(&self, name: &str) -> Option<usize> {
        if let Some(map) = &self.by_name {
            return map.get(name).copied();
        }
        let bytes = name.as_bytes();
        let len = bytes.len();
        let (Some(&from), Some(&to)) = (self.by_len.get(len), self.by_len.get(len + 1)) else {
            return None; // longer than every child
        };
        if from == to {
            return None;
        }
        let parts = key_parts(bytes);
        self.children
            .get(from..to)?
            .iter()
            .find(|c| c.parts == parts && (len <= 16 || *c.name == *name))
            .map(|c| c.node)
    }
}

/// The trie of leading field names. Node 0 is the record; a node always comes after its parent.
#[derive(Debug)]
pub(crate) struct FieldTrie {
    nodes: Vec<Node>,
    /// The nodes with children, in index order (so parents first): the only ones `fill` visits.
    parents: Vec<usize>,
}

impl FieldTrie {
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![Node::default()],
            parents: Vec::new(),
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
                    self.nodes[node].add(name, child);
                    if let Err(at) = self.parents.binary_search(&node) {
                        self.parents.insert(at, node);
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
        for &index in &self.parents {
            // A node's index is above its parent's, so this node's value is final here.
            let (Some(node), Some(Some(value))) =
                (self.nodes.get(index), slots.get(index).copied())
            else {
                continue;
            };
            match node.children.as_slice() {
                [] => {}
                [only] => slots[only.node] = value.field(&only.name),
                _ => {
                    let mut remaining = node.children.len();
                    let walked = value.for_each_field(|name, field| {
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
        let paths = [
            "created_at",
            "created_by",
            "created_",
            "c",
            "é",
            "createdXat",
            "ab",
            "ba",
            "abc",
            "abcd",
            "abdc",
            "a_very_long_key_beyond_16_bytes_1",
            "a_very_long_key_beyond_16_bytes_2",
        ];
        let nodes: Vec<usize> = paths
            .iter()
            .map(|p| trie.insert(&FieldPath::parse(p).expect("valid path")).0)
            .collect();
        let record = json!({
            "created_by": 2, "created_": 3, "createdXat": 6, "c": 4, "é": 5, "other": 0,
            "ba": 7, "abc": 8, "abdc": 9, "a_very_long_key_beyond_16_bytes_2": 10, "aXc": 0,
            "a_very_long_key_beyond_16_bytes_3": 0, "": 0,
        });
        trie.resolve(&record, |slots| {
            let found: Vec<Option<serde_json::Value>> =
                nodes.iter().map(|n| slots[*n].cloned()).collect();
            let expected: Vec<Option<serde_json::Value>> = [
                None,
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                None,
                Some(7),
                Some(8),
                None,
                Some(9),
                None,
                Some(10),
            ]
            .into_iter()
            .map(|v| v.map(|v| json!(v)))
            .collect();
            assert_eq!(found, expected);
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
