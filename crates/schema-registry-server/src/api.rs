//! The HTTP handlers of the registry API subset in `schema-registry-api.md`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use summit_schema::compat::{self, ParsedSchema};
use summit_schema::{CompatibilityLevel, SchemaDefinition, SchemaType};

use crate::error::ApiError;
use crate::store::{self, StoredSchema, StoredVersion};

type ApiResult = Result<Json<Value>, ApiError>;

/// `GET /schemas/ids/{id}` answers by id, the call every consumer makes per unknown id. An id
/// names one schema forever (the `schemas` table is append-only: deletes only hide subject
/// versions), so an answer can be kept for the life of the process without invalidation. It
/// grows with the number of distinct schemas, which a registry keeps small.
#[derive(Debug, Default)]
pub(crate) struct SchemaByIdCache(RwLock<HashMap<i32, Value>>);
type Params = Query<HashMap<String, String>>;

pub(crate) fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/", get(|| async { Json(json!({})) }))
        .route(
            "/schemas/types",
            get(|| async { Json(json!(["AVRO", "JSON"])) }),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_schema))
        .route("/schemas/guids/{guid}", get(schema_by_guid))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(look_up).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_against_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_against_level),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .layer(Extension(Arc::new(SchemaByIdCache::default())))
        .with_state(pool)
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[derive(Debug, Deserialize)]
struct SchemaRequest {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

/// Reads and validates a `{"schema", "schemaType"?}` body.
fn parse_request(body: &Bytes) -> Result<(SchemaDefinition, ParsedSchema), ApiError> {
    let request: SchemaRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::unprocessable(format!("Unrecognized request body: {e}")))?;
    if request.references.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::invalid_schema(
            "Schema references are not supported by this registry",
        ));
    }
    let schema_type: SchemaType = match request.schema_type.as_deref() {
        None => SchemaType::Avro,
        Some(text) => text
            .parse()
            .map_err(|e: summit_schema::SchemaError| ApiError::invalid_schema(e.to_string()))?,
    };
    let definition = SchemaDefinition {
        schema_type,
        schema: request.schema,
    };
    let parsed = ParsedSchema::parse(&definition)
        .map_err(|e| ApiError::invalid_schema(format!("Invalid schema: {e}")))?;
    Ok((definition, parsed))
}

fn schema_body(schema: &StoredSchema) -> Value {
    let mut body = json!({ "schema": schema.definition.schema, "guid": schema.guid });
    // Confluent omits the type for Avro, and older clients expect that.
    if schema.definition.schema_type != SchemaType::Avro {
        body["schemaType"] = json!(schema.definition.schema_type.as_str());
    }
    body
}

fn version_body(subject: &str, version: &StoredVersion) -> Value {
    let mut body = schema_body(&version.schema);
    body["subject"] = json!(subject);
    body["version"] = json!(version.version);
    body["id"] = json!(version.schema.id);
    body
}

fn parse_id(text: &str) -> Result<i32, ApiError> {
    text.parse().map_err(|_| ApiError::schema_not_found(text))
}

async fn schema_by_id(
    State(pool): State<PgPool>,
    Extension(cache): Extension<Arc<SchemaByIdCache>>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    // A poisoned lock only means another request panicked mid-insert: skip the cache then.
    if let Some(body) = cache.0.read().ok().and_then(|c| c.get(&id).cloned()) {
        return Ok(Json(body));
    }
    let schema = store::schema_by_id(&pool, id)
        .await?
        .ok_or_else(|| ApiError::schema_not_found(id))?;
    let body = schema_body(&schema);
    if let Ok(mut cache) = cache.0.write() {
        cache.insert(id, body.clone());
    }
    Ok(Json(body))
}

async fn schema_by_guid(State(pool): State<PgPool>, Path(guid): Path<String>) -> ApiResult {
    let schema = store::schema_by_guid(&pool, &guid)
        .await?
        .ok_or_else(|| ApiError::schema_not_found(&guid))?;
    let mut body = schema_body(&schema);
    body["id"] = json!(schema.id);
    Ok(Json(body))
}

async fn versions_of_schema(State(pool): State<PgPool>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    if store::schema_by_id(&pool, id).await?.is_none() {
        return Err(ApiError::schema_not_found(id));
    }
    let pairs = store::versions_of_schema(&pool, id).await?;
    Ok(Json(json!(
        pairs
            .into_iter()
            .map(|(subject, version)| json!({"subject": subject, "version": version}))
            .collect::<Vec<_>>()
    )))
}

async fn list_subjects(State(pool): State<PgPool>, Query(params): Params) -> ApiResult {
    Ok(Json(json!(
        store::subjects(&pool, flag(&params, "deleted")).await?
    )))
}

/// The subject's versions, visible ones only unless `include_deleted`; 40401 when none.
async fn visible_versions(
    pool: &PgPool,
    subject: &str,
    include_deleted: bool,
) -> Result<Vec<StoredVersion>, ApiError> {
    let mut conn = pool.acquire().await?;
    let versions: Vec<StoredVersion> = store::versions(&mut conn, subject)
        .await?
        .into_iter()
        .filter(|v| include_deleted || !v.deleted)
        .collect();
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(subject));
    }
    Ok(versions)
}

async fn list_versions(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let versions = visible_versions(&pool, &subject, flag(&params, "deleted")).await?;
    Ok(Json(json!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>()
    )))
}

/// `latest` / `-1` → `None`; a positive number → `Some(n)`; anything else is 42202.
fn parse_version(text: &str) -> Result<Option<i32>, ApiError> {
    if text == "latest" || text == "-1" {
        return Ok(None);
    }
    match text.parse::<i32>() {
        Ok(number) if number > 0 => Ok(Some(number)),
        _ => Err(ApiError::invalid_version(text)),
    }
}

fn pick_version<'v>(
    versions: &'v [StoredVersion],
    subject: &str,
    text: &str,
) -> Result<&'v StoredVersion, ApiError> {
    let found = match parse_version(text)? {
        None => versions.last(),
        Some(number) => versions.iter().find(|v| v.version == number),
    };
    found.ok_or_else(|| ApiError::version_not_found(subject, text))
}

async fn get_version(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    parse_version(&version)?;
    let versions = visible_versions(&pool, &subject, flag(&params, "deleted")).await?;
    Ok(Json(version_body(
        &subject,
        pick_version(&versions, &subject, &version)?,
    )))
}

async fn look_up(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let versions = visible_versions(&pool, &subject, flag(&params, "deleted")).await?;
    let (definition, _) = parse_request(&body)?;
    let (fingerprint, _) = store::fingerprint(&definition);
    versions
        .iter()
        .rev()
        .find(|v| store::fingerprint(&v.schema.definition).0 == fingerprint)
        .map(|v| Json(version_body(&subject, v)))
        .ok_or_else(|| ApiError::schema_not_found("for this subject"))
}

fn describe_conflicts(
    conflicts: &[compat::VersionConflict],
    versions: &[&StoredVersion],
) -> Vec<String> {
    conflicts
        .iter()
        .flat_map(|conflict| {
            let against = versions.get(conflict.against).map_or(0, |v| v.version);
            conflict
                .problems
                .iter()
                .map(move |p| format!("version {against}: {}: {p}", conflict.direction))
        })
        .collect()
}

/// Compares `new` with `against` as `level` demands; returns the readable problems.
fn conflicts_with(
    level: CompatibilityLevel,
    new: &ParsedSchema,
    against: &[&StoredVersion],
) -> Result<Vec<String>, ApiError> {
    let previous = against
        .iter()
        .map(|v| ParsedSchema::parse(&v.schema.definition))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::invalid_schema(format!("a stored version no longer parses: {e}")))?;
    Ok(describe_conflicts(
        &compat::check(level, new, &previous),
        against,
    ))
}

async fn register(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let (definition, parsed) = parse_request(&body)?;
    let (fingerprint, _) = store::fingerprint(&definition);
    let level = store::effective_level(&pool, &subject).await?;
    let mut tx = pool.begin().await?;
    store::lock_subject(&mut tx, &subject).await?;
    let versions = store::versions(&mut tx, &subject).await?;
    let live: Vec<&StoredVersion> = versions.iter().filter(|v| !v.deleted).collect();
    if let Some(existing) = live
        .iter()
        .find(|v| store::fingerprint(&v.schema.definition).0 == fingerprint)
    {
        return Ok(Json(json!({ "id": existing.schema.id })));
    }
    let problems = conflicts_with(level, &parsed, &live)?;
    if !problems.is_empty() {
        return Err(ApiError::incompatible(format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{subject}\" under {level}: {}",
            problems.join("; ")
        )));
    }
    let id = store::intern_schema(&mut tx, &definition).await?;
    let next = versions.last().map_or(1, |v| v.version + 1);
    store::insert_version(&mut tx, &subject, next, id).await?;
    tx.commit().await?;
    tracing::info!(%subject, version = next, id, "registered");
    Ok(Json(json!({ "id": id })))
}

fn compatibility_answer(problems: Vec<String>, params: &HashMap<String, String>) -> Json<Value> {
    let mut answer = json!({ "is_compatible": problems.is_empty() });
    if flag(params, "verbose") {
        answer["messages"] = json!(problems);
    }
    Json(answer)
}

async fn check_against_version(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let requested = parse_version(&version)?;
    let (_, parsed) = parse_request(&body)?;
    let versions = match visible_versions(&pool, &subject, false).await {
        Ok(versions) => versions,
        // Nothing to be incompatible with yet.
        Err(error) if error.error_code == 40401 && requested.is_none() => {
            return Ok(compatibility_answer(Vec::new(), &params));
        }
        Err(error) => return Err(error),
    };
    let against = pick_version(&versions, &subject, &version)?;
    let level = store::effective_level(&pool, &subject).await?;
    let problems = conflicts_with(level, &parsed, &[against])?;
    Ok(compatibility_answer(problems, &params))
}

async fn check_against_level(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let (_, parsed) = parse_request(&body)?;
    let versions = match visible_versions(&pool, &subject, false).await {
        Ok(versions) => versions,
        Err(error) if error.error_code == 40401 => {
            return Ok(compatibility_answer(Vec::new(), &params));
        }
        Err(error) => return Err(error),
    };
    let level = store::effective_level(&pool, &subject).await?;
    let live: Vec<&StoredVersion> = versions.iter().collect();
    let problems = conflicts_with(level, &parsed, &live)?;
    Ok(compatibility_answer(problems, &params))
}

async fn delete_subject(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let permanent = flag(&params, "permanent");
    let mut tx = pool.begin().await?;
    store::lock_subject(&mut tx, &subject).await?;
    let versions = store::versions(&mut tx, &subject).await?;
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    let live: Vec<i32> = versions
        .iter()
        .filter(|v| !v.deleted)
        .map(|v| v.version)
        .collect();
    let deleted = if permanent {
        if !live.is_empty() {
            return Err(ApiError::subject_not_soft_deleted(&subject));
        }
        store::remove(&mut tx, &subject, None).await?;
        versions.iter().map(|v| v.version).collect()
    } else {
        if live.is_empty() {
            return Err(ApiError::subject_soft_deleted(&subject));
        }
        store::mark_deleted(&mut tx, &subject, None).await?;
        live
    };
    tx.commit().await?;
    Ok(Json(json!(deleted)))
}

async fn delete_version(
    State(pool): State<PgPool>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let requested = parse_version(&version)?;
    let permanent = flag(&params, "permanent");
    let mut tx = pool.begin().await?;
    store::lock_subject(&mut tx, &subject).await?;
    let versions = store::versions(&mut tx, &subject).await?;
    if versions.iter().all(|v| v.deleted) && !permanent {
        return Err(ApiError::subject_not_found(&subject));
    }
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    let target = match requested {
        None => versions.iter().rev().find(|v| !v.deleted),
        Some(number) => versions.iter().find(|v| v.version == number),
    }
    .ok_or_else(|| ApiError::version_not_found(&subject, &version))?;
    match (permanent, target.deleted) {
        (false, true) => return Err(ApiError::version_soft_deleted(&subject, target.version)),
        (true, false) => return Err(ApiError::version_not_soft_deleted(&subject, target.version)),
        (false, false) => store::mark_deleted(&mut tx, &subject, Some(target.version)).await?,
        (true, true) => store::remove(&mut tx, &subject, Some(target.version)).await?,
    }
    tx.commit().await?;
    Ok(Json(json!(target.version)))
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

fn parse_config(body: &Bytes) -> Result<CompatibilityLevel, ApiError> {
    let request: ConfigRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::unprocessable(format!("Unrecognized request body: {e}")))?;
    request
        .compatibility
        .parse()
        .map_err(|_| ApiError::invalid_level(&request.compatibility))
}

async fn get_global_config(State(pool): State<PgPool>) -> ApiResult {
    let level = store::level(&pool, None).await?.unwrap_or_default();
    Ok(Json(json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_global_config(State(pool): State<PgPool>, body: Bytes) -> ApiResult {
    let level = parse_config(&body)?;
    store::set_level(&pool, None, level).await?;
    Ok(Json(json!({ "compatibility": level.as_str() })))
}

async fn get_subject_config(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let level = match store::level(&pool, Some(&subject)).await? {
        Some(level) => level,
        None if flag(&params, "defaultToGlobal") => {
            store::level(&pool, None).await?.unwrap_or_default()
        }
        None => return Err(ApiError::subject_level_not_configured(&subject)),
    };
    Ok(Json(json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_subject_config(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = parse_config(&body)?;
    store::set_level(&pool, Some(&subject), level).await?;
    Ok(Json(json!({ "compatibility": level.as_str() })))
}

async fn delete_subject_config(
    State(pool): State<PgPool>,
    Path(subject): Path<String>,
) -> ApiResult {
    let previous = store::delete_level(&pool, &subject)
        .await?
        .ok_or_else(|| ApiError::subject_level_not_configured(&subject))?;
    Ok(Json(json!({ "compatibilityLevel": previous.as_str() })))
}
