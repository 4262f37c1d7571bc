//! The config sections every ingest service has, each with its defaults and its checks.

use std::time::Duration;

use serde::Deserialize;
use summit_tickets::WebhookConfig;

use super::{ConfigError, nonempty, positive, positive_duration, positive_rate};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Names this instance in logs, client ids and lineage runs; defaults to
    /// `<service>-<pid>`.
    pub instance_id: Option<String>,
    /// SIGTERM/SIGINT: time allowed to drain in-flight outputs, commit and exit.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            instance_id: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServiceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive_duration("service.shutdown_grace", self.shutdown_grace)
    }

    /// `service.instance_id`, or `<service>-<pid>`.
    pub fn instance_id(&self, service: &str) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("{service}-{}", std::process::id()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
}

/// The admin HTTP port: `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `127.0.0.1:0` picks a free port; the bound address is logged as `admin_addr`.
    pub listen: std::net::SocketAddr,
    /// How often `summit_consumer_lag` is refreshed.
    #[serde(with = "humantime_serde")]
    pub lag_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
            lag_interval: Duration::from_secs(5),
        }
    }
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive_duration("admin.lag_interval", self.lag_interval)
    }
}

/// Every `interval`, one `dq.events` record per dataset with the window's outcome totals and
/// each rule's failures (`kind: "rule_counts"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqCountsConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for DqCountsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
        }
    }
}

impl DqCountsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive_duration("dq_counts.interval", self.interval)
    }
}

/// Data-quality tickets: one per (dataset, rule) per `window` once `threshold` failures of
/// that rule are seen in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    pub threshold: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// `url` plus optional `request_timeout`, `max_attempts`, `initial_backoff`, `max_backoff`,
    /// `queue_capacity`.
    pub webhook: WebhookConfig,
}

fn default_max_samples() -> usize {
    10
}

impl TicketsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("tickets.threshold", self.threshold)?;
        positive_duration("tickets.window", self.window)?;
        nonempty("tickets.webhook.url", &self.webhook.url)
    }
}

/// DLQ overload control (DESIGN §4), per source: dead letters beyond these rates pause the
/// source (nothing is dropped; `summit_dlq_throttled` is 1 meanwhile), and after
/// `companions_per_window` `dq.events` companions per (source, lane, error kind) in a
/// `companion_window`, the rest are folded into one summary record per window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    pub max_records_per_second: f64,
    pub max_bytes_per_second: f64,
    pub companions_per_window: u32,
    #[serde(with = "humantime_serde")]
    pub companion_window: Duration,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            max_records_per_second: 5_000.0,
            max_bytes_per_second: 64.0 * 1024.0 * 1024.0,
            companions_per_window: 100,
            companion_window: Duration::from_secs(10),
        }
    }
}

impl DlqConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive_rate("dlq.max_records_per_second", self.max_records_per_second)?;
        positive_rate("dlq.max_bytes_per_second", self.max_bytes_per_second)?;
        positive(
            "dlq.companions_per_window",
            u64::from(self.companions_per_window),
        )?;
        positive_duration("dlq.companion_window", self.companion_window)
    }
}
