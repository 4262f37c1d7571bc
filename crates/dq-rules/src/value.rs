//! One read-only view over decoded records, so JSON and Avro values are checked in place without
//! converting one into the other.

use apache_avro::types::Value as AvroValue;
use serde_json::Value as JsonValue;

/// The part of a value a rule looks at. Borrowed, so building it never allocates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    /// Microseconds since the Unix epoch, UTC (Avro timestamp logical types).
    Timestamp(i64),
    Array(usize),
    Object,
    /// A value no rule kind understands (Avro decimal, duration, uuid, ...), named for messages.
    Other(&'static str),
}

impl Scalar<'_> {
    /// The type name used in violation messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Int(_) => "integer",
            Scalar::Float(_) => "number",
            Scalar::Str(_) => "string",
            Scalar::Bytes(_) => "bytes",
            Scalar::Timestamp(_) => "timestamp",
            Scalar::Array(_) => "array",
            Scalar::Object => "object",
            Scalar::Other(name) => name,
        }
    }
}

/// A decoded record (or a part of one) that rules can be evaluated on.
pub trait RecordView {
    /// What this value is, with unions already looked through.
    fn scalar(&self) -> Scalar<'_>;
    /// A field of an object, record or map.
    fn field(&self, name: &str) -> Option<&Self>;
    /// An element of an array.
    fn element(&self, index: usize) -> Option<&Self>;
    /// Calls `visit` with the fields of an object, record or map, in any order, until it returns
    /// `false`; returns `false`, without calling `visit`, when this is not one. If a name comes
    /// more than once (duplicate JSON keys), the first time it comes must carry the value
    /// [`RecordView::field`] returns. The evaluator resolves all the fields a rule set reads in
    /// one pass over the object this way, instead of one hashed lookup per rule; the default says
    /// "not supported" and makes it use [`RecordView::field`].
    fn for_each_field<'a, F>(&'a self, visit: F) -> bool
    where
        F: FnMut(&'a str, &'a Self) -> bool,
        Self: Sized,
    {
        let _ = visit;
        false
    }
    /// An owned JSON copy, used for Rego input and for rendering observed objects and arrays.
    fn to_json(&self) -> JsonValue;
}

impl RecordView for JsonValue {
    fn scalar(&self) -> Scalar<'_> {
        match self {
            JsonValue::Null => Scalar::Null,
            JsonValue::Bool(b) => Scalar::Bool(*b),
            JsonValue::Number(n) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                // u64 above i64::MAX and all non-integers.
                None => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            JsonValue::String(s) => Scalar::Str(s),
            JsonValue::Array(items) => Scalar::Array(items.len()),
            JsonValue::Object(_) => Scalar::Object,
        }
    }

    fn field(&self, name: &str) -> Option<&Self> {
        match self {
            JsonValue::Object(map) => map.get(name),
            _ => None,
        }
    }

    fn element(&self, index: usize) -> Option<&Self> {
        match self {
            JsonValue::Array(items) => items.get(index),
            _ => None,
        }
    }

    #[inline]
    fn for_each_field<'a, F>(&'a self, mut visit: F) -> bool
    where
        F: FnMut(&'a str, &'a Self) -> bool,
    {
        match self {
            // Keys of a serde_json map are unique.
            JsonValue::Object(map) => {
                for (name, value) in map {
                    if !visit(name, value) {
                        break;
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn to_json(&self) -> JsonValue {
        self.clone()
    }
}

/// Avro unions are transparent: a `["null", "string"]` field is checked as its branch.
fn through_unions(mut value: &AvroValue) -> &AvroValue {
    while let AvroValue::Union(_, inner) = value {
        value = inner;
    }
    value
}

impl RecordView for AvroValue {
    fn scalar(&self) -> Scalar<'_> {
        match through_unions(self) {
            AvroValue::Null => Scalar::Null,
            AvroValue::Boolean(b) => Scalar::Bool(*b),
            AvroValue::Int(i) | AvroValue::Date(i) | AvroValue::TimeMillis(i) => {
                Scalar::Int(i64::from(*i))
            }
            AvroValue::Long(i) | AvroValue::TimeMicros(i) => Scalar::Int(*i),
            AvroValue::Float(f) => Scalar::Float(f64::from(*f)),
            AvroValue::Double(f) => Scalar::Float(*f),
            AvroValue::Bytes(b) | AvroValue::Fixed(_, b) => Scalar::Bytes(b),
            AvroValue::String(s) | AvroValue::Enum(_, s) => Scalar::Str(s),
            AvroValue::TimestampMillis(ms) | AvroValue::LocalTimestampMillis(ms) => {
                Scalar::Timestamp(ms.saturating_mul(1000))
            }
            AvroValue::TimestampMicros(us) | AvroValue::LocalTimestampMicros(us) => {
                Scalar::Timestamp(*us)
            }
            AvroValue::TimestampNanos(ns) | AvroValue::LocalTimestampNanos(ns) => {
                Scalar::Timestamp(ns.div_euclid(1000))
            }
            AvroValue::Array(items) => Scalar::Array(items.len()),
            AvroValue::Map(_) | AvroValue::Record(_) => Scalar::Object,
            AvroValue::Decimal(_) | AvroValue::BigDecimal(_) => Scalar::Other("decimal"),
            AvroValue::Duration(_) => Scalar::Other("duration"),
            AvroValue::Uuid(_) => Scalar::Other("uuid"),
            AvroValue::Union(..) => Scalar::Other("union"),
        }
    }

    fn field(&self, name: &str) -> Option<&Self> {
        match through_unions(self) {
            AvroValue::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            AvroValue::Map(map) => map.get(name),
            _ => None,
        }
    }

    fn element(&self, index: usize) -> Option<&Self> {
        match through_unions(self) {
            AvroValue::Array(items) => items.get(index),
            _ => None,
        }
    }

    #[inline]
    fn for_each_field<'a, F>(&'a self, mut visit: F) -> bool
    where
        F: FnMut(&'a str, &'a Self) -> bool,
    {
        match through_unions(self) {
            // In order, so a repeated record field name first comes with the value `field` finds.
            AvroValue::Record(fields) => {
                for (name, value) in fields {
                    if !visit(name, value) {
                        break;
                    }
                }
                true
            }
            AvroValue::Map(map) => {
                for (name, value) in map {
                    if !visit(name, value) {
                        break;
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn to_json(&self) -> JsonValue {
        match through_unions(self) {
            AvroValue::Record(fields) => JsonValue::Object(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value.to_json()))
                    .collect(),
            ),
            AvroValue::Map(map) => {
                // HashMap order is random; sort so Rego input and messages are deterministic.
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                JsonValue::Object(
                    entries
                        .into_iter()
                        .map(|(name, value)| (name.clone(), value.to_json()))
                        .collect(),
                )
            }
            AvroValue::Array(items) => {
                JsonValue::Array(items.iter().map(|v| v.to_json()).collect())
            }
            AvroValue::Uuid(id) => JsonValue::String(id.to_string()),
            other => match other.scalar() {
                Scalar::Null => JsonValue::Null,
                Scalar::Bool(b) => JsonValue::Bool(b),
                Scalar::Int(i) | Scalar::Timestamp(i) => JsonValue::from(i),
                Scalar::Float(f) => {
                    serde_json::Number::from_f64(f).map_or(JsonValue::Null, JsonValue::Number)
                }
                Scalar::Str(s) => JsonValue::String(s.to_owned()),
                Scalar::Bytes(b) => JsonValue::String(hex::encode(b)),
                Scalar::Array(_) | Scalar::Object | Scalar::Other(_) => {
                    JsonValue::String(format!("<{}>", other.scalar().type_name()))
                }
            },
        }
    }
}

/// Longest rendering of an observed value kept in a violation, in characters.
pub const OBSERVED_MAX_CHARS: usize = 64;

/// Renders an observed value for a violation: JSON-like, cut at [`OBSERVED_MAX_CHARS`] characters.
pub(crate) fn render_observed<V: RecordView + ?Sized>(value: &V) -> String {
    let full = match value.scalar() {
        Scalar::Null => "null".to_owned(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) if f.is_nan() => "NaN".to_owned(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => JsonValue::String(s.to_owned()).to_string(),
        Scalar::Bytes(b) => format!("0x{}", hex::encode(b)),
        Scalar::Timestamp(us) => chrono::DateTime::from_timestamp_micros(us)
            .map_or_else(|| us.to_string(), |t| t.to_rfc3339()),
        Scalar::Array(_) | Scalar::Object | Scalar::Other(_) => value.to_json().to_string(),
    };
    truncate_chars(full, OBSERVED_MAX_CHARS)
}

fn truncate_chars(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn avro_unions_and_records_read_like_json() {
        let avro = AvroValue::Record(vec![
            (
                "name".into(),
                AvroValue::Union(1, Box::new(AvroValue::String("ana".into()))),
            ),
            ("at".into(), AvroValue::TimestampMillis(1_000)),
            ("kind".into(), AvroValue::Enum(0, "RETAIL".into())),
        ]);
        assert_eq!(
            avro.field("name").map(|v| v.scalar()),
            Some(Scalar::Str("ana"))
        );
        assert_eq!(
            avro.field("at").map(|v| v.scalar()),
            Some(Scalar::Timestamp(1_000_000))
        );
        assert_eq!(
            avro.field("kind").map(|v| v.scalar()),
            Some(Scalar::Str("RETAIL"))
        );
        assert_eq!(
            avro.to_json(),
            json!({"name": "ana", "at": 1_000_000, "kind": "RETAIL"})
        );
    }

    #[test]
    fn observed_values_are_truncated_on_a_char_boundary() {
        let long = JsonValue::String("é".repeat(100));
        let rendered = render_observed(&long);
        assert_eq!(rendered.chars().count(), OBSERVED_MAX_CHARS + 1);
        assert!(rendered.ends_with('…'));
    }

    #[test]
    fn large_unsigned_json_numbers_are_floats() {
        assert!(matches!(json!(u64::MAX).scalar(), Scalar::Float(_)));
    }
}
