//! Reference sets: values loaded from a file, a Postgres query or the rule set itself, held as
//! immutable versioned snapshots that a refresh swaps in atomically.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashSet;
use serde_json::Value as JsonValue;
use sha2::{Digest, Sha256};

use crate::ruleset::ReferenceSpec;

/// One loaded version of a reference set.
#[derive(Debug)]
pub struct ReferenceSnapshot {
    pub name: String,
    /// 16 hex digits of the SHA-256 over the sorted, distinct values.
    pub content_hash: String,
    pub loaded_at: DateTime<Utc>,
    strings: FxHashSet<Box<str>>,
    // Integer-looking values are also kept as integers, so an integer field is looked up without
    // formatting it.
    integers: FxHashSet<i64>,
}

impl ReferenceSnapshot {
    /// Builds a snapshot from values; numbers and strings are both compared by their text.
    pub fn from_values<I, S>(name: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut strings = FxHashSet::default();
        let mut integers = FxHashSet::default();
        for value in values {
            let value: String = value.into();
            if let Ok(i) = value.parse::<i64>() {
                integers.insert(i);
            }
            strings.insert(value.into_boxed_str());
        }
        let mut sorted: Vec<&str> = strings.iter().map(|s| &**s).collect();
        sorted.sort_unstable();
        let mut hasher = Sha256::new();
        for value in sorted {
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        }
        Self {
            name: name.to_owned(),
            content_hash: hex::encode(&hasher.finalize()[..8]),
            loaded_at: Utc::now(),
            strings,
            integers,
        }
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    pub fn contains_str(&self, value: &str) -> bool {
        self.strings.contains(value)
    }

    pub fn contains_integer(&self, value: i64) -> bool {
        self.integers.contains(&value)
    }
}

/// All reference sets of a rule set at one moment. Evaluation takes one of these for a whole
/// record, so a refresh half-way through a record cannot mix versions.
#[derive(Debug)]
pub struct ReferenceData {
    /// In the order of the rule set's `references` (sorted by name).
    pub(crate) sets: Vec<Arc<ReferenceSnapshot>>,
    /// `name:hash` of every set joined by `,`: what "same reference snapshot" means.
    pub version: Arc<str>,
}

impl ReferenceData {
    pub(crate) fn new(sets: Vec<Arc<ReferenceSnapshot>>) -> Self {
        let version = sets
            .iter()
            .map(|s| format!("{}:{}", s.name, s.content_hash))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            sets,
            version: version.into(),
        }
    }

    pub fn snapshots(&self) -> &[Arc<ReferenceSnapshot>] {
        &self.sets
    }
}

/// Why a reference source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference set `{set}`: cannot read {path}: {message}")]
    File {
        set: String,
        path: String,
        message: String,
    },
    #[error("reference set `{set}`: Postgres query failed: {message}")]
    Postgres { set: String, message: String },
    #[error("reference set `{set}`: {message}")]
    Unsupported { set: String, message: String },
    #[error("no reference set named `{0}`")]
    UnknownSet(String),
}

/// Loads one reference set from its source.
pub async fn load_reference(
    name: &str,
    spec: &ReferenceSpec,
    base_dir: &Path,
) -> Result<ReferenceSnapshot, ReferenceError> {
    if let Some(values) = &spec.values {
        return Ok(ReferenceSnapshot::from_values(
            name,
            values.iter().map(json_text),
        ));
    }
    if let Some(file) = &spec.file {
        let path = base_dir.join(file);
        let file_error = |message: String| ReferenceError::File {
            set: name.to_owned(),
            path: path.display().to_string(),
            message,
        };
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| file_error(e.to_string()))?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let values: Vec<JsonValue> = serde_json::from_str(&text)
                .map_err(|e| file_error(format!("expected a JSON array of values: {e}")))?;
            return Ok(ReferenceSnapshot::from_values(
                name,
                values.iter().map(json_text),
            ));
        }
        return Ok(ReferenceSnapshot::from_values(
            name,
            text.lines().map(str::trim).filter(|l| !l.is_empty()),
        ));
    }
    if let Some(source) = &spec.postgres {
        return load_postgres(name, &expand_env(&source.url), &source.query).await;
    }
    Err(ReferenceError::Unsupported {
        set: name.to_owned(),
        message: "no source given".into(),
    })
}

#[cfg(feature = "postgres")]
async fn load_postgres(
    name: &str,
    url: &str,
    query: &str,
) -> Result<ReferenceSnapshot, ReferenceError> {
    use sqlx::Connection;
    let postgres_error = |e: sqlx::Error| ReferenceError::Postgres {
        set: name.to_owned(),
        message: e.to_string(),
    };
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .map_err(postgres_error)?;
    // The query is the operator's own configuration, not user input.
    let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_all(&mut connection)
        .await
        .map_err(postgres_error)?;
    let _ = connection.close().await;
    Ok(ReferenceSnapshot::from_values(
        name,
        values.into_iter().flatten(),
    ))
}

#[cfg(not(feature = "postgres"))]
async fn load_postgres(
    name: &str,
    _url: &str,
    _query: &str,
) -> Result<ReferenceSnapshot, ReferenceError> {
    Err(ReferenceError::Unsupported {
        set: name.to_owned(),
        message: "built without the `postgres` feature".into(),
    })
}

/// The text a JSON scalar is compared by: strings without quotes, numbers as written.
fn json_text(value: &JsonValue) -> String {
    match value {
        JsonValue::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces `${NAME}` with the environment variable NAME (empty when unset), so rule set files
/// need not hold passwords.
fn expand_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(&std::env::var(name).unwrap_or_default());
                rest = &rest[start + 2 + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_ignores_order_and_duplicates() {
        let a = ReferenceSnapshot::from_values("s", ["b", "a", "a"]);
        let b = ReferenceSnapshot::from_values("s", ["a", "b"]);
        let c = ReferenceSnapshot::from_values("s", ["a", "c"]);
        assert_eq!(a.content_hash, b.content_hash);
        assert_ne!(a.content_hash, c.content_hash);
        assert!(a.contains_str("a") && !a.contains_str("c"));
    }

    #[test]
    fn integer_values_are_found_as_integers() {
        let set = ReferenceSnapshot::from_values("s", ["42", "x"]);
        assert!(set.contains_integer(42));
        assert!(!set.contains_integer(43));
    }

    #[test]
    fn env_placeholders_expand() {
        // PATH exists in every test environment; an unknown name becomes empty.
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_env("a${PATH}b"), format!("a{path}b"));
        assert_eq!(expand_env("x${SUMMIT_DQ_SURELY_UNSET}y"), "xy");
        assert_eq!(expand_env("tail${open"), "tail${open");
    }
}
