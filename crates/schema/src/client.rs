//! A small client for the Confluent Schema Registry REST API (also spoken by Karapace, Apicurio's
//! ccompat API, Redpanda and `schema-registry-server`). Schemas by id and by subject/version never
//! change once registered, so both are cached for the life of the client; "latest" is not.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{CompatibilityLevel, Result, SchemaDefinition, SchemaError, SchemaType};

/// One version of a subject, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub definition: SchemaDefinition,
}

/// The registry's answer to a compatibility question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibilityAnswer {
    pub is_compatible: bool,
    pub messages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SubjectVersionBody {
    subject: String,
    version: u32,
    id: u32,
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

#[derive(Debug)]
pub struct RegistryClient {
    base_url: String,
    http: reqwest::Client,
    by_id: RwLock<HashMap<u32, Arc<SchemaDefinition>>>,
    by_subject_version: RwLock<HashMap<(String, u32), Arc<SubjectVersion>>>,
}

fn schema_type_of(text: Option<String>) -> Result<SchemaType> {
    text.map_or(Ok(SchemaType::Avro), |t| t.parse())
}

/// Path segments are percent-encoded so subjects like `a/b` or `x y` reach the server intact.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn body_of(definition: &SchemaDefinition) -> Value {
    let mut body = json!({ "schema": definition.schema });
    // Older registries only know Avro and reject an explicit `schemaType` they do not expect.
    if definition.schema_type != SchemaType::Avro {
        body["schemaType"] = json!(definition.schema_type.as_str());
    }
    body
}

impl RegistryClient {
    pub fn new(base_url: &str) -> Result<Self> {
        let invalid = |reason: String| SchemaError::InvalidRegistryUrl {
            url: base_url.to_owned(),
            reason,
        };
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(invalid("expected an http:// or https:// URL".to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            by_id: RwLock::default(),
            by_subject_version: RwLock::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: String,
    ) -> Result<T> {
        let response = request
            .header("Accept", "application/vnd.schemaregistry.v1+json")
            .send()
            .await
            .map_err(|source| SchemaError::RegistryUnreachable {
                url: self.base_url.clone(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| SchemaError::RegistryUnreachable {
                url: self.base_url.clone(),
                source,
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| SchemaError::InvalidResponse {
                request: what,
                reason: e.to_string(),
            });
        }
        let (error_code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error_code, body.message),
            Err(_) => (
                i64::from(status.as_u16()),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
        };
        Err(SchemaError::Registry {
            request: what,
            status: status.as_u16(),
            error_code,
            message,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The schema registered under `id`; an unknown id is a record-level error.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<SchemaDefinition>> {
        if let Some(found) = self
            .by_id
            .read()
            .ok()
            .and_then(|cache| cache.get(&id).cloned())
        {
            return Ok(found);
        }
        let body: SchemaBody = self
            .send(
                self.http.get(self.url(&format!("/schemas/ids/{id}"))),
                format!("GET schema id {id}"),
            )
            .await
            .map_err(|e| match e {
                SchemaError::Registry {
                    error_code: 40403, ..
                } => SchemaError::UnknownSchemaId { id },
                other => other,
            })?;
        let definition = Arc::new(SchemaDefinition {
            schema_type: schema_type_of(body.schema_type)?,
            schema: body.schema,
        });
        if let Ok(mut cache) = self.by_id.write() {
            cache.insert(id, definition.clone());
        }
        Ok(definition)
    }

    /// The schema registered under a Confluent GUID (the `__value_schema_id` header form).
    pub async fn schema_by_guid(&self, guid: &str) -> Result<SchemaDefinition> {
        let body: SchemaBody = self
            .send(
                self.http
                    .get(self.url(&format!("/schemas/guids/{}", encode_segment(guid)))),
                format!("GET schema guid {guid}"),
            )
            .await
            .map_err(|e| match e {
                SchemaError::Registry { status: 404, .. } => SchemaError::UnknownSchemaGuid {
                    guid: guid.to_owned(),
                },
                other => other,
            })?;
        Ok(SchemaDefinition {
            schema_type: schema_type_of(body.schema_type)?,
            schema: body.schema,
        })
    }

    fn subject_errors(subject: &str, version: &str) -> impl Fn(SchemaError) -> SchemaError {
        let subject = subject.to_owned();
        let version = version.to_owned();
        move |e| match e {
            SchemaError::Registry {
                error_code: 40401, ..
            } => SchemaError::UnknownSubject {
                subject: subject.clone(),
            },
            SchemaError::Registry {
                error_code: 40402, ..
            } => SchemaError::UnknownVersion {
                subject: subject.clone(),
                version: version.clone(),
            },
            other => other,
        }
    }

    async fn fetch_subject_version(&self, subject: &str, version: &str) -> Result<SubjectVersion> {
        let url = self.url(&format!(
            "/subjects/{}/versions/{version}",
            encode_segment(subject)
        ));
        let body: SubjectVersionBody = self
            .send(
                self.http.get(url),
                format!("GET subject `{subject}` version {version}"),
            )
            .await
            .map_err(Self::subject_errors(subject, version))?;
        let found = SubjectVersion {
            subject: body.subject,
            version: body.version,
            id: body.id,
            definition: SchemaDefinition {
                schema_type: schema_type_of(body.schema_type)?,
                schema: body.schema,
            },
        };
        if let Ok(mut cache) = self.by_subject_version.write() {
            cache.insert(
                (found.subject.clone(), found.version),
                Arc::new(found.clone()),
            );
        }
        Ok(found)
    }

    /// One numbered version of a subject (cached).
    pub async fn subject_version(
        &self,
        subject: &str,
        version: u32,
    ) -> Result<Arc<SubjectVersion>> {
        let key = (subject.to_owned(), version);
        if let Some(found) = self
            .by_subject_version
            .read()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(found);
        }
        Ok(Arc::new(
            self.fetch_subject_version(subject, &version.to_string())
                .await?,
        ))
    }

    /// The newest live version of a subject (never cached: it moves).
    pub async fn latest(&self, subject: &str) -> Result<SubjectVersion> {
        self.fetch_subject_version(subject, "latest").await
    }

    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        let url = self.url(&format!("/subjects/{}/versions", encode_segment(subject)));
        self.send(self.http.get(url), format!("GET versions of `{subject}`"))
            .await
            .map_err(Self::subject_errors(subject, ""))
    }

    pub async fn subjects(&self) -> Result<Vec<String>> {
        self.send(
            self.http.get(self.url("/subjects")),
            "GET subjects".to_owned(),
        )
        .await
    }

    /// Registers `definition` under `subject` and returns its global id; registering an identical
    /// schema again returns the same id.
    pub async fn register(&self, subject: &str, definition: &SchemaDefinition) -> Result<u32> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let url = self.url(&format!("/subjects/{}/versions", encode_segment(subject)));
        let registered: Registered = self
            .send(
                self.http.post(url).json(&body_of(definition)),
                format!("register under `{subject}`"),
            )
            .await
            .map_err(|e| match e {
                // Older servers answer 409 as the error code, current ones 40901.
                SchemaError::Registry {
                    error_code: 409 | 40901,
                    message,
                    ..
                } => SchemaError::Incompatible {
                    subject: subject.to_owned(),
                    message,
                },
                other => other,
            })?;
        if let Ok(mut cache) = self.by_id.write() {
            cache.insert(registered.id, Arc::new(definition.clone()));
        }
        Ok(registered.id)
    }

    /// Asks the registry whether `definition` may become the next version of `subject`
    /// (`version` = `None` for "latest").
    pub async fn check_compatibility(
        &self,
        subject: &str,
        version: Option<u32>,
        definition: &SchemaDefinition,
    ) -> Result<CompatibilityAnswer> {
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
            #[serde(default)]
            messages: Vec<String>,
        }
        let version_text = version.map_or_else(|| "latest".to_owned(), |v| v.to_string());
        let url = self.url(&format!(
            "/compatibility/subjects/{}/versions/{version_text}?verbose=true",
            encode_segment(subject)
        ));
        let answer: Answer = self
            .send(
                self.http.post(url).json(&body_of(definition)),
                format!("compatibility of `{subject}`"),
            )
            .await
            .map_err(Self::subject_errors(subject, &version_text))?;
        Ok(CompatibilityAnswer {
            is_compatible: answer.is_compatible,
            messages: answer.messages,
        })
    }

    /// The subject's level, or the global one with `subject` = `None`.
    pub async fn compatibility_level(&self, subject: Option<&str>) -> Result<CompatibilityLevel> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(rename = "compatibilityLevel")]
            level: String,
        }
        let path = match subject {
            Some(subject) => format!("/config/{}?defaultToGlobal=true", encode_segment(subject)),
            None => "/config".to_owned(),
        };
        let config: Config = self
            .send(self.http.get(self.url(&path)), "GET config".to_owned())
            .await?;
        config.level.parse()
    }

    pub async fn set_compatibility_level(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<()> {
        let path = match subject {
            Some(subject) => format!("/config/{}", encode_segment(subject)),
            None => "/config".to_owned(),
        };
        let _: Value = self
            .send(
                self.http
                    .put(self.url(&path))
                    .json(&json!({ "compatibility": level.as_str() })),
                "PUT config".to_owned(),
            )
            .await?;
        Ok(())
    }

    /// Soft-deletes a subject; returns the versions deleted.
    pub async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let url = self.url(&format!("/subjects/{}", encode_segment(subject)));
        self.send(self.http.delete(url), format!("DELETE subject `{subject}`"))
            .await
            .map_err(Self::subject_errors(subject, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_names_are_percent_encoded() {
        assert_eq!(encode_segment("orders-value"), "orders-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(RegistryClient::new("localhost:8081").is_err());
        assert!(RegistryClient::new("http://localhost:8081/").is_ok());
    }

    #[test]
    fn avro_bodies_omit_schema_type() {
        assert!(
            body_of(&SchemaDefinition::avro("\"int\""))
                .get("schemaType")
                .is_none()
        );
        assert_eq!(body_of(&SchemaDefinition::json("{}"))["schemaType"], "JSON");
    }
}
