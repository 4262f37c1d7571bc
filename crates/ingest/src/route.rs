//! Source (topic or stream) → route (dataset, decoder, rule set), prepared and checked at
//! start-up, with errors that name the config key they come from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dq_rules::{Evaluator, RuleSet};
use summit_schema::{CompatibilityLevel, Decoder, RegistryClient, SchemaDefinition, SchemaError};

/// A route as configured, with paths already resolved against the config file. `key` is where
/// it sits in the config (`routes[0]`), `pattern_field` what the service calls its pattern
/// (`topic_pattern`, `stream_pattern`): errors name them.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub key: String,
    pub sources: Vec<String>,
    pub pattern: Option<String>,
    pub pattern_field: &'static str,
    pub dataset: String,
    pub subject: Option<String>,
    pub schema_file: Option<PathBuf>,
    pub schema_compatibility: Option<CompatibilityLevel>,
    pub rules: PathBuf,
}

/// A route that cannot be used, named by its config key (`routes[0].rules`).
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {problem}")]
pub struct RouteError {
    pub key: String,
    pub problem: String,
}

impl RouteError {
    fn new(key: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            problem: problem.to_string(),
        }
    }
}

/// One configured route, ready to use.
#[derive(Debug)]
pub struct Route {
    pub dataset: Arc<str>,
    pub subject: Option<String>,
    pub evaluator: Evaluator,
    /// `<name>@<hash>`: the `summit-dq-ruleset` value.
    pub ruleset: String,
    sources: Vec<String>,
    pattern: Option<regex::Regex>,
}

impl Route {
    fn matches(&self, source: &str) -> bool {
        self.sources.iter().any(|t| t == source)
            || self.pattern.as_ref().is_some_and(|p| p.is_match(source))
    }
}

/// A source's shared name and its route.
type ResolvedTopic = (Arc<str>, Arc<Route>);

/// A route's `schema_file`: `.avsc` is Avro, `.json` JSON Schema.
fn read_schema_file(path: &std::path::Path) -> Result<SchemaDefinition, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("avsc") => Ok(SchemaDefinition::avro(text)),
        Some("json") => Ok(SchemaDefinition::json(text)),
        _ => Err(format!(
            "{}: unknown schema type (name it .avsc for Avro or .json for JSON Schema)",
            path.display()
        )),
    }
}

/// All routes plus the shared decoder; resolves topics with a per-topic cache.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    decoder: Option<Arc<Decoder>>,
    resolved: Mutex<HashMap<String, Option<ResolvedTopic>>>,
}

impl RouteTable {
    /// Loads every rule set and checks the registry at `registry_url` (reachable, subjects
    /// known, `schema_file`s followable). Errors name the config key they come from.
    pub async fn prepare(
        registry_url: Option<&str>,
        specs: &[RouteSpec],
    ) -> Result<Self, RouteError> {
        const REGISTRY_KEY: &str = "schema_registry.url";
        let connect =
            |url: &str| RegistryClient::new(url).map_err(|e| RouteError::new(REGISTRY_KEY, e));
        // One client decodes (its caches live as long as the service), one checks at start-up.
        let (decoder, client) = match registry_url {
            Some(url) => (
                Some(Arc::new(Decoder::new(Arc::new(connect(url)?)))),
                Some(connect(url)?),
            ),
            None => (None, None),
        };
        let mut routes = Vec::with_capacity(specs.len());
        for spec in specs {
            if let (Some(subject), Some(client)) = (&spec.subject, &client) {
                check_registry(client, spec, subject).await?;
            }
            routes.push(Arc::new(Route::prepare(spec).await?));
        }
        Ok(Self {
            routes,
            decoder,
            resolved: Mutex::default(),
        })
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn decoder(&self) -> Option<&Arc<Decoder>> {
        self.decoder.as_ref()
    }

    /// The route of `source` (first matching route wins) and a shared copy of its name.
    pub fn resolve(&self, source: &str) -> Option<ResolvedTopic> {
        // Only the consuming task resolves, so the lock is never contended.
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = resolved.get(source) {
            return found.clone();
        }
        let found = self
            .routes
            .iter()
            .find(|route| route.matches(source))
            .map(|route| (Arc::<str>::from(source), route.clone()));
        resolved.insert(source.to_owned(), found.clone());
        found
    }
}

impl Route {
    async fn prepare(spec: &RouteSpec) -> Result<Self, RouteError> {
        let key = |field: &str| format!("{}.{field}", spec.key);
        let path = &spec.rules;
        let rules_error = |e: &dyn std::fmt::Display| {
            RouteError::new(key("rules"), format!("{}: {e}", path.display()))
        };
        let rule_set = RuleSet::from_path(path).map_err(|e| rules_error(&e))?;
        let evaluator = Evaluator::build(&rule_set)
            .await
            .map_err(|e| rules_error(&e))?;
        let pattern = match &spec.pattern {
            Some(pattern) => Some(
                regex::Regex::new(pattern)
                    .map_err(|e| RouteError::new(key(spec.pattern_field), e))?,
            ),
            None => None,
        };
        Ok(Self {
            dataset: spec.dataset.as_str().into(),
            subject: spec.subject.clone(),
            ruleset: evaluator.version_id().to_owned(),
            evaluator,
            sources: spec.sources.clone(),
            pattern,
        })
    }
}

/// Fails start-up when the registry is unreachable, the subject unknown, or the route's
/// `schema_file` cannot follow the registry's latest version, rather than dead-lettering every
/// record later.
async fn check_registry(
    client: &RegistryClient,
    spec: &RouteSpec,
    subject: &str,
) -> Result<(), RouteError> {
    let key = |field: &str| format!("{}.{field}", spec.key);
    let registry_error = |e: SchemaError| {
        let key = if e.is_retriable() {
            "schema_registry.url".to_owned()
        } else {
            key("subject")
        };
        RouteError::new(key, e)
    };
    client.latest(subject).await.map_err(registry_error)?;
    let Some(file) = &spec.schema_file else {
        return Ok(());
    };
    let built = read_schema_file(file).map_err(|e| RouteError::new(key("schema_file"), e))?;
    let level = spec.schema_compatibility.unwrap_or_default();
    summit_schema::ensure_registry_compatible(client, subject, &built, level)
        .await
        .map_err(|e| {
            // The subject answered just above: what fails now is the file (unparsable or
            // incompatible) unless the registry went away.
            if e.is_retriable() {
                registry_error(e)
            } else {
                RouteError::new(key("schema_file"), e)
            }
        })?;
    Ok(())
}
