//! The compatibility engine: can a reader schema read every datum a writer schema allows, and
//! what a compatibility level demands of a new version against the earlier ones.

mod avro;
mod json;

use std::fmt;

use crate::{CompatibilityLevel, Result, SchemaDefinition, SchemaError, SchemaType};

/// One reason a reader cannot read a writer's data, at a field path (`$` is the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub path: String,
    pub reason: String,
}

impl Incompatibility {
    pub(crate) fn new(path: &str, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at `{}`: {}", self.path, self.reason)
    }
}

/// A schema parsed once so it can be compared many times.
#[derive(Debug, Clone)]
pub enum ParsedSchema {
    Avro {
        schema: apache_avro::Schema,
        json: serde_json::Value,
    },
    Json(serde_json::Value),
}

impl ParsedSchema {
    pub fn parse(definition: &SchemaDefinition) -> Result<Self> {
        let invalid = |reason: String| SchemaError::InvalidSchema {
            schema_type: definition.schema_type,
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(&definition.schema).map_err(|e| invalid(e.to_string()))?;
        match definition.schema_type {
            SchemaType::Avro => {
                let schema =
                    apache_avro::Schema::parse(&json).map_err(|e| invalid(e.to_string()))?;
                Ok(Self::Avro { schema, json })
            }
            SchemaType::Json => {
                if !(json.is_object() || json.is_boolean()) {
                    return Err(invalid(
                        "a JSON Schema is an object or a boolean".to_owned(),
                    ));
                }
                jsonschema::validator_for(&json).map_err(|e| invalid(e.to_string()))?;
                Ok(Self::Json(json))
            }
        }
    }

    pub fn schema_type(&self) -> SchemaType {
        match self {
            Self::Avro { .. } => SchemaType::Avro,
            Self::Json(_) => SchemaType::Json,
        }
    }
}

/// What stops `reader` from reading every datum `writer` allows; empty when it can.
pub fn reader_problems(writer: &ParsedSchema, reader: &ParsedSchema) -> Vec<Incompatibility> {
    match (writer, reader) {
        (
            ParsedSchema::Avro {
                schema: writer,
                json: writer_json,
            },
            ParsedSchema::Avro {
                schema: reader,
                json: reader_json,
            },
        ) => avro::reader_problems(writer, writer_json, reader, reader_json),
        (ParsedSchema::Json(writer), ParsedSchema::Json(reader)) => {
            json::reader_problems(writer, reader)
        }
        _ => vec![Incompatibility::new(
            "$",
            format!(
                "schema type changed from {} to {}",
                writer.schema_type(),
                reader.schema_type()
            ),
        )],
    }
}

/// Which way data flows in a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// BACKWARD: the new schema could not read data written with the old one.
    NewReadsOld,
    /// FORWARD: the old schema could not read data written with the new one.
    OldReadsNew,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NewReadsOld => "new schema cannot read data written with the old (backward)",
            Self::OldReadsNew => "old schema cannot read data written with the new (forward)",
        })
    }
}

/// The problems found between the new schema and one earlier version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConflict {
    /// Index into the `previous` slice given to [`check`].
    pub against: usize,
    pub direction: Direction,
    pub problems: Vec<Incompatibility>,
}

/// Checks `new` against `previous` (oldest first) as `level` demands; empty when compatible.
pub fn check(
    level: CompatibilityLevel,
    new: &ParsedSchema,
    previous: &[ParsedSchema],
) -> Vec<VersionConflict> {
    let first = if level.is_transitive() {
        0
    } else {
        previous.len().saturating_sub(1)
    };
    let mut conflicts = Vec::new();
    for (index, old) in previous.iter().enumerate().skip(first) {
        if level.checks_backward() {
            let problems = reader_problems(old, new);
            if !problems.is_empty() {
                conflicts.push(VersionConflict {
                    against: index,
                    direction: Direction::NewReadsOld,
                    problems,
                });
            }
        }
        if level.checks_forward() {
            let problems = reader_problems(new, old);
            if !problems.is_empty() {
                conflicts.push(VersionConflict {
                    against: index,
                    direction: Direction::OldReadsNew,
                    problems,
                });
            }
        }
    }
    conflicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(text: &str) -> ParsedSchema {
        ParsedSchema::parse(&SchemaDefinition::avro(text)).expect("test schema parses")
    }

    fn record(fields: &str) -> ParsedSchema {
        avro(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
    }

    #[test]
    fn levels_pick_direction_and_versions() {
        let v1 = record(r#"{"name":"a","type":"int"}"#);
        // v2 drops `a` and adds `b` with a default: v2 reads v1, v1 cannot read v2 (no `a`).
        let v2 = record(r#"{"name":"b","type":"int","default":0}"#);
        // v3 adds `c` with a default: v2 reads it, v1 does not (v3 data has no `a`).
        let v3 = record(
            r#"{"name":"b","type":"int","default":0},{"name":"c","type":"string","default":""}"#,
        );

        assert!(check(CompatibilityLevel::Backward, &v2, std::slice::from_ref(&v1)).is_empty());
        let forward = check(CompatibilityLevel::Forward, &v2, std::slice::from_ref(&v1));
        assert_eq!(forward.len(), 1);
        assert_eq!(forward[0].direction, Direction::OldReadsNew);
        assert_eq!(forward[0].problems[0].path, "$.a");
        assert_eq!(
            check(CompatibilityLevel::Full, &v2, std::slice::from_ref(&v1)).len(),
            1
        );
        assert!(check(CompatibilityLevel::None, &v2, std::slice::from_ref(&v1)).is_empty());

        // FORWARD compares with the latest only; FORWARD_TRANSITIVE also with v1, which v3 breaks.
        let history = [v1, v2];
        assert!(check(CompatibilityLevel::Forward, &v3, &history).is_empty());
        let transitive = check(CompatibilityLevel::ForwardTransitive, &v3, &history);
        assert_eq!(transitive.len(), 1);
        assert_eq!(transitive[0].against, 0);
    }

    #[test]
    fn changing_schema_type_is_incompatible() {
        let json = ParsedSchema::parse(&SchemaDefinition::json(r#"{"type":"object"}"#))
            .expect("json schema parses");
        let problems = reader_problems(&record(r#"{"name":"a","type":"int"}"#), &json);
        assert!(problems[0].reason.contains("AVRO to JSON"), "{problems:?}");
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(ParsedSchema::parse(&SchemaDefinition::avro(r#"{"type":"recrod"}"#)).is_err());
        assert!(ParsedSchema::parse(&SchemaDefinition::avro("not json")).is_err());
        assert!(
            ParsedSchema::parse(&SchemaDefinition::json(r#"{"type":"no-such-type"}"#)).is_err()
        );
        assert!(ParsedSchema::parse(&SchemaDefinition::json("[1]")).is_err());
    }
}
