//! Schemas for Summit Ingest: a client for Confluent-compatible schema registries (with caching
//! by id and by subject/version), codecs for registry-framed Avro and JSON values, and the
//! compatibility engine that both the CI gate (`summitctl schema check`) and the project's own
//! registry server use, so a change is judged the same way everywhere.

mod client;
mod codec;
pub mod compat;
mod error;
mod fields;
mod guard;
mod types;
pub mod wire;

pub use client::{CompatibilityAnswer, RegistryClient, SubjectVersion};
pub use codec::{CompiledSchema, DecodedPayload, DecodedValue, Decoder, encode_avro, encode_json};
pub use error::{Disposition, SchemaError};
pub use fields::{FieldSummary, avro_fields, json_fields};
pub use guard::ensure_registry_compatible;
pub use types::{CompatibilityLevel, SchemaDefinition, SchemaType};

pub type Result<T> = std::result::Result<T, SchemaError>;
