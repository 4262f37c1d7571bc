//! Source topic → route (dataset, decoder, rule set), prepared and checked at start-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dq_rules::{Evaluator, RuleSet};
use summit_schema::{Decoder, RegistryClient};

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
                client.latest(subject).await.map_err(|e| {
                    let key = if e.is_retriable() {
                        "schema_registry.url".to_owned()
                    } else {
                        key("subject")
                    };
                    ConfigError::invalid(key, e)
                })?;
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
