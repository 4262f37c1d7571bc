//! Decoding registry-framed values into `apache_avro::types::Value` or `serde_json::Value`
//! (validated against their schema), and encoding them, for tests and the demo producer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::types::Value as AvroValue;
use serde_json::Value as JsonValue;

use crate::wire::{self, SchemaReference};
use crate::{RegistryClient, Result, SchemaDefinition, SchemaError, SchemaType};

/// A schema made ready for decoding: parsed Avro, or a compiled JSON Schema validator.
#[derive(Debug)]
pub enum CompiledSchema {
    Avro(apache_avro::Schema),
    /// The validator and the schema document it was built from (for [`CompiledSchema::fields`]).
    Json {
        validator: jsonschema::Validator,
        schema: JsonValue,
    },
}

impl CompiledSchema {
    pub fn compile(definition: &SchemaDefinition) -> Result<Self> {
        let invalid = |reason: String| SchemaError::InvalidSchema {
            schema_type: definition.schema_type,
            reason,
        };
        match definition.schema_type {
            SchemaType::Avro => apache_avro::Schema::parse_str(&definition.schema)
                .map(Self::Avro)
                .map_err(|e| invalid(e.to_string())),
            SchemaType::Json => {
                let schema: JsonValue =
                    serde_json::from_str(&definition.schema).map_err(|e| invalid(e.to_string()))?;
                jsonschema::validator_for(&schema)
                    .map(|validator| Self::Json { validator, schema })
                    .map_err(|e| invalid(e.to_string()))
            }
        }
    }

    /// Decodes an unframed body; `id` only labels the error.
    pub fn decode_body(&self, id: u32, body: &[u8]) -> Result<DecodedPayload> {
        let mismatch = |reason: String| SchemaError::BodyMismatch { id, reason };
        match self {
            Self::Avro(schema) => {
                let mut rest = body;
                // The replacement (`GenericDatumReader`) borrows the schema, which a cache of owned
                // schemas cannot hold; this wrapper builds the same reader per call.
                #[expect(deprecated)]
                let value = apache_avro::from_avro_datum(schema, &mut rest, None)
                    .map_err(|e| mismatch(e.to_string()))?;
                if !rest.is_empty() {
                    return Err(mismatch(format!(
                        "{} bytes left after the datum",
                        rest.len()
                    )));
                }
                Ok(DecodedPayload::Avro(value))
            }
            Self::Json { validator, .. } => {
                let value: JsonValue =
                    serde_json::from_slice(body).map_err(|e| mismatch(format!("not JSON: {e}")))?;
                if let Err(error) = validator.validate(&value) {
                    return Err(mismatch(format!("at `{}`: {error}", error.instance_path())));
                }
                Ok(DecodedPayload::Json(value))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DecodedPayload {
    Avro(AvroValue),
    Json(JsonValue),
}

/// A decoded value and the schema that decoded it (for the `summit-schema` mesh header).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedValue {
    pub schema: SchemaReference,
    pub payload: DecodedPayload,
}

impl DecodedValue {
    /// The registry id or GUID, as the `summit-schema` header carries it.
    pub fn schema_header(&self) -> String {
        match &self.schema {
            SchemaReference::Id(id) => id.to_string(),
            SchemaReference::Guid(guid) => wire::format_guid(guid),
        }
    }
}

/// Decodes values with schemas fetched once from the registry and kept compiled.
#[derive(Debug)]
pub struct Decoder {
    client: Arc<RegistryClient>,
    compiled: RwLock<HashMap<SchemaReference, Arc<CompiledSchema>>>,
}

impl Decoder {
    pub fn new(client: Arc<RegistryClient>) -> Self {
        Self {
            client,
            compiled: RwLock::default(),
        }
    }

    /// Compiles `definition` into the cache under `id` without asking the registry.
    pub fn preload(&self, id: u32, definition: &SchemaDefinition) -> Result<()> {
        let compiled = Arc::new(CompiledSchema::compile(definition)?);
        if let Ok(mut cache) = self.compiled.write() {
            cache.insert(SchemaReference::Id(id), compiled);
        }
        Ok(())
    }

    async fn compiled(&self, reference: SchemaReference) -> Result<Arc<CompiledSchema>> {
        if let Some(found) = self
            .compiled
            .read()
            .ok()
            .and_then(|cache| cache.get(&reference).cloned())
        {
            return Ok(found);
        }
        let definition = match reference {
            SchemaReference::Id(id) => (*self.client.schema_by_id(id).await?).clone(),
            SchemaReference::Guid(guid) => {
                self.client
                    .schema_by_guid(&wire::format_guid(&guid))
                    .await?
            }
        };
        // A registered schema that does not compile is the record's problem, not the service's:
        // other subjects keep flowing.
        let compiled = Arc::new(CompiledSchema::compile(&definition).map_err(|e| {
            SchemaError::BodyMismatch {
                id: match reference {
                    SchemaReference::Id(id) => id,
                    SchemaReference::Guid(_) => 0,
                },
                reason: format!("registered schema does not compile: {e}"),
            }
        })?);
        if let Ok(mut cache) = self.compiled.write() {
            cache.insert(reference, compiled.clone());
        }
        Ok(compiled)
    }

    /// The compiled schema already cached for a `summit-schema` header value (registry id or
    /// GUID), without asking the registry.
    pub fn cached(&self, schema_header: &str) -> Option<Arc<CompiledSchema>> {
        let cache = self.compiled.read().ok()?;
        match schema_header.parse::<u32>() {
            Ok(id) => cache.get(&SchemaReference::Id(id)).cloned(),
            Err(_) => cache
                .iter()
                .find_map(|(reference, compiled)| match reference {
                    SchemaReference::Guid(guid) if wire::format_guid(guid) == schema_header => {
                        Some(compiled.clone())
                    }
                    _ => None,
                }),
        }
    }

    /// Decodes a Kafka value, using the `__value_schema_id` header when present and the frame
    /// otherwise.
    pub async fn decode(
        &self,
        value: &[u8],
        schema_id_header: Option<&[u8]>,
    ) -> Result<DecodedValue> {
        let (reference, body) = match schema_id_header {
            Some(header) => (wire::parse_schema_id_header(header)?, value),
            None => {
                let (id, body) = wire::unframe(value)?;
                (SchemaReference::Id(id), body)
            }
        };
        let compiled = self.compiled(reference).await?;
        let label = match reference {
            SchemaReference::Id(id) => id,
            SchemaReference::Guid(_) => 0,
        };
        Ok(DecodedValue {
            schema: reference,
            payload: compiled.decode_body(label, body)?,
        })
    }
}

/// Frames an Avro value written with `schema` under `id`.
pub fn encode_avro(id: u32, schema: &apache_avro::Schema, value: AvroValue) -> Result<Vec<u8>> {
    #[expect(deprecated)] // same reason as `from_avro_datum` above
    let body = apache_avro::to_avro_datum(schema, value).map_err(|e| SchemaError::Encode {
        id,
        reason: e.to_string(),
    })?;
    Ok(wire::frame(id, &body))
}

/// Frames a JSON document under `id`.
pub fn encode_json(id: u32, value: &JsonValue) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(value).map_err(|e| SchemaError::Encode {
        id,
        reason: e.to_string(),
    })?;
    Ok(wire::frame(id, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}"#;

    fn offline_decoder() -> Decoder {
        // Nothing listens there: a cache miss must surface as a retriable error.
        let client = RegistryClient::new("http://127.0.0.1:9").expect("static URL");
        Decoder::new(Arc::new(client))
    }

    #[tokio::test]
    async fn avro_round_trip_through_cache() {
        let decoder = offline_decoder();
        decoder
            .preload(7, &SchemaDefinition::avro(ORDER))
            .expect("schema compiles");
        let schema = apache_avro::Schema::parse_str(ORDER).expect("schema parses");
        let value = AvroValue::Record(vec![
            ("id".into(), AvroValue::String("o-1".into())),
            ("qty".into(), AvroValue::Int(3)),
        ]);
        let framed = encode_avro(7, &schema, value.clone()).expect("encodes");
        let decoded = decoder.decode(&framed, None).await.expect("decodes");
        assert_eq!(decoded.payload, DecodedPayload::Avro(value));
        assert_eq!(decoded.schema_header(), "7");

        let mut truncated = framed.clone();
        truncated.truncate(framed.len() - 1);
        let error = decoder
            .decode(&truncated, None)
            .await
            .expect_err("truncated body");
        assert!(error.is_record_level(), "{error}");
        let mut trailing = framed;
        trailing.push(0);
        assert!(
            decoder
                .decode(&trailing, None)
                .await
                .expect_err("trailing byte")
                .is_record_level()
        );
    }

    #[tokio::test]
    async fn json_is_validated_and_header_id_is_used() {
        let decoder = offline_decoder();
        let schema = r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}"#;
        decoder
            .preload(3, &SchemaDefinition::json(schema))
            .expect("schema compiles");
        let good = serde_json::json!({"n": 1});
        let framed = encode_json(3, &good).expect("encodes");
        let decoded = decoder.decode(&framed, None).await.expect("valid");
        assert_eq!(decoded.payload, DecodedPayload::Json(good));
        let bare = br#"{"n": 2}"#;
        let by_header = decoder
            .decode(bare, Some(&[0, 0, 0, 0, 3]))
            .await
            .expect("header id");
        assert_eq!(by_header.schema, SchemaReference::Id(3));
        let error = decoder
            .decode(br#"{"n": "x"}"#, Some(&[0, 0, 0, 3]))
            .await
            .expect_err("invalid");
        assert!(
            matches!(error, SchemaError::BodyMismatch { id: 3, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("/n"), "{error}");
    }

    #[tokio::test]
    async fn unknown_id_with_registry_down_is_retriable() {
        let error = offline_decoder()
            .decode(&wire::frame(99, b"x"), None)
            .await
            .expect_err("no registry");
        assert!(error.is_retriable(), "{error}");
    }
}
