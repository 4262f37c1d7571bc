//! Avro reader/writer resolution on top of `apache-avro`'s `SchemaCompatibility`, with two
//! corrections: only `Compatibility::Full` counts as compatible (a `Partial` answer means some
//! enum symbols or union branches cannot be read, which the Java reference rejects), and reader
//! named types may match a writer's name through the reader's `aliases`, which the crate refuses.

use std::collections::HashMap;
use std::iter::once;

use apache_avro::Schema;
use apache_avro::error::CompatibilityError;
use apache_avro::schema::{ArraySchema, EnumSchema, MapSchema, RecordSchema};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde_json::Value;

use super::Incompatibility;

pub(super) fn reader_problems(
    writer: &Schema,
    writer_json: &Value,
    reader: &Schema,
    reader_json: &Value,
) -> Vec<Incompatibility> {
    let renamed_writer = writer_renamed_to_reader_aliases(writer_json, reader_json);
    let writer = renamed_writer.as_ref().unwrap_or(writer);
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Vec::new(),
        Ok(Compatibility::Partial) => {
            let mut found = Vec::new();
            locate_partial(writer, reader, "$", &mut found);
            if found.is_empty() {
                found.push(Incompatibility::new(
                    "$",
                    "only part of the writer's data can be read (some enum symbols or union branches are missing in the reader)",
                ));
            }
            found
        }
        Err(error) => vec![describe(&error, "$".to_owned())],
    }
}

fn describe(error: &CompatibilityError, path: String) -> Incompatibility {
    let reason = match error {
        CompatibilityError::FieldTypeMismatch(field, inner) => {
            return describe(inner, format!("{path}.{field}"));
        }
        CompatibilityError::MissingDefaultValue(field) => {
            return Incompatibility::new(
                &format!("{path}.{field}"),
                "reader field is missing in the writer and has no default",
            );
        }
        CompatibilityError::WrongType {
            writer_schema_type,
            reader_schema_type,
        } => format!(
            "type changed: writer `{}` cannot be read as `{}`",
            kind_of(writer_schema_type),
            kind_of(reader_schema_type)
        ),
        CompatibilityError::NameMismatch {
            writer_name,
            reader_name,
        } => format!(
            "named type `{writer_name}` became `{reader_name}` without an alias naming the old one"
        ),
        CompatibilityError::MissingSymbols => {
            "reader enum has none of the writer's symbols".to_owned()
        }
        CompatibilityError::MissingUnionElements
        | CompatibilityError::SchemaMismatchAllUnionElements => {
            "no union branch of the writer can be read by the reader".to_owned()
        }
        CompatibilityError::FixedMismatch => "fixed size changed".to_owned(),
        other => other.to_string(),
    };
    Incompatibility::new(&path, reason)
}

/// The crate reports types as `Debug` dumps of whole schemas; the variant name is what a reader
/// of the message needs.
fn kind_of(debug_dump: &str) -> String {
    debug_dump
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

fn is_full(writer: &Schema, reader: &Schema) -> bool {
    matches!(
        SchemaCompatibility::can_read(writer, reader),
        Ok(Compatibility::Full)
    )
}

/// Walks down a `Partial` answer to the enum or union that causes it.
fn locate_partial(writer: &Schema, reader: &Schema, path: &str, found: &mut Vec<Incompatibility>) {
    match (writer, reader) {
        (
            Schema::Record(RecordSchema {
                fields: w_fields, ..
            }),
            Schema::Record(RecordSchema {
                fields: r_fields, ..
            }),
        ) => {
            for r_field in r_fields {
                let w_field = once(&r_field.name)
                    .chain(r_field.aliases.iter())
                    .find_map(|name| w_fields.iter().find(|w| &w.name == name));
                if let Some(w_field) = w_field
                    && !is_full(&w_field.schema, &r_field.schema)
                {
                    let field_path = format!("{path}.{}", r_field.name);
                    locate_partial(&w_field.schema, &r_field.schema, &field_path, found);
                }
            }
        }
        (
            Schema::Array(ArraySchema { items: w, .. }),
            Schema::Array(ArraySchema { items: r, .. }),
        ) => locate_partial(w, r, &format!("{path}[]"), found),
        (Schema::Map(MapSchema { types: w, .. }), Schema::Map(MapSchema { types: r, .. })) => {
            locate_partial(w, r, &format!("{path}{{}}"), found)
        }
        (
            Schema::Enum(EnumSchema { symbols: w, .. }),
            Schema::Enum(EnumSchema { symbols: r, .. }),
        ) => {
            let missing: Vec<&str> = w
                .iter()
                .filter(|s| !r.contains(s))
                .map(String::as_str)
                .collect();
            found.push(Incompatibility::new(
                path,
                format!(
                    "reader enum has no default and lacks writer symbol(s) {}",
                    missing.join(", ")
                ),
            ));
        }
        (Schema::Union(_), _) | (_, Schema::Union(_)) => {
            let writer_branches: &[Schema] = match writer {
                Schema::Union(union) => union.variants(),
                other => std::slice::from_ref(other),
            };
            let reader_branches: &[Schema] = match reader {
                Schema::Union(union) => union.variants(),
                other => std::slice::from_ref(other),
            };
            let unreadable: Vec<String> = writer_branches
                .iter()
                .filter(|w| !reader_branches.iter().any(|r| is_full(w, r)))
                .map(branch_name)
                .collect();
            found.push(Incompatibility::new(
                path,
                format!(
                    "writer union branch(es) {} cannot be read by the reader",
                    unreadable.join(", ")
                ),
            ));
        }
        _ => found.push(Incompatibility::new(
            path,
            "only part of the writer's data can be read",
        )),
    }
}

fn branch_name(schema: &Schema) -> String {
    match schema.name() {
        Some(name) => name.fullname(None),
        None => kind_of(&format!("{schema:?}")),
    }
}

/// A named type's full name: a dotted name is already full, else the explicit namespace, else the
/// enclosing one.
fn full_name(name: &str, namespace: Option<&str>, enclosing: &str) -> String {
    if name.contains('.') {
        return name.to_owned();
    }
    match namespace
        .filter(|ns| !ns.is_empty())
        .or(Some(enclosing).filter(|ns| !ns.is_empty()))
    {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_owned(),
    }
}

fn namespace_of(full: &str) -> &str {
    full.rsplit_once('.').map(|(ns, _)| ns).unwrap_or("")
}

fn is_named_definition(object: &serde_json::Map<String, Value>) -> bool {
    matches!(
        object.get("type").and_then(Value::as_str),
        Some("record" | "error" | "enum" | "fixed")
    ) && object.get("name").is_some_and(Value::is_string)
}

/// The full name a named definition (record, error, enum, fixed) declares, or `None` for any
/// other JSON object.
fn definition_full_name(
    object: &serde_json::Map<String, Value>,
    enclosing: &str,
) -> Option<String> {
    if !is_named_definition(object) {
        return None;
    }
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = object.get("namespace").and_then(Value::as_str);
    Some(full_name(name, namespace, enclosing))
}

/// Maps each reader alias (full name) to the reader type's full name.
fn collect_reader_aliases(json: &Value, enclosing: &str, aliases: &mut HashMap<String, String>) {
    match json {
        Value::Array(items) => {
            for item in items {
                collect_reader_aliases(item, enclosing, aliases);
            }
        }
        Value::Object(object) => {
            let mut inner_namespace = enclosing.to_owned();
            if let Some(full) = definition_full_name(object, enclosing) {
                inner_namespace = namespace_of(&full).to_owned();
                for alias in object
                    .get("aliases")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    // Aliases are relative to the namespace of the type that declares them.
                    aliases.insert(full_name(alias, None, &inner_namespace), full.clone());
                }
            }
            for (key, value) in object {
                if matches!(key.as_str(), "type" | "fields" | "items" | "values") {
                    collect_reader_aliases(value, &inner_namespace, aliases);
                }
            }
        }
        _ => {}
    }
}

/// Renames writer named types (definitions and references) that a reader type lists as an alias.
fn rename_writer(json: &mut Value, enclosing: &str, aliases: &HashMap<String, String>) {
    match json {
        Value::String(reference) => {
            if let Some(target) = aliases.get(&full_name(reference, None, enclosing)) {
                *reference = target.clone();
            }
        }
        Value::Array(items) => {
            for item in items {
                rename_writer(item, enclosing, aliases);
            }
        }
        Value::Object(object) => {
            let mut inner_namespace = enclosing.to_owned();
            if let Some(full) = definition_full_name(object, enclosing) {
                // Nested definitions keep resolving in the writer's original namespace.
                inner_namespace = namespace_of(&full).to_owned();
                if let Some(target) = aliases.get(&full) {
                    object.insert("name".to_owned(), Value::String(target.clone()));
                    object.remove("namespace");
                }
            }
            for (key, value) in object.iter_mut() {
                if matches!(key.as_str(), "type" | "items" | "values") {
                    rename_writer(value, &inner_namespace, aliases);
                } else if key == "fields"
                    && let Value::Array(fields) = value
                {
                    for field in fields.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(field_type) = field.get_mut("type") {
                            rename_writer(field_type, &inner_namespace, aliases);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// `None` when no reader alias applies (the usual case), so the parsed writer is reused.
fn writer_renamed_to_reader_aliases(writer_json: &Value, reader_json: &Value) -> Option<Schema> {
    let mut aliases = HashMap::new();
    collect_reader_aliases(reader_json, "", &mut aliases);
    if aliases.is_empty() {
        return None;
    }
    let mut renamed = writer_json.clone();
    rename_writer(&mut renamed, "", &aliases);
    if &renamed == writer_json {
        return None;
    }
    Schema::parse(&renamed).ok()
}

#[cfg(test)]
mod tests {
    use super::super::{ParsedSchema, reader_problems as problems};
    use crate::SchemaDefinition;

    fn avro(text: &str) -> ParsedSchema {
        ParsedSchema::parse(&SchemaDefinition::avro(text)).expect("test schema parses")
    }

    #[test]
    fn adding_a_field_without_default_names_the_field() {
        let writer = avro(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#);
        let reader = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#,
        );
        let found = problems(&writer, &reader);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "$.b");
        assert!(found[0].reason.contains("no default"), "{found:?}");
        assert!(problems(&reader, &writer).is_empty());
    }

    #[test]
    fn nested_type_change_names_the_path() {
        let writer = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"n","type":"string"}]}}]}"#,
        );
        let reader = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"n","type":"int"}]}}]}"#,
        );
        let found = problems(&writer, &reader);
        assert_eq!(found[0].path, "$.inner.n");
        assert!(
            found[0].reason.contains("string") && found[0].reason.contains("int"),
            "{found:?}"
        );
    }

    #[test]
    fn promotion_is_compatible_one_way() {
        let int = avro(r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#);
        let long = avro(r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#);
        assert!(problems(&int, &long).is_empty());
        assert_eq!(problems(&long, &int)[0].path, "$.n");
    }

    #[test]
    fn partial_enum_is_incompatible_and_names_the_symbol() {
        let writer = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}]}"#,
        );
        let reader = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}"#,
        );
        let found = problems(&writer, &reader);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "$.e");
        assert!(found[0].reason.contains('B'), "{found:?}");
    }

    #[test]
    fn partial_union_is_incompatible() {
        let writer = avro(r#"["null","int","string"]"#);
        let reader = avro(r#"["null","int"]"#);
        let found = problems(&writer, &reader);
        assert!(found[0].reason.contains("string"), "{found:?}");
    }

    #[test]
    fn reader_record_alias_matches_the_old_name() {
        let writer = avro(
            r#"{"type":"record","name":"Old","namespace":"n","fields":[{"name":"a","type":"int"}]}"#,
        );
        let reader = avro(
            r#"{"type":"record","name":"New","namespace":"n","aliases":["Old"],"fields":[{"name":"a","type":"int"}]}"#,
        );
        assert!(problems(&writer, &reader).is_empty());
        // Without the alias, the rename is a break.
        let unaliased = avro(
            r#"{"type":"record","name":"New","namespace":"n","fields":[{"name":"a","type":"int"}]}"#,
        );
        assert!(
            problems(&writer, &unaliased)[0]
                .reason
                .contains("without an alias")
        );
    }

    #[test]
    fn nested_alias_and_its_references_are_followed() {
        let writer = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"x","type":{"type":"enum","name":"Color","symbols":["RED"]}},{"name":"y","type":"Color"}]}"#,
        );
        let reader = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"x","type":{"type":"enum","name":"Colour","aliases":["Color"],"symbols":["RED","BLUE"]}},{"name":"y","type":"Colour"}]}"#,
        );
        assert!(
            problems(&writer, &reader).is_empty(),
            "{:?}",
            problems(&writer, &reader)
        );
    }
}
