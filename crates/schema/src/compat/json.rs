//! JSON Schema compatibility: the reader accepts every document the writer accepts.
//!
//! Rules (each failure names the path and the reason): widening `type` is compatible, narrowing
//! is not (`integer` widens to `number`); a property that becomes required breaks, one that stops
//! being required does not; adding an optional property is compatible (we trust producers of an
//! open content model not to have sent that name already with another type, as Confluent's
//! lenient mode does); removing a property breaks only a closed content model
//! (`additionalProperties: false`) or one whose `additionalProperties` schema rejects it; closing
//! or restricting `additionalProperties` breaks; `enum`/`const` may gain values but not lose them;
//! raising a lower bound or lowering an upper bound (`minimum`, `maxLength`, ...) breaks, as does
//! a new or changed `pattern`; `items` and `properties` are compared recursively; `anyOf`/`oneOf`
//! need every writer branch accepted by some reader branch; local `$ref`s (`#/...`) are followed.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::Incompatibility;

pub(super) fn reader_problems(writer: &Value, reader: &Value) -> Vec<Incompatibility> {
    let mut comparison = Comparison {
        writer_root: writer,
        reader_root: reader,
        same_roots: writer == reader,
        following: HashSet::new(),
        found: Vec::new(),
    };
    comparison.compare(writer, reader, "$");
    comparison.found
}

struct Comparison<'a> {
    writer_root: &'a Value,
    reader_root: &'a Value,
    /// Equal sub-schemas are only equivalent when their `$ref`s resolve in equal roots.
    same_roots: bool,
    /// `$ref` pairs being compared, so recursive schemas end.
    following: HashSet<(String, String)>,
    found: Vec<Incompatibility>,
}

static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

const LOWER_BOUNDS: [&str; 5] = [
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
const UPPER_BOUNDS: [&str; 5] = [
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

fn accepts_everything(schema: &Value) -> bool {
    match schema {
        Value::Bool(accept) => *accept,
        Value::Object(object) => object.keys().all(|k| {
            matches!(
                k.as_str(),
                "$schema"
                    | "$id"
                    | "title"
                    | "description"
                    | "$comment"
                    | "default"
                    | "examples"
                    | "definitions"
                    | "$defs"
            )
        }),
        _ => false,
    }
}

fn resolve<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn types_of(schema: &Map<String, Value>) -> Option<Vec<String>> {
    match schema.get("type")? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(many) => Some(
            many.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(constant) = schema.get("const") {
        return Some(vec![constant.clone()]);
    }
    schema.get("enum")?.as_array().cloned()
}

fn required_of(schema: &Map<String, Value>) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn branches(schema: &Map<String, Value>) -> Option<&Vec<Value>> {
    schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
}

fn may_be(types: &Option<Vec<String>>, wanted: &str) -> bool {
    types.as_ref().is_none_or(|t| t.iter().any(|t| t == wanted))
}

impl<'a> Comparison<'a> {
    fn problem(&mut self, path: &str, reason: impl Into<String>) {
        self.found.push(Incompatibility::new(path, reason));
    }

    fn compare(&mut self, writer: &'a Value, reader: &'a Value, path: &str) {
        if accepts_everything(reader)
            || writer == &Value::Bool(false)
            || (self.same_roots && writer == reader)
        {
            return;
        }
        let (writer_object, reader_object) = match (writer, reader) {
            (_, Value::Bool(false)) => {
                return self.problem(path, "reader schema is `false` and accepts nothing");
            }
            (Value::Bool(true), Value::Object(_)) => {
                return self.problem(path, "writer accepted anything; reader is restricted");
            }
            (Value::Object(w), Value::Object(r)) => (w, r),
            _ => return self.problem(path, "schema is neither an object nor a boolean"),
        };
        if self.follow_references(writer_object, reader_object, path) {
            return;
        }
        if branches(writer_object).is_some() || branches(reader_object).is_some() {
            return self.compare_branches(writer, reader, path);
        }
        self.compare_types(writer_object, reader_object, path);
        self.compare_values(writer_object, reader_object, path);
        self.compare_bounds(writer_object, reader_object, path);
        let writer_types = types_of(writer_object);
        let reader_types = types_of(reader_object);
        if may_be(&writer_types, "object") && may_be(&reader_types, "object") {
            self.compare_objects(writer_object, reader_object, path);
        }
        if may_be(&writer_types, "array") && may_be(&reader_types, "array") {
            match (writer_object.get("items"), reader_object.get("items")) {
                (_, None) => {}
                (None, Some(reader_items)) if !accepts_everything(reader_items) => self.problem(
                    &format!("{path}[]"),
                    "array items restricted where the writer allowed any",
                ),
                (Some(writer_items), Some(reader_items)) => {
                    self.compare(writer_items, reader_items, &format!("{path}[]"))
                }
                _ => {}
            }
        }
    }

    /// Replaces `$ref`s by their local targets; true when the pair was already being compared.
    fn follow_references(
        &mut self,
        writer: &'a Map<String, Value>,
        reader: &'a Map<String, Value>,
        path: &str,
    ) -> bool {
        let writer_ref = writer.get("$ref").and_then(Value::as_str);
        let reader_ref = reader.get("$ref").and_then(Value::as_str);
        if writer_ref.is_none() && reader_ref.is_none() {
            return false;
        }
        let key = (
            writer_ref.unwrap_or_default().to_owned(),
            reader_ref.unwrap_or_default().to_owned(),
        );
        if !self.following.insert(key.clone()) {
            return true;
        }
        let writer_target = match writer_ref {
            Some(reference) => resolve(self.writer_root, reference),
            None => Some(self.as_value(writer)),
        };
        let reader_target = match reader_ref {
            Some(reference) => resolve(self.reader_root, reference),
            None => Some(self.as_value(reader)),
        };
        match (writer_target, reader_target) {
            (Some(w), Some(r)) => self.compare(w, r, path),
            _ => self.problem(
                path,
                "a `$ref` that is not local (`#/...`) cannot be compared",
            ),
        }
        self.following.remove(&key);
        true
    }

    /// Finds the `Value` that holds `object` inside one of the roots (refs need a `&Value`).
    fn as_value(&self, object: &'a Map<String, Value>) -> &'a Value {
        fn find(value: &Value, target: *const Map<String, Value>) -> Option<&Value> {
            match value {
                Value::Object(map) if std::ptr::eq(map, target) => Some(value),
                Value::Object(map) => map.values().find_map(|v| find(v, target)),
                Value::Array(items) => items.iter().find_map(|v| find(v, target)),
                _ => None,
            }
        }
        find(self.writer_root, object)
            .or_else(|| find(self.reader_root, object))
            .unwrap_or(&Value::Bool(true))
    }

    fn compare_branches(&mut self, writer: &'a Value, reader: &'a Value, path: &str) {
        let writer_branches: Vec<&'a Value> = match writer.as_object().and_then(branches) {
            Some(list) => list.iter().collect(),
            None => vec![writer],
        };
        let reader_branches: Vec<&'a Value> = match reader.as_object().and_then(branches) {
            Some(list) => list.iter().collect(),
            None => vec![reader],
        };
        for (index, writer_branch) in writer_branches.iter().enumerate() {
            let accepted = reader_branches.iter().any(|reader_branch| {
                let mut trial = Comparison {
                    writer_root: self.writer_root,
                    reader_root: self.reader_root,
                    same_roots: self.same_roots,
                    following: self.following.clone(),
                    found: Vec::new(),
                };
                trial.compare(writer_branch, reader_branch, path);
                trial.found.is_empty()
            });
            if !accepted {
                self.problem(
                    path,
                    format!("writer alternative #{index} is accepted by no reader alternative (anyOf/oneOf)"),
                );
            }
        }
    }

    fn compare_types(
        &mut self,
        writer: &Map<String, Value>,
        reader: &Map<String, Value>,
        path: &str,
    ) {
        let Some(reader_types) = types_of(reader) else {
            return;
        };
        let Some(writer_types) = types_of(writer) else {
            return self.problem(
                path,
                format!("type narrowed from any type to {}", reader_types.join("|")),
            );
        };
        let lost: Vec<&str> = writer_types
            .iter()
            .filter(|w| {
                !reader_types
                    .iter()
                    .any(|r| r == *w || (w.as_str() == "integer" && r == "number"))
            })
            .map(String::as_str)
            .collect();
        if !lost.is_empty() {
            self.problem(
                path,
                format!(
                    "type narrowed from {} to {}: {} no longer accepted",
                    writer_types.join("|"),
                    reader_types.join("|"),
                    lost.join(", ")
                ),
            );
        }
    }

    fn compare_values(
        &mut self,
        writer: &Map<String, Value>,
        reader: &Map<String, Value>,
        path: &str,
    ) {
        let Some(reader_values) = allowed_values(reader) else {
            return;
        };
        match allowed_values(writer) {
            None => self.problem(path, "enum/const added: values are now restricted"),
            Some(writer_values) => {
                let removed: Vec<String> = writer_values
                    .iter()
                    .filter(|v| !reader_values.contains(v))
                    .map(Value::to_string)
                    .collect();
                if !removed.is_empty() {
                    self.problem(
                        path,
                        format!("enum value(s) removed: {}", removed.join(", ")),
                    );
                }
            }
        }
    }

    fn compare_bounds(
        &mut self,
        writer: &Map<String, Value>,
        reader: &Map<String, Value>,
        path: &str,
    ) {
        for (keywords, is_lower) in [(LOWER_BOUNDS, true), (UPPER_BOUNDS, false)] {
            for keyword in keywords {
                let Some(reader_bound) = reader.get(keyword).and_then(Value::as_f64) else {
                    continue;
                };
                match writer.get(keyword).and_then(Value::as_f64) {
                    None => self.problem(path, format!("`{keyword}: {reader_bound}` added")),
                    Some(writer_bound)
                        if (is_lower && reader_bound > writer_bound)
                            || (!is_lower && reader_bound < writer_bound) =>
                    {
                        self.problem(
                            path,
                            format!("`{keyword}` narrowed from {writer_bound} to {reader_bound}"),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(pattern) = reader.get("pattern")
            && writer.get("pattern") != Some(pattern)
        {
            self.problem(path, format!("`pattern` added or changed to {pattern}"));
        }
    }

    fn compare_objects(
        &mut self,
        writer: &'a Map<String, Value>,
        reader: &'a Map<String, Value>,
        path: &str,
    ) {
        let writer_properties = writer
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY);
        let reader_properties = reader
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY);
        let writer_required = required_of(writer);
        for name in required_of(reader) {
            if !writer_required.contains(&name) {
                self.problem(&format!("{path}.{name}"), "property became required");
            }
        }
        let writer_additional = writer.get("additionalProperties");
        let reader_additional = reader.get("additionalProperties");
        for (name, writer_property) in writer_properties {
            let property_path = format!("{path}.{name}");
            match (reader_properties.get(name), reader_additional) {
                (Some(reader_property), _) => {
                    self.compare(writer_property, reader_property, &property_path)
                }
                (None, Some(Value::Bool(false))) => self.problem(
                    &property_path,
                    "property removed from a closed content model (additionalProperties: false)",
                ),
                (None, Some(reader_schema)) => {
                    self.compare(writer_property, reader_schema, &property_path)
                }
                (None, None) => {}
            }
        }
        for (name, reader_property) in reader_properties {
            if writer_properties.contains_key(name) {
                continue;
            }
            if let Some(writer_schema @ Value::Object(_)) = writer_additional {
                self.compare(writer_schema, reader_property, &format!("{path}.{name}"));
            }
        }
        let additional_path = format!("{path}.<additionalProperties>");
        match (writer_additional, reader_additional) {
            (_, None | Some(Value::Bool(true))) | (Some(Value::Bool(false)), _) => {}
            (None | Some(Value::Bool(true)), Some(Value::Bool(false))) => self.problem(
                &additional_path,
                "content model closed (additionalProperties: false) where it was open",
            ),
            (None | Some(Value::Bool(true)), Some(_)) => self.problem(
                &additional_path,
                "additionalProperties restricted where the writer allowed any",
            ),
            (Some(writer_schema), Some(reader_schema)) => {
                self.compare(writer_schema, reader_schema, &additional_path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::reader_problems;

    fn paths_and_reasons(
        writer: serde_json::Value,
        reader: serde_json::Value,
    ) -> Vec<(String, String)> {
        reader_problems(&writer, &reader)
            .into_iter()
            .map(|p| (p.path, p.reason))
            .collect()
    }

    fn object(
        properties: serde_json::Value,
        required: &[&str],
        extra: serde_json::Value,
    ) -> serde_json::Value {
        let mut schema = json!({"type": "object", "properties": properties, "required": required});
        if let (Some(target), Some(extra)) = (schema.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        schema
    }

    #[test]
    fn adding_optional_property_is_compatible_and_required_is_not() {
        let v1 = object(json!({"id": {"type": "string"}}), &["id"], json!({}));
        let optional = object(
            json!({"id": {"type": "string"}, "note": {"type": "string"}}),
            &["id"],
            json!({}),
        );
        assert!(paths_and_reasons(v1.clone(), optional).is_empty());
        let required = object(
            json!({"id": {"type": "string"}, "note": {"type": "string"}}),
            &["id", "note"],
            json!({}),
        );
        let found = paths_and_reasons(v1, required);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "$.note");
        assert!(found[0].1.contains("required"));
    }

    #[test]
    fn removing_required_is_compatible_but_not_from_closed_model() {
        let v1 = object(
            json!({"id": {"type": "string"}, "n": {"type": "integer"}}),
            &["id", "n"],
            json!({}),
        );
        let open = object(json!({"id": {"type": "string"}}), &["id"], json!({}));
        assert!(paths_and_reasons(v1.clone(), open).is_empty());
        let closed_writer = object(
            json!({"id": {"type": "string"}, "n": {"type": "integer"}}),
            &["id", "n"],
            json!({"additionalProperties": false}),
        );
        let closed_reader = object(
            json!({"id": {"type": "string"}}),
            &["id"],
            json!({"additionalProperties": false}),
        );
        let found = paths_and_reasons(closed_writer, closed_reader);
        assert_eq!(found[0].0, "$.n");
        assert!(found[0].1.contains("closed content model"), "{found:?}");
    }

    #[test]
    fn narrowing_types_breaks_and_widening_does_not() {
        let int = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let number = json!({"type": "object", "properties": {"n": {"type": "number"}}});
        let string = json!({"type": "object", "properties": {"n": {"type": "string"}}});
        assert!(paths_and_reasons(int.clone(), number.clone()).is_empty());
        let narrowed = paths_and_reasons(number, int.clone());
        assert_eq!(narrowed[0].0, "$.n");
        assert!(narrowed[0].1.contains("narrowed"));
        assert!(!paths_and_reasons(int, string).is_empty());
        let nullable = json!({"type": ["string", "null"]});
        assert!(paths_and_reasons(json!({"type": "string"}), nullable.clone()).is_empty());
        assert!(!paths_and_reasons(nullable, json!({"type": "string"})).is_empty());
    }

    #[test]
    fn enum_values_may_grow_but_not_shrink() {
        let ab = json!({"enum": ["A", "B"]});
        let abc = json!({"enum": ["A", "B", "C"]});
        assert!(paths_and_reasons(ab.clone(), abc.clone()).is_empty());
        let found = paths_and_reasons(abc, ab);
        assert!(found[0].1.contains("\"C\""), "{found:?}");
        assert!(
            !paths_and_reasons(
                json!({"type": "string"}),
                json!({"type": "string", "enum": ["A"]})
            )
            .is_empty()
        );
    }

    #[test]
    fn closing_or_restricting_additional_properties_breaks() {
        let open = json!({"type": "object"});
        let closed = json!({"type": "object", "additionalProperties": false});
        let found = paths_and_reasons(open.clone(), closed.clone());
        assert!(found[0].1.contains("closed"), "{found:?}");
        assert!(paths_and_reasons(closed, open.clone()).is_empty());
        let typed = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert!(!paths_and_reasons(open, typed.clone()).is_empty());
        let wider =
            json!({"type": "object", "additionalProperties": {"type": ["string", "number"]}});
        assert!(paths_and_reasons(typed, wider).is_empty());
    }

    #[test]
    fn bounds_items_and_refs_are_compared() {
        let short = json!({"type": "string", "maxLength": 5});
        let long = json!({"type": "string", "maxLength": 10});
        assert!(paths_and_reasons(short.clone(), long.clone()).is_empty());
        assert!(paths_and_reasons(long, short)[0].1.contains("maxLength"));

        let ints = json!({"type": "array", "items": {"type": "integer"}});
        let strings = json!({"type": "array", "items": {"type": "string"}});
        assert_eq!(paths_and_reasons(ints, strings)[0].0, "$[]");

        let with_ref = |t: &str| json!({"$defs": {"n": {"type": t}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/n"}}});
        assert!(paths_and_reasons(with_ref("integer"), with_ref("number")).is_empty());
        assert_eq!(
            paths_and_reasons(with_ref("number"), with_ref("integer"))[0].0,
            "$.x"
        );
    }

    #[test]
    fn recursive_refs_terminate() {
        let tree = json!({"$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"});
        let labelled = json!({"$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}, "label": {"type": "string"}}}}, "$ref": "#/$defs/node"});
        assert!(paths_and_reasons(tree.clone(), labelled.clone()).is_empty());
        let closed = json!({"$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}, "additionalProperties": false}}, "$ref": "#/$defs/node"});
        assert!(!paths_and_reasons(tree, closed).is_empty());
    }

    #[test]
    fn one_of_branches_must_be_covered() {
        let two = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        let one = json!({"oneOf": [{"type": "string"}]});
        assert!(paths_and_reasons(one.clone(), two.clone()).is_empty());
        assert!(paths_and_reasons(two, one)[0].1.contains("alternative #1"));
    }
}
