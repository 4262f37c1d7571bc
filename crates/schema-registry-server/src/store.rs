//! SQL over the three tables; every function takes an executor so registration can run its steps
//! in one transaction.

use sha2::Digest;
use sqlx::{PgConnection, PgPool, Row};
use summit_schema::{CompatibilityLevel, SchemaDefinition, SchemaType};

/// A row of `schemas`.
#[derive(Debug, Clone)]
pub(crate) struct StoredSchema {
    pub(crate) id: i32,
    pub(crate) guid: String,
    pub(crate) definition: SchemaDefinition,
}

/// A row of `subject_versions` joined with its schema.
#[derive(Debug, Clone)]
pub(crate) struct StoredVersion {
    pub(crate) version: i32,
    pub(crate) deleted: bool,
    pub(crate) schema: StoredSchema,
}

const GLOBAL: &str = "";

/// Whitespace and key order do not make a schema different.
fn normalized(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::String(k.clone()), normalized(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(normalized).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

/// (fingerprint, guid) of a schema that already parsed as JSON.
pub(crate) fn fingerprint(definition: &SchemaDefinition) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(&definition.schema).unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{}:{}", definition.schema_type, normalized(&json)));
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&digest[..16]);
    (hex::encode(digest), summit_schema::wire::format_guid(&guid))
}

fn schema_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredSchema, sqlx::Error> {
    let schema_type: String = row.try_get("schema_type")?;
    Ok(StoredSchema {
        id: row.try_get("id")?,
        guid: row.try_get("guid")?,
        definition: SchemaDefinition {
            schema_type: schema_type.parse().unwrap_or(SchemaType::Avro),
            schema: row.try_get("schema")?,
        },
    })
}

pub(crate) async fn schema_by_id(
    pool: &PgPool,
    id: i32,
) -> Result<Option<StoredSchema>, sqlx::Error> {
    sqlx::query("SELECT id, guid, schema_type, schema FROM schemas WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(schema_from_row)
        .transpose()
}

pub(crate) async fn schema_by_guid(
    pool: &PgPool,
    guid: &str,
) -> Result<Option<StoredSchema>, sqlx::Error> {
    sqlx::query("SELECT id, guid, schema_type, schema FROM schemas WHERE guid = $1")
        .bind(guid.to_ascii_lowercase())
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(schema_from_row)
        .transpose()
}

pub(crate) async fn versions_of_schema(
    pool: &PgPool,
    id: i32,
) -> Result<Vec<(String, i32)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT subject, version FROM subject_versions WHERE schema_id = $1 AND NOT deleted ORDER BY subject, version",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("subject")?, row.try_get("version")?)))
        .collect()
}

pub(crate) async fn subjects(
    pool: &PgPool,
    include_deleted: bool,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT subject FROM subject_versions WHERE $1 OR NOT deleted ORDER BY subject",
    )
    .bind(include_deleted)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| row.try_get("subject")).collect()
}

/// Every version of a subject, deleted ones included, oldest first.
pub(crate) async fn versions(
    conn: &mut PgConnection,
    subject: &str,
) -> Result<Vec<StoredVersion>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT v.version, v.deleted, s.id, s.guid, s.schema_type, s.schema
           FROM subject_versions v JOIN schemas s ON s.id = v.schema_id
          WHERE v.subject = $1 ORDER BY v.version",
    )
    .bind(subject)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredVersion {
                version: row.try_get("version")?,
                deleted: row.try_get("deleted")?,
                schema: schema_from_row(row)?,
            })
        })
        .collect()
}

/// Serializes registrations and deletions of one subject.
pub(crate) async fn lock_subject(
    conn: &mut PgConnection,
    subject: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(subject)
        .execute(conn)
        .await?;
    Ok(())
}

/// The id of `definition`, inserting it when new.
pub(crate) async fn intern_schema(
    conn: &mut PgConnection,
    definition: &SchemaDefinition,
) -> Result<i32, sqlx::Error> {
    let (fingerprint, guid) = fingerprint(definition);
    sqlx::query(
        "INSERT INTO schemas (schema_type, fingerprint, guid, schema) VALUES ($1, $2, $3, $4)
         ON CONFLICT (fingerprint) DO NOTHING",
    )
    .bind(definition.schema_type.as_str())
    .bind(&fingerprint)
    .bind(&guid)
    .bind(&definition.schema)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT id FROM schemas WHERE fingerprint = $1")
        .bind(&fingerprint)
        .fetch_one(conn)
        .await?
        .try_get("id")
}

pub(crate) async fn insert_version(
    conn: &mut PgConnection,
    subject: &str,
    version: i32,
    schema_id: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO subject_versions (subject, version, schema_id) VALUES ($1, $2, $3)")
        .bind(subject)
        .bind(version)
        .bind(schema_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn mark_deleted(
    conn: &mut PgConnection,
    subject: &str,
    version: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subject_versions SET deleted = TRUE WHERE subject = $1 AND ($2::INTEGER IS NULL OR version = $2)")
        .bind(subject)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn remove(
    conn: &mut PgConnection,
    subject: &str,
    version: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM subject_versions WHERE subject = $1 AND ($2::INTEGER IS NULL OR version = $2)",
    )
    .bind(subject)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn level(
    pool: &PgPool,
    subject: Option<&str>,
) -> Result<Option<CompatibilityLevel>, sqlx::Error> {
    let row = sqlx::query("SELECT level FROM compatibility_config WHERE subject = $1")
        .bind(subject.unwrap_or(GLOBAL))
        .fetch_optional(pool)
        .await?;
    Ok(row
        .map(|row| row.try_get::<String, _>("level"))
        .transpose()?
        .and_then(|text| text.parse().ok()))
}

/// The level a subject is checked under: its own, else the global one, else BACKWARD.
pub(crate) async fn effective_level(
    pool: &PgPool,
    subject: &str,
) -> Result<CompatibilityLevel, sqlx::Error> {
    if let Some(level) = level(pool, Some(subject)).await? {
        return Ok(level);
    }
    Ok(level(pool, None).await?.unwrap_or_default())
}

pub(crate) async fn set_level(
    pool: &PgPool,
    subject: Option<&str>,
    level: CompatibilityLevel,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO compatibility_config (subject, level) VALUES ($1, $2)
         ON CONFLICT (subject) DO UPDATE SET level = EXCLUDED.level",
    )
    .bind(subject.unwrap_or(GLOBAL))
    .bind(level.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn delete_level(
    pool: &PgPool,
    subject: &str,
) -> Result<Option<CompatibilityLevel>, sqlx::Error> {
    let previous = level(pool, Some(subject)).await?;
    sqlx::query("DELETE FROM compatibility_config WHERE subject = $1")
        .bind(subject)
        .execute(pool)
        .await?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_fingerprint() {
        let a = SchemaDefinition::avro(r#"{"type":"record","name":"R","fields":[]}"#);
        let b =
            SchemaDefinition::avro("{ \"fields\": [], \"name\": \"R\",\n \"type\": \"record\" }");
        let c = SchemaDefinition::json(r#"{"type":"record","name":"R","fields":[]}"#);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a).0, fingerprint(&c).0);
    }
}
