//! Source topic → route (dataset, decoder, rule set), prepared and checked at start-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dq_rules::{Evaluator, RuleSet};
use summit_schema::{Decoder, RegistryClient, SchemaDefinition, SchemaError};

use crate::config::{Config, ConfigError};

/// One configured route, ready to use.
#[derive(Debug)]
pub struct Route {
    pub dataset: Arc<str>,
    pub subject: Option<String>,
    pub evaluator: Evaluator,
    /// `<name>@<hash>`: the `summit-dq-ruleset` value.
    pub ruleset: String,
    topics: Vec<String>,
    pattern: Option<regex::Regex>,
}

impl Route {
    fn matches(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
            || self.pattern.as_ref().is_some_and(|p| p.is_match(topic))
    }
}

/// A source topic's shared name and its route.
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
    /// Loads every rule set and checks the registry (reachable, subjects known). Errors name
    /// the config key they come from.
    pub async fn prepare(config: &Config) -> Result<Self, ConfigError> {
        let decoder = match &config.schema_registry {
            Some(registry) => {
                let client = RegistryClient::new(&registry.url)
                    .map_err(|e| ConfigError::invalid("schema_registry.url", e))?;
                Some(Arc::new(Decoder::new(Arc::new(client))))
            }
            None => None,
        };
        let mut routes = Vec::with_capacity(config.routes.len());
        for (index, route) in config.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{index}].{field}");
            let path = config.rules_path(route);
            let rule_set = RuleSet::from_path(&path).map_err(|e| {
                ConfigError::invalid(key("rules"), format!("{}: {e}", path.display()))
            })?;
            let evaluator = Evaluator::build(&rule_set).await.map_err(|e| {
                ConfigError::invalid(key("rules"), format!("{}: {e}", path.display()))
            })?;
            if let (Some(subject), Some(registry)) = (&route.subject, &config.schema_registry) {
                // Fails start-up when the registry is unreachable or the subject unknown, rather
                // than dead-lettering every record later.
                let client = RegistryClient::new(&registry.url)
                    .map_err(|e| ConfigError::invalid("schema_registry.url", e))?;
                let registry_error = |e: SchemaError| {
                    let key = if e.is_retriable() {
                        "schema_registry.url".to_owned()
                    } else {
                        key("subject")
                    };
                    ConfigError::invalid(key, e)
                };
                client.latest(subject).await.map_err(registry_error)?;
                if let Some(file) = &route.schema_file {
                    let built = read_schema_file(&config.resolve_path(file))
                        .map_err(|e| ConfigError::invalid(key("schema_file"), e))?;
                    let level = route.schema_compatibility.unwrap_or_default();
                    summit_schema::ensure_registry_compatible(&client, subject, &built, level)
                        .await
                        .map_err(|e| {
                            // The subject answered just above: what fails now is the file
                            // (unparsable or incompatible) unless the registry went away.
                            if e.is_retriable() {
                                registry_error(e)
                            } else {
                                ConfigError::invalid(key("schema_file"), e)
                            }
                        })?;
                }
            }
            let pattern = match &route.topic_pattern {
                Some(pattern) => Some(
                    regex::Regex::new(pattern)
                        .map_err(|e| ConfigError::invalid(key("topic_pattern"), e))?,
                ),
                None => None,
            };
            routes.push(Arc::new(Route {
                dataset: route.dataset.as_str().into(),
                subject: route.subject.clone(),
                ruleset: evaluator.version_id().to_owned(),
                evaluator,
                topics: route.topics.clone(),
                pattern,
            }));
        }
        Ok(Self {
            routes,
            decoder,
            resolved: Mutex::default(),
        })
    }

    /// What to subscribe to: topic names and `^`-patterns.
    pub fn subscription(config: &Config) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for route in &config.routes {
            topics.extend(route.topics.iter().cloned());
            topics.extend(route.topic_pattern.iter().cloned());
        }
        topics.sort();
        topics.dedup();
        topics
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn decoder(&self) -> Option<&Arc<Decoder>> {
        self.decoder.as_ref()
    }

    /// The route of `topic` (first matching route wins) and a shared copy of the topic name.
    pub fn resolve(&self, topic: &str) -> Option<ResolvedTopic> {
        // Only the consuming task resolves, so the lock is never contended.
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = resolved.get(topic) {
            return found.clone();
        }
        let found = self
            .routes
            .iter()
            .find(|route| route.matches(topic))
            .map(|route| (Arc::<str>::from(topic), route.clone()));
        resolved.insert(topic.to_owned(), found.clone());
        found
    }
}
