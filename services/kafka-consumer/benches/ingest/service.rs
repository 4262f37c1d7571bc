//! The `kafka-consumer` binary under test, and the configuration file it shares with the raw
//! pipe (which takes its consumer, producer, in-flight and commit settings from the same file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use summit_envelope::topics;
use summit_test_support::unique_name;

use crate::data::RULES;
use crate::{BINARY, CLUSTER};

/// What every service run of the bench shares.
#[derive(Debug)]
pub(crate) struct ServiceConfig<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) registry: &'a str,
    pub(crate) source: &'a str,
    pub(crate) dataset: &'a str,
    pub(crate) subject: &'a str,
    /// `key=value,key=value` for `kafka.consumer_properties` (`BENCH_CONSUMER_PROPERTIES`).
    pub(crate) consumer_properties: String,
    /// `key=value,key=value` for `mesh.producer_properties` (`BENCH_PRODUCER_PROPERTIES`).
    pub(crate) producer_properties: String,
}

/// `"k": "v", ...` of a `k=v,k=v` list.
fn yaml_map(pairs: &str) -> String {
    pairs
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| format!("\"{}\": \"{}\"", k.trim(), v.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `<role>.yaml` (and the rule set) into the run's directory: the service's
/// configuration against `bootstrap`, with a consumer group of its own.
pub(crate) fn write_config(
    config: &ServiceConfig<'_>,
    bootstrap: &str,
    role: &str,
) -> Result<PathBuf> {
    let ServiceConfig {
        dir,
        registry,
        source,
        dataset,
        subject,
        ..
    } = *config;
    let consumer_properties = yaml_map(&config.consumer_properties);
    let producer_properties = yaml_map(&config.producer_properties);
    std::fs::write(dir.join("rules.yaml"), RULES)?;
    let path = dir.join(format!("{role}.yaml"));
    let group = unique_name(&format!("bench-{role}"));
    std::fs::write(
        &path,
        format!(
            "service: {{ shutdown_grace: 10s }}\n\
             admin: {{ listen: \"127.0.0.1:0\" }}\n\
             kafka: {{ bootstrap_servers: \"{bootstrap}\", group_id: {group}, cluster_name: {CLUSTER}, \
             consumer_properties: {{ {consumer_properties} }} }}\n\
             mesh: {{ producer_properties: {{ {producer_properties} }} }}\n\
             schema_registry: {{ url: \"{registry}\" }}\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, subject: {subject}, rules: rules.yaml }}\n"
        ),
    )?;
    Ok(path)
}

pub(crate) struct Service {
    child: Child,
    pub(crate) log: PathBuf,
}

impl Service {
    pub(crate) fn start(config: &ServiceConfig<'_>, bootstrap: &str) -> Result<Self> {
        let path = write_config(config, bootstrap, "service")?;
        let log = config.dir.join(format!("{}.log", config.dataset));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(BINARY)
            .arg("--config")
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            // Logs go to stdout, errors before logging starts to stderr: keep both.
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {BINARY}"))?;
        Ok(Self { child, log })
    }

    /// The service's CPU seconds so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        crate::broker::cpu_seconds(self.child.id())
    }

    /// SIGTERM, then wait for the exit (it drains and commits).
    pub(crate) fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        bail!(
            "service did not stop within 20 s; log: {}",
            self.log.display()
        )
    }
}

pub(crate) fn output_topics(source: &str, dataset: &str) -> Vec<String> {
    vec![
        topics::mesh(dataset),
        topics::quarantine(dataset),
        topics::dlq(source),
        topics::DQ_EVENTS.to_owned(),
    ]
}
