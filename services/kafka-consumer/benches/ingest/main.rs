//! Ingest benchmark (issue 5): the `kafka-consumer` binary against a raw rdkafka pipe on the
//! same data, then the ingest latency of both at a steady paced rate, drawn into a PNG. Prints
//! its figures; asserts nothing about speed.
//!
//! Each phase uses a private tansu broker (memory storage, started here, killed at the end) so
//! the shared broker is not filled and every run starts empty. Values are registry-framed Avro
//! (~500 bytes) under a per-run subject in the project's registry (`SUMMIT_REGISTRY_URL`).
//!
//! Phases:
//! 1. load `BENCH_EVENTS` (default 200 000) events: 1 % soft_fail, 0.1 % hard_fail, 0.1 % poison;
//! 2. raw pipe (`pipe.rs`): a child process copying the source topic StreamConsumer →
//!    FutureProducer, no decode/validate, but otherwise doing the service's work: the
//!    service's consumer and producer settings, in-flight window and commit interval, read from
//!    the same configuration file, and offsets committed after the copies are acknowledged;
//!    then again with the 8 DESIGN §3 headers on every copy;
//! 3. the service binary on the same topic until every event is accounted for; the ratios are
//!    printed only when both sides accounted for every record;
//! 4. on a fresh broker each: the raw pipe, then the service, running while a producer paces
//!    `BENCH_RATE` events/s (default 20 000) for `BENCH_PACED_SECS` (default 15); latency per
//!    record = the time the bench's reader sees the output minus the source record's
//!    timestamp. Both distributions go into one chart at `BENCH_PLOT` (relative to the
//!    workspace root; default `services/kafka-consumer/docs/ingest-latency.png`).
//!
//! Throughput is counted from the first output's CreateTime to the last one's, so the
//! consumer group join (~3 s on tansu) is left out of both the raw pipe's and the service's
//! figure.

mod broker;
mod data;
mod latency;
mod pipe;
mod plot;
mod reader;
mod service;
mod throughput;

use anyhow::{Context, Result};
use apache_avro::Schema;
use summit_schema::{RegistryClient, SchemaDefinition};
use summit_test_support::{Endpoints, unique_name};

use crate::broker::load_average;
use crate::data::{Encoder, SCHEMA};
use crate::latency::Paced;
use crate::service::ServiceConfig;

/// The service binary runs on mimalloc; the raw pipe (this binary as a child) does too, so the
/// baseline is not slowed by glibc malloc where the service is not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");
const CLUSTER: &str = "bench";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // The raw pipe runs as a child process of this binary, like the service, so each side's
    // CPU time is its own process's (the reader's librdkafka threads live in this one).
    if let Some(pipe) = pipe::run_child_if_asked().await {
        return pipe;
    }
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let events = env_u64("BENCH_EVENTS", 200_000);
    let partitions = env_u64("BENCH_PARTITIONS", 4) as i32;
    let paced = Paced {
        rate: env_u64("BENCH_RATE", 20_000),
        secs: env_u64("BENCH_PACED_SECS", 15),
        partitions,
    };
    let base = Endpoints::from_env();
    let dir = std::env::temp_dir().join(unique_name("ingest-bench"));
    std::fs::create_dir_all(&dir)?;

    let registry = RegistryClient::new(&base.schema_registry)?;
    let subject = format!("{}-value", unique_name("bench-orders"));
    let id = registry
        .register(&subject, &SchemaDefinition::avro(SCHEMA))
        .await
        .context("registering the bench schema")?;
    let encoder = Encoder {
        schema: Schema::parse_str(SCHEMA)?,
        id,
        note: "n".repeat(400),
    };
    encoder.check_index_layout()?;
    let sample = encoder.payload(1)?.len();
    println!(
        "ingest bench: {events} events, {partitions} partitions, Avro value {sample} bytes \
         (registry subject {subject}, id {id}); load average at start: {}",
        load_average()
    );

    let service_config = ServiceConfig {
        dir: &dir,
        registry: &base.schema_registry,
        source: "bench.orders",
        dataset: "bench_orders",
        subject: &subject,
        consumer_properties: std::env::var("BENCH_CONSUMER_PROPERTIES").unwrap_or_default(),
        producer_properties: std::env::var("BENCH_PRODUCER_PROPERTIES").unwrap_or_default(),
    };
    for (name, value) in [
        (
            "kafka.consumer_properties",
            &service_config.consumer_properties,
        ),
        (
            "mesh.producer_properties",
            &service_config.producer_properties,
        ),
    ] {
        if !value.is_empty() {
            println!("{name} (service and raw pipe): {value}");
        }
    }
    let outcome = run_phases(events, paced, &encoder, &service_config).await;
    if std::env::var_os("BENCH_SERVICE_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("service logs kept in {}", dir.display());
    }
    // The subject is this run's own; leave the shared registry as it was.
    if let Err(error) = registry.delete_subject(&subject).await {
        println!("note: could not delete registry subject {subject}: {error}");
    }
    outcome
}

async fn run_phases(
    events: u64,
    paced: Paced,
    encoder: &Encoder,
    service_config: &ServiceConfig<'_>,
) -> Result<()> {
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "throughput,latency".into());
    if phases.contains("throughput") {
        throughput::throughput(events, paced.partitions, encoder, service_config).await?;
    }
    if phases.contains("latency") {
        latency::latency(paced, encoder, service_config).await?;
    }
    Ok(())
}
