//! A JSON document parsed for evaluation only.
//!
//! Parsing into `serde_json::Value` is most of the cost of parse + evaluate: with the workspace's
//! `preserve_order` feature every object is an IndexMap that hashes each key (SipHash), and every
//! key and string is a new allocation. [`JsonRecord`] is read through the same [`RecordView`] as
//! `Value`, with the same outcomes, but borrows strings from the input (when they hold no
//! escapes) and keeps objects as lists of fields, so parsing allocates once per object or array.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as JsonValue;

use crate::value::{RecordView, Scalar};

/// A parsed JSON value borrowing from its input text. Numbers keep serde_json's distinctions
/// (non-negative integers, negative integers, floats), objects keep their fields in document
/// order; with a repeated key the last one counts, as in `serde_json::Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonRecord<'a> {
    Null,
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<JsonRecord<'a>>),
    Object(Vec<(Cow<'a, str>, JsonRecord<'a>)>),
}

impl<'a> JsonRecord<'a> {
    /// Parses one JSON document (with serde_json, so the same inputs are accepted and rejected,
    /// including its nesting limit).
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// [`JsonRecord::from_slice`] on text.
    #[allow(clippy::should_implement_trait)] // FromStr cannot borrow from its input
    pub fn from_str(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl<'de> Deserialize<'de> for JsonRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = JsonRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(JsonRecord::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(JsonRecord::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(value).map_or(JsonRecord::UInt(value), JsonRecord::Int))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(JsonRecord::Float(value))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(JsonRecord::Str(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(JsonRecord::Str(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(JsonRecord::Str(Cow::Owned(value)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonRecord::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonRecord::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        JsonRecord::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonRecord::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Key(name)) = map.next_key()? {
            fields.push((name, map.next_value()?));
        }
        Ok(JsonRecord::Object(fields))
    }
}

/// An object key, borrowed when it has no escapes (`Cow<str>`'s own impl always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(value)))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl RecordView for JsonRecord<'_> {
    fn scalar(&self) -> Scalar<'_> {
        match self {
            JsonRecord::Null => Scalar::Null,
            JsonRecord::Bool(b) => Scalar::Bool(*b),
            JsonRecord::Int(i) => Scalar::Int(*i),
            // As serde_json's Number::as_f64 does for integers above i64::MAX.
            #[allow(clippy::cast_precision_loss)]
            JsonRecord::UInt(u) => Scalar::Float(*u as f64),
            JsonRecord::Float(f) => Scalar::Float(*f),
            JsonRecord::Str(s) => Scalar::Str(s),
            JsonRecord::Array(items) => Scalar::Array(items.len()),
            JsonRecord::Object(_) => Scalar::Object,
        }
    }

    fn field(&self, name: &str) -> Option<&Self> {
        match self {
            // The last of repeated keys, as serde_json keeps.
            JsonRecord::Object(fields) => {
                fields.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    fn element(&self, index: usize) -> Option<&Self> {
        match self {
            JsonRecord::Array(items) => items.get(index),
            _ => None,
        }
    }

    #[inline]
    fn for_each_field<'s, F>(&'s self, mut visit: F) -> bool
    where
        F: FnMut(&'s str, &'s Self) -> bool,
    {
        match self {
            // Backwards, so a repeated key first comes with its last value, the one `field` finds.
            JsonRecord::Object(fields) => {
                for (name, value) in fields.iter().rev() {
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
        match self {
            JsonRecord::Null => JsonValue::Null,
            JsonRecord::Bool(b) => JsonValue::Bool(*b),
            JsonRecord::Int(i) => JsonValue::from(*i),
            JsonRecord::UInt(u) => JsonValue::from(*u),
            JsonRecord::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(JsonValue::Null, JsonValue::Number)
            }
            JsonRecord::Str(s) => JsonValue::String(s.to_string()),
            JsonRecord::Array(items) => {
                JsonValue::Array(items.iter().map(|v| v.to_json()).collect())
            }
            // Inserting in order gives serde_json's result for repeated keys: the first position,
            // the last value.
            JsonRecord::Object(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (name, value) in fields {
                    map.insert(name.to_string(), value.to_json());
                }
                JsonValue::Object(map)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_value() {
        for text in [
            r#"{"a": 1, "b": -2, "c": 18446744073709551615, "d": 1.5e3, "e": "x\"y", "f": [null, true, {}], "a": {"z": "é"}}"#,
            r#"[1, "two", 3.0, -0, 1e400]"#,
            r#""\ud83d\ude00""#,
            "null",
        ] {
            let expected: Result<JsonValue, _> = serde_json::from_str(text);
            let ours = JsonRecord::from_str(text).map(|r| r.to_json());
            assert_eq!(ours.ok(), expected.ok(), "{text}");
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_repeated_keys_keep_the_last() {
        let record = JsonRecord::from_str(r#"{"k": "plain", "e": "a\nb", "k": "last"}"#)
            .expect("valid JSON");
        assert!(matches!(
            record.field("k"),
            Some(JsonRecord::Str(Cow::Borrowed("last")))
        ));
        assert!(matches!(
            record.field("e"),
            Some(JsonRecord::Str(Cow::Owned(_)))
        ));
        let mut first = None;
        record.for_each_field(|name, value| {
            if name == "k" && first.is_none() {
                first = Some(value.clone());
            }
            true
        });
        assert_eq!(first, record.field("k").cloned());
    }

    #[test]
    fn invalid_json_is_an_error() {
        for text in ["{", r#"{"a": }"#, "[1,]", "", &"[".repeat(200)] {
            assert!(JsonRecord::from_str(text).is_err(), "{text}");
        }
    }
}
