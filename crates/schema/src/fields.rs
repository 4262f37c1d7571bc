//! A schema's fields as names and type names, nested records expanded: what lineage reports
//! as a dataset's schema (OpenLineage `SchemaDatasetFacet`, Marquez dataset fields).

use apache_avro::Schema;
use serde_json::Value as JsonValue;

use crate::CompiledSchema;

/// One field: its name, a type name (`string`, `long`, `null|string`, `array<string>`,
/// `timestamp-millis`, a record or enum's name, ...) and, for records and objects, its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSummary {
    pub name: String,
    pub type_name: String,
    pub fields: Vec<FieldSummary>,
}

impl CompiledSchema {
    /// The top-level fields (empty for a schema that is not a record or an object).
    pub fn fields(&self) -> Vec<FieldSummary> {
        match self {
            Self::Avro(schema) => avro_fields(schema),
            Self::Json { schema, .. } => json_fields(schema),
        }
    }
}

/// Avro nesting this deep is not expanded further (a recursive record refers to itself by
/// name anyway, so this only bounds pathological schemas).
const MAX_DEPTH: usize = 16;

pub fn avro_fields(schema: &Schema) -> Vec<FieldSummary> {
    avro_fields_at(schema, 0)
}

fn avro_fields_at(schema: &Schema, depth: usize) -> Vec<FieldSummary> {
    let Schema::Record(record) = schema else {
        return Vec::new();
    };
    if depth >= MAX_DEPTH {
        return Vec::new();
    }
    record
        .fields
        .iter()
        .map(|field| FieldSummary {
            name: field.name.clone(),
            type_name: avro_type_name(&field.schema),
            fields: avro_fields_at(nested_record(&field.schema), depth + 1),
        })
        .collect()
}

/// The record inside an optional (`["null", record]`) field, else the schema itself.
fn nested_record(schema: &Schema) -> &Schema {
    match schema {
        Schema::Union(union) => union
            .variants()
            .iter()
            .find(|variant| matches!(variant, Schema::Record(_)))
            .unwrap_or(schema),
        _ => schema,
    }
}

fn avro_type_name(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(array) => format!("array<{}>", avro_type_name(&array.items)),
        Schema::Map(map) => format!("map<{}>", avro_type_name(&map.types)),
        Schema::Union(union) => union
            .variants()
            .iter()
            .map(avro_type_name)
            .collect::<Vec<_>>()
            .join("|"),
        Schema::Record(record) => record.name.name().to_owned(),
        Schema::Enum(enumeration) => enumeration.name.name().to_owned(),
        Schema::Fixed(fixed) => fixed.name.name().to_owned(),
        Schema::Ref { name } => name.name().to_owned(),
        Schema::Decimal(_) => "decimal".into(),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid(_) => "uuid".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time-millis".into(),
        Schema::TimeMicros => "time-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Duration(_) => "duration".into(),
    }
}

pub fn json_fields(schema: &JsonValue) -> Vec<FieldSummary> {
    json_fields_at(schema, 0)
}

fn json_fields_at(schema: &JsonValue, depth: usize) -> Vec<FieldSummary> {
    let Some(properties) = schema.get("properties").and_then(JsonValue::as_object) else {
        return Vec::new();
    };
    if depth >= MAX_DEPTH {
        return Vec::new();
    }
    properties
        .iter()
        .map(|(name, property)| FieldSummary {
            name: name.clone(),
            type_name: json_type_name(property),
            fields: json_fields_at(property, depth + 1),
        })
        .collect()
}

fn json_type_name(property: &JsonValue) -> String {
    match property.get("type") {
        Some(JsonValue::String(name)) => match (name.as_str(), property.get("items")) {
            ("array", Some(items)) => format!("array<{}>", json_type_name(items)),
            _ => name.clone(),
        },
        Some(JsonValue::Array(names)) => names
            .iter()
            .filter_map(JsonValue::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ if property.get("enum").is_some() => "enum".into(),
        _ if property.get("$ref").is_some() => "ref".into(),
        _ => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, type_name: &str) -> FieldSummary {
        FieldSummary {
            name: name.into(),
            type_name: type_name.into(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn avro_records_unions_arrays_and_logical_types_are_named() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Order","namespace":"summit.demo","fields":[
              {"name":"order_id","type":"string"},
              {"name":"amount_cents","type":"long"},
              {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR"]}},
              {"name":"created_at","type":{"type":"long","logicalType":"timestamp-millis"}},
              {"name":"channel","type":["null","string"],"default":null},
              {"name":"tags","type":{"type":"array","items":"string"}},
              {"name":"address","type":["null",{"type":"record","name":"Address","fields":[
                {"name":"city","type":"string"}]}],"default":null}]}"#,
        )
        .expect("schema parses");
        let fields = avro_fields(&schema);
        assert_eq!(
            fields[..6],
            [
                field("order_id", "string"),
                field("amount_cents", "long"),
                field("currency", "Currency"),
                field("created_at", "timestamp-millis"),
                field("channel", "null|string"),
                field("tags", "array<string>"),
            ]
        );
        assert_eq!(
            fields[6],
            FieldSummary {
                name: "address".into(),
                type_name: "null|Address".into(),
                fields: vec![field("city", "string")],
            }
        );
        assert!(avro_fields(&Schema::String).is_empty());
    }

    #[test]
    fn json_properties_are_named_and_objects_expanded() {
        let schema: JsonValue = serde_json::from_str(
            r#"{"type":"object","properties":{
              "url":{"type":"string"},
              "ms":{"type":["integer","null"]},
              "ids":{"type":"array","items":{"type":"string"}},
              "kind":{"enum":["a","b"]},
              "geo":{"type":"object","properties":{"lat":{"type":"number"}}}}}"#,
        )
        .expect("JSON");
        let fields = json_fields(&schema);
        let names: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| (f.name.as_str(), f.type_name.as_str()))
            .collect();
        // Document order (serde_json keeps it in this workspace).
        assert_eq!(
            names,
            [
                ("url", "string"),
                ("ms", "integer|null"),
                ("ids", "array<string>"),
                ("kind", "enum"),
                ("geo", "object"),
            ]
        );
        assert_eq!(fields[4].fields, [field("lat", "number")]);
    }
}
