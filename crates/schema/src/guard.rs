//! The start-up guard: a service built against a schema refuses to run when the registry's
//! latest version of its subject has moved somewhere the built schema cannot follow.

use crate::compat::{self, ParsedSchema};
use crate::{CompatibilityLevel, RegistryClient, Result, SchemaDefinition, SchemaError};

/// Checks the registry's latest version of `subject` against `built` under `level` (the built
/// schema plays the new version). Returns the latest version's number and id when compatible.
pub async fn ensure_registry_compatible(
    client: &RegistryClient,
    subject: &str,
    built: &SchemaDefinition,
    level: CompatibilityLevel,
) -> Result<(u32, u32)> {
    let local = ParsedSchema::parse(built)?;
    let latest = client.latest(subject).await?;
    let registered = ParsedSchema::parse(&latest.definition)?;
    let conflicts = compat::check(level, &local, std::slice::from_ref(&registered));
    if conflicts.is_empty() {
        return Ok((latest.version, latest.id));
    }
    let details = conflicts
        .iter()
        .flat_map(|c| {
            c.problems
                .iter()
                .map(move |p| format!("{} {p}", c.direction))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(SchemaError::RegistryIncompatible {
        subject: subject.to_owned(),
        registry_version: latest.version,
        registry_id: latest.id,
        level,
        local: describe_local(built),
        details,
    })
}

/// A short name for the local schema: its Avro full name or JSON `title`/`$id`, and a digest.
fn describe_local(built: &SchemaDefinition) -> String {
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(built.schema.as_bytes())[..6]);
    let json: serde_json::Value = serde_json::from_str(&built.schema).unwrap_or_default();
    let name = match (json.get("name"), json.get("namespace")) {
        (Some(name), Some(namespace)) => format!(
            "{}.{}",
            namespace.as_str().unwrap_or_default(),
            name.as_str().unwrap_or_default()
        ),
        (Some(name), None) => name.as_str().unwrap_or_default().to_owned(),
        _ => json
            .get("title")
            .or_else(|| json.get("$id"))
            .and_then(|v| v.as_str())
            .unwrap_or("unnamed")
            .to_owned(),
    };
    format!(
        "local {} schema `{name}` sha256:{digest}",
        built.schema_type
    )
}
