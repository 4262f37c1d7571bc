//! The service configuration: one YAML file plus `SUMMIT_` environment overrides, refused as a
//! whole when any key is unknown or any value is unusable, with the key named in the error.
//!
//! Overrides: `SUMMIT_<SECTION>__<KEY>[__<KEY>...]` sets `section.key...`; a numeric segment
//! indexes a list (`SUMMIT_ROUTES__0__RULES=/etc/rules.yaml`). The value is read as a YAML
//! scalar, so `SUMMIT_LIMITS__MAX_IN_FLIGHT_RECORDS=500` is a number. Variables without `__`
//! (such as `SUMMIT_KAFKA_BOOTSTRAP`, used by the test tooling) are not overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
pub use summit_ingest::config::{
    AdminConfig, ConfigError, DlqConfig, DqCountsConfig, ENV_PREFIX, RegistryConfig, ServiceConfig,
    TicketsConfig,
};
use summit_ingest::config::{nonempty, positive, positive_duration};
pub use summit_telemetry::TracingConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub service: ServiceConfig,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub mesh: MeshConfig,
    /// Required when any route names a schema subject.
    #[serde(default)]
    pub schema_registry: Option<RegistryConfig>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logs and OTLP span export.
    #[serde(default)]
    pub telemetry: TracingConfig,
    #[serde(default)]
    pub lineage: LineageConfig,
    /// Absent: no data-quality tickets.
    #[serde(default)]
    pub tickets: Option<TicketsConfig>,
    /// Periodic per-rule counts in `dq.events` (DESIGN §4).
    #[serde(default)]
    pub dq_counts: DqCountsConfig,
    /// DLQ overload control (DESIGN §4).
    #[serde(default)]
    pub dlq: DlqConfig,
    pub routes: Vec<RouteConfig>,
    /// Directory of the config file: relative rule paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// The `<cluster>` segment of `summit-source` URIs (and so of every event id): keep it
    /// stable, or replays get new ids.
    pub cluster_name: String,
    /// Consumer group session timeout. Kept short by default: tansu answers a JoinGroup only
    /// after half of it.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Extra librdkafka consumer properties (override the service's defaults). Starts from
    /// [`DEFAULT_CONSUMER_PROPERTIES`]; a key given here replaces the default of that key only.
    #[serde(
        default = "default_consumer_properties",
        deserialize_with = "consumer_properties_over_defaults"
    )]
    pub consumer_properties: BTreeMap<String, String>,
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(6)
}

/// librdkafka properties the service sets unless `kafka.consumer_properties` overrides them.
///
/// `fetch.wait.max.ms`: librdkafka's 500 ms default lets a broker hold a fetch that long when
/// less than `fetch.min.bytes` is waiting, which at a steady rate added ~150 ms to the median
/// ingest latency against tansu (p50 240 ms → 71 ms in the ingest bench with 5 ms). 20 ms keeps
/// that wait small while still batching fetches under load.
///
/// `fetch.queue.backoff.ms`: once the prefetch queue is over `queued.max.messages.kbytes`
/// (`limits.fetch_queue_kbytes`) librdkafka postpones the partition's next fetch by this much,
/// 1 s by default. Decoding and validating is slower than fetching, so the queue fills, and
/// the default then left the service idle for most of each second once the queue ran dry
/// (ingest bench: 48k → 92k events/s with 10 ms). Re-checking every 10 ms costs nothing
/// measurable.
pub const DEFAULT_CONSUMER_PROPERTIES: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("fetch.wait.max.ms", "20"),
];

fn default_consumer_properties() -> BTreeMap<String, String> {
    DEFAULT_CONSUMER_PROPERTIES
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn consumer_properties_over_defaults<'de, D>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let given = BTreeMap::<String, String>::deserialize(deserializer)?;
    let mut properties = default_consumer_properties();
    properties.extend(given);
    Ok(properties)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// The mesh cluster; defaults to `kafka.bootstrap_servers`.
    pub bootstrap_servers: Option<String>,
    /// Extra librdkafka producer properties.
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    EffectivelyOnce,
    ExactlyOnce,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    /// How often acknowledged offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Backoff for failed deliveries and registry outages: `retry_backoff` doubling up to
    /// `retry_backoff_max`, forever (nothing is skipped).
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// On revoke, how long to wait for the revoked partitions' outputs before releasing them
    /// uncommitted (their records are then processed again by the next owner, same event ids).
    #[serde(with = "humantime_serde")]
    pub rebalance_drain_timeout: Duration,
    /// exactly_once: a transaction holds at most this many source records...
    pub transaction_max_records: u64,
    /// ...and is committed at least this often while records arrive.
    #[serde(with = "humantime_serde")]
    pub transaction_interval: Duration,
    /// exactly_once: the producer's `transactional.id` is `<prefix>-<service.instance_id>`, so
    /// set `service.instance_id` to something stable per instance (a pod ordinal).
    pub transactional_id_prefix: String,
    /// exactly_once: `transaction.timeout.ms`; the broker aborts a transaction left open longer.
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// Tests only: lets `SUMMIT_TEST_FAIL_TXN_AFTER=<n>` make the n-th transaction abort
    /// instead of committing (exactly_once). Ignored unless true.
    pub test_fault_injection: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::EffectivelyOnce,
            commit_interval: Duration::from_millis(500),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(5),
            rebalance_drain_timeout: Duration::from_secs(10),
            transaction_max_records: 500,
            transaction_interval: Duration::from_millis(100),
            transactional_id_prefix: "summit-kafka-consumer".to_owned(),
            transaction_timeout: Duration::from_secs(60),
            test_fault_injection: false,
        }
    }
}

/// Memory bound: roughly `max_in_flight_bytes` × (1 + outputs per record, at most 2) for
/// records awaiting acknowledgement, plus `fetch_queue_kbytes` prefetched by librdkafka, plus
/// one record of `max_record_bytes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Larger records (key + value) go to the DLQ as `oversize`.
    pub max_record_bytes: u64,
    /// Above this many unacknowledged source records, fetching pauses.
    pub max_in_flight_records: u64,
    /// Above this many unacknowledged source bytes, fetching pauses.
    pub max_in_flight_bytes: u64,
    /// librdkafka's prefetch queue per partition (`queued.max.messages.kbytes`).
    pub fetch_queue_kbytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_record_bytes: 1024 * 1024,
            max_in_flight_records: 20_000,
            max_in_flight_bytes: 64 * 1024 * 1024,
            fetch_queue_kbytes: 16 * 1024,
        }
    }
}

/// OpenLineage events to `lineage.events` (DESIGN §6), on the commit path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineageConfig {
    /// Off: offsets are committed without lineage (for local experiments only).
    pub enabled: bool,
    /// The cluster holding the lineage topic; defaults to the mesh cluster.
    pub bootstrap_servers: Option<String>,
    pub topic: String,
    /// One emission tries at most this many sends...
    pub max_attempts: u32,
    /// ...within this much time; then the commit is held and retried at the next commit tick.
    #[serde(with = "humantime_serde")]
    pub emit_budget: Duration,
    /// How long librdkafka keeps one send in flight.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Extra librdkafka producer properties for the lineage producer.
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for LineageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bootstrap_servers: None,
            topic: summit_envelope::topics::LINEAGE_EVENTS.to_owned(),
            max_attempts: 3,
            emit_budget: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            initial_backoff: Duration::from_millis(200),
            producer_properties: BTreeMap::new(),
        }
    }
}

/// Where records of some source topics go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Source topics by name.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Source topics by regex; must start with `^` (librdkafka's marker for a pattern).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Records go to `mesh.<dataset>` / `dq.quarantine.<dataset>`.
    pub dataset: String,
    /// Registry subject of the values (registry-framed Avro or JSON). Absent: plain JSON
    /// values, no registry.
    #[serde(default)]
    pub subject: Option<String>,
    /// The value schema this route's rules and downstream readers were written against
    /// (`.avsc` Avro, `.json` JSON Schema; relative to the config file). When set, start-up
    /// refuses a registry whose latest version of `subject` it cannot follow.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Level of that start-up check (the file plays the new version). Default BACKWARD: the
    /// built schema must read what producers register.
    #[serde(default)]
    pub schema_compatibility: Option<summit_schema::CompatibilityLevel>,
    /// dq-rules rule set file (relative to the config file).
    pub rules: PathBuf,
}

impl Config {
    /// Reads `path`, applies `SUMMIT_` overrides from `env`, and checks every value that can
    /// be checked without the network.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (text, base_dir) = summit_ingest::config::read_file(path)?;
        Self::from_yaml(&text, path, base_dir, env)
    }

    pub fn from_yaml(
        text: &str,
        path: &Path,
        base_dir: PathBuf,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config: Config = summit_ingest::config::from_yaml(text, path, env)?;
        config.base_dir = base_dir;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_kafka()?;
        self.validate_limits()?;
        self.service.validate()?;
        self.validate_delivery()?;
        if self.lineage.enabled {
            nonempty("lineage.topic", &self.lineage.topic)?;
            positive("lineage.max_attempts", u64::from(self.lineage.max_attempts))?;
            positive_duration("lineage.emit_budget", self.lineage.emit_budget)?;
            positive_duration("lineage.attempt_timeout", self.lineage.attempt_timeout)?;
        }
        self.admin.validate()?;
        self.dq_counts.validate()?;
        self.dlq.validate()?;
        if let Some(tickets) = &self.tickets {
            tickets.validate()?;
        }
        if self.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "at least one route is needed",
            ));
        }
        for (index, route) in self.routes.iter().enumerate() {
            self.validate_route(index, route)?;
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        nonempty("kafka.bootstrap_servers", &self.kafka.bootstrap_servers)?;
        nonempty("kafka.group_id", &self.kafka.group_id)?;
        nonempty("kafka.cluster_name", &self.kafka.cluster_name)?;
        if self.kafka.cluster_name.contains('/') {
            return Err(ConfigError::invalid(
                "kafka.cluster_name",
                "must not contain `/` (it is a segment of summit-source URIs)",
            ));
        }
        positive_duration("kafka.session_timeout", self.kafka.session_timeout)
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        positive("limits.max_record_bytes", limits.max_record_bytes)?;
        positive("limits.max_in_flight_records", limits.max_in_flight_records)?;
        positive("limits.max_in_flight_bytes", limits.max_in_flight_bytes)?;
        positive("limits.fetch_queue_kbytes", limits.fetch_queue_kbytes)
    }

    fn validate_delivery(&self) -> Result<(), ConfigError> {
        let delivery = &self.delivery;
        positive_duration("delivery.commit_interval", delivery.commit_interval)?;
        positive_duration("delivery.retry_backoff", delivery.retry_backoff)?;
        positive_duration("delivery.retry_backoff_max", delivery.retry_backoff_max)?;
        positive_duration(
            "delivery.rebalance_drain_timeout",
            delivery.rebalance_drain_timeout,
        )?;
        positive(
            "delivery.transaction_max_records",
            delivery.transaction_max_records,
        )?;
        positive_duration(
            "delivery.transaction_interval",
            delivery.transaction_interval,
        )?;
        positive_duration("delivery.transaction_timeout", delivery.transaction_timeout)?;
        nonempty(
            "delivery.transactional_id_prefix",
            &delivery.transactional_id_prefix,
        )?;
        if delivery.mode == DeliveryMode::ExactlyOnce
            && self.mesh_bootstrap_servers() != self.kafka.bootstrap_servers
        {
            // send_offsets_to_transaction commits through the producer's cluster.
            return Err(ConfigError::invalid(
                "mesh.bootstrap_servers",
                "exactly_once needs the mesh and the source on one cluster",
            ));
        }
        Ok(())
    }

    fn validate_route(&self, index: usize, route: &RouteConfig) -> Result<(), ConfigError> {
        let key = |field: &str| format!("routes[{index}].{field}");
        if route.topics.is_empty() && route.topic_pattern.is_none() {
            return Err(ConfigError::invalid(
                format!("routes[{index}]"),
                "needs `topics` or `topic_pattern`",
            ));
        }
        for topic in &route.topics {
            nonempty(&key("topics"), topic)?;
        }
        if let Some(pattern) = &route.topic_pattern {
            if !pattern.starts_with('^') {
                return Err(ConfigError::invalid(
                    key("topic_pattern"),
                    "must start with `^` (librdkafka subscribes by regex only then)",
                ));
            }
            regex::Regex::new(pattern)
                .map_err(|e| ConfigError::invalid(key("topic_pattern"), e))?;
        }
        nonempty(&key("dataset"), &route.dataset)?;
        if route.subject.is_none()
            && (route.schema_file.is_some() || route.schema_compatibility.is_some())
        {
            let field = if route.schema_file.is_some() {
                "schema_file"
            } else {
                "schema_compatibility"
            };
            return Err(ConfigError::invalid(
                key(field),
                format!("needs {} (the registry subject to check)", key("subject")),
            ));
        }
        if let Some(subject) = &route.subject {
            nonempty(&key("subject"), subject)?;
            if self.schema_registry.is_none() {
                return Err(ConfigError::invalid(
                    "schema_registry.url",
                    format!("required because {} is set", key("subject")),
                ));
            }
        }
        Ok(())
    }

    /// The routes as the ingest core takes them (paths resolved against the config file).
    pub fn route_specs(&self) -> Vec<summit_ingest::RouteSpec> {
        self.routes
            .iter()
            .enumerate()
            .map(|(index, route)| summit_ingest::RouteSpec {
                key: format!("routes[{index}]"),
                sources: route.topics.clone(),
                pattern: route.topic_pattern.clone(),
                pattern_field: "topic_pattern",
                dataset: route.dataset.clone(),
                subject: route.subject.clone(),
                schema_file: route.schema_file.as_deref().map(|f| self.resolve_path(f)),
                schema_compatibility: route.schema_compatibility,
                rules: self.rules_path(route),
            })
            .collect()
    }

    /// Loads every rule set and checks the registry (reachable, subjects known).
    pub async fn prepare_routes(&self) -> Result<summit_ingest::RouteTable, ConfigError> {
        let registry = self.schema_registry.as_ref().map(|r| r.url.as_str());
        Ok(summit_ingest::RouteTable::prepare(registry, &self.route_specs()).await?)
    }

    /// What to subscribe to: topic names and `^`-patterns.
    pub fn subscription(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for route in &self.routes {
            topics.extend(route.topics.iter().cloned());
            topics.extend(route.topic_pattern.iter().cloned());
        }
        topics.sort();
        topics.dedup();
        topics
    }

    pub fn mesh_bootstrap_servers(&self) -> &str {
        self.mesh
            .bootstrap_servers
            .as_deref()
            .unwrap_or(&self.kafka.bootstrap_servers)
    }

    /// A producer on the mesh cluster with `mesh.producer_properties`, named
    /// `<instance>-<role>` (the mesh producer, the dq.events counts writer).
    pub fn mesh_producer_settings(&self, role: &str) -> summit_kafka::ProducerSettings {
        summit_kafka::ProducerSettings {
            bootstrap_servers: self.mesh_bootstrap_servers().to_owned(),
            client_id: format!("{}-{role}", self.instance_id()),
            properties: self
                .mesh
                .producer_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The mesh producer's `message.max.bytes`: dead letters past it are written in chunks.
    pub fn mesh_message_max_bytes(&self) -> usize {
        summit_kafka::message_max_bytes(
            self.mesh
                .producer_properties
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
    }

    pub fn lineage_bootstrap_servers(&self) -> &str {
        self.lineage
            .bootstrap_servers
            .as_deref()
            .unwrap_or_else(|| self.mesh_bootstrap_servers())
    }

    pub fn instance_id(&self) -> String {
        self.service.instance_id(crate::service::SERVICE_NAME)
    }

    /// exactly_once: one transactional id per instance (KIP-447: the consumer group metadata
    /// sent with the offsets fences zombies, so no per-partition ids are needed).
    pub fn transactional_id(&self) -> String {
        format!(
            "{}-{}",
            self.delivery.transactional_id_prefix,
            self.instance_id()
        )
    }

    pub fn rules_path(&self, route: &RouteConfig) -> PathBuf {
        self.resolve_path(&route.rules)
    }

    /// A path from the config file, relative to the file's folder.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

#[cfg(test)]
mod tests;
