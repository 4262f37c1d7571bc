//! Field paths (`order.items[*].sku`, `tags[0]`, `$` for the whole record), parsed once at load
//! time into segments so evaluation only walks them.

use std::fmt::Write as _;

use crate::value::{RecordView, Scalar};

/// At most this many `[*]` in one path: the indexes of the current element are kept in a fixed
/// array so walking a path never allocates.
pub const MAX_WILDCARDS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(Box<str>),
    Index(usize),
    Each,
}

/// A compiled field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: Box<str>,
    segments: Box<[Segment]>,
}

/// What a path leads to in one record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Located<'v, V: ?Sized> {
    Found(&'v V),
    /// A field on the way is absent (or the value on the way is null).
    Missing,
    /// `[*]` met something that is neither an array nor null.
    NotAnArray(&'v V),
}

impl FieldPath {
    /// Parses `a.b[0].c`, `items[*].sku` or `$` (the record itself).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let mut segments = Vec::new();
        if trimmed != "$" {
            if trimmed.is_empty() {
                return Err("empty field path".into());
            }
            for part in trimmed.split('.') {
                let (name, mut rest) = match part.find('[') {
                    Some(at) => (&part[..at], &part[at..]),
                    None => (part, ""),
                };
                if name.is_empty() && (segments.is_empty() || rest.is_empty()) {
                    return Err(format!("empty field name in path `{text}`"));
                }
                if name.contains(']') {
                    return Err(format!("stray `]` in path `{text}`"));
                }
                if !name.is_empty() {
                    segments.push(Segment::Field(name.into()));
                }
                while !rest.is_empty() {
                    let close = rest
                        .find(']')
                        .filter(|_| rest.starts_with('['))
                        .ok_or_else(|| format!("malformed brackets in path `{text}`"))?;
                    let inside = &rest[1..close];
                    segments.push(if inside == "*" {
                        Segment::Each
                    } else {
                        Segment::Index(inside.parse().map_err(|_| {
                            format!("`[{inside}]` in path `{text}` is neither an index nor `*`")
                        })?)
                    });
                    rest = &rest[close + 1..];
                }
            }
        }
        let wildcards = segments.iter().filter(|s| **s == Segment::Each).count();
        if wildcards > MAX_WILDCARDS {
            return Err(format!(
                "path `{text}` has {wildcards} `[*]`, at most {MAX_WILDCARDS} are supported"
            ));
        }
        Ok(Self {
            text: trimmed.into(),
            segments: segments.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::Each)
    }

    /// Calls `visit` for every value the path leads to; `indexes` are the positions taken at each
    /// `[*]`, for [`FieldPath::render`].
    pub(crate) fn visit<'v, V: RecordView>(
        &self,
        root: &'v V,
        visit: &mut impl FnMut(Located<'v, V>, &[usize]),
    ) {
        let mut indexes = [0usize; MAX_WILDCARDS];
        walk(&self.segments, root, &mut indexes, 0, visit);
    }

    /// The leading field names (`a`, `b` of `a.b[0].c`), which the evaluator resolves for all
    /// rules at once.
    pub(crate) fn leading_fields(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map_while(|s| match s {
            Segment::Field(name) => Some(&**name),
            _ => None,
        })
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Like [`FieldPath::visit`] from the value the first `skip` segments (all fields) led to;
    /// `None` when one of them was missing.
    pub(crate) fn visit_from<'v, V: RecordView>(
        &self,
        skip: usize,
        start: Option<&'v V>,
        visit: &mut impl FnMut(Located<'v, V>, &[usize]),
    ) {
        let Some(start) = start else {
            visit(Located::Missing, &[]);
            return;
        };
        let mut indexes = [0usize; MAX_WILDCARDS];
        walk(
            self.segments.get(skip..).unwrap_or_default(),
            start,
            &mut indexes,
            0,
            visit,
        );
    }

    /// The path with each `[*]` replaced by the index taken, e.g. `items[2].sku`.
    pub(crate) fn render(&self, indexes: &[usize]) -> String {
        if !self.has_wildcard() {
            return self.text.to_string();
        }
        let mut out = String::with_capacity(self.text.len() + 4);
        let mut taken = indexes.iter();
        for (position, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) => {
                    if position > 0 {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Segment::Each => match taken.next() {
                    Some(i) => {
                        let _ = write!(out, "[{i}]");
                    }
                    None => out.push_str("[*]"),
                },
            }
        }
        out
    }
}

fn walk<'v, V: RecordView>(
    segments: &[Segment],
    value: &'v V,
    indexes: &mut [usize; MAX_WILDCARDS],
    depth: usize,
    visit: &mut impl FnMut(Located<'v, V>, &[usize]),
) {
    let Some((first, rest)) = segments.split_first() else {
        visit(Located::Found(value), &indexes[..depth]);
        return;
    };
    match first {
        Segment::Field(name) => match value.field(name) {
            Some(next) => walk(rest, next, indexes, depth, visit),
            None => visit(Located::Missing, &indexes[..depth]),
        },
        Segment::Index(i) => match value.element(*i) {
            Some(next) => walk(rest, next, indexes, depth, visit),
            None => visit(Located::Missing, &indexes[..depth]),
        },
        Segment::Each => match value.scalar() {
            Scalar::Array(len) => {
                for i in 0..len {
                    if let Some(next) = value.element(i) {
                        indexes[depth] = i;
                        walk(rest, next, indexes, depth + 1, visit);
                    }
                }
            }
            Scalar::Null => visit(Located::Missing, &indexes[..depth]),
            _ => visit(Located::NotAnArray(value), &indexes[..depth]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(path: &str, record: &serde_json::Value) -> Vec<(String, Option<serde_json::Value>)> {
        let path = FieldPath::parse(path).expect("valid path");
        let mut out = Vec::new();
        path.visit(record, &mut |located, indexes| {
            let value = match located {
                Located::Found(v) => Some(v.clone()),
                Located::Missing => None,
                Located::NotAnArray(v) => Some(json!({ "not_an_array": v })),
            };
            out.push((path.render(indexes), value));
        });
        out
    }

    #[test]
    fn deep_paths_and_wildcards_resolve_with_concrete_indexes() {
        let record = json!({"a": {"items": [{"sku": "x"}, {"sku": "y"}, {}]}});
        assert_eq!(
            collect("a.items[*].sku", &record),
            vec![
                ("a.items[0].sku".into(), Some(json!("x"))),
                ("a.items[1].sku".into(), Some(json!("y"))),
                ("a.items[2].sku".into(), None),
            ]
        );
        assert_eq!(
            collect("a.items[1].sku", &record),
            vec![("a.items[1].sku".into(), Some(json!("y")))]
        );
        assert_eq!(
            collect("$", &record),
            vec![("$".into(), Some(record.clone()))]
        );
    }

    #[test]
    fn empty_arrays_yield_nothing_and_missing_parents_yield_missing() {
        assert!(collect("items[*].sku", &json!({"items": []})).is_empty());
        assert_eq!(
            collect("a.b.c", &json!({"a": 1})),
            vec![("a.b.c".into(), None)]
        );
        assert_eq!(
            collect("items[*]", &json!({"items": null})),
            vec![("items[*]".into(), None)]
        );
        assert_eq!(
            collect("items[*]", &json!({"items": "no"})),
            vec![("items[*]".into(), Some(json!({"not_an_array": "no"})))]
        );
    }

    #[test]
    fn malformed_paths_are_rejected() {
        for bad in ["", "a..b", "a[", "a[x]", "a]b", "a[*][*][*][*][*]"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
