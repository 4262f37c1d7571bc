//! Ingest benchmark (issue 5): the `kafka-consumer` binary against a raw rdkafka pipe on the
//! same data, then ingest latency at a steady paced rate. Prints its figures; asserts nothing
//! about speed.
//!
//! Each phase uses a private tansu broker (memory storage, started here, killed at the end) so
//! the shared broker is not filled and every run starts empty. Values are registry-framed Avro
//! (~500 bytes) under a per-run subject in the project's registry (`SUMMIT_REGISTRY_URL`).
//!
//! Phases:
//! 1. load `BENCH_EVENTS` (default 200 000) events: 1 % soft_fail, 0.1 % hard_fail, 0.1 % poison;
//! 2. raw pipe: StreamConsumer → FutureProducer copy of the source topic, no decode/validate;
//! 3. the service binary on the same topic until every event is accounted for;
//! 4. on a fresh broker: the service running while a producer paces `BENCH_RATE` events/s
//!    (default 20 000) for `BENCH_PACED_SECS` (default 15); latency per record = the time the
//!    bench's reader sees the output minus the source record's timestamp (`summit-event-time`).
//!
//! Throughput is counted from the first output the reader sees to the last one, so the consumer
//! group join (~3 s on tansu) is left out of both the raw pipe's and the service's figure.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use summit_envelope::{headers, now_millis, topics};
use summit_schema::{RegistryClient, SchemaDefinition, encode_avro};
use summit_test_support::{Endpoints, kafka, unique_name};

/// The service binary runs on mimalloc; the raw pipe in this process does too, so the baseline
/// is not slowed by glibc malloc where the service is not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");
const CLUSTER: &str = "bench";

const SCHEMA: &str = r#"{
  "type": "record", "name": "BenchOrder", "namespace": "summit.bench",
  "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "customer_id", "type": "string"},
    {"name": "amount_cents", "type": "long"},
    {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP", "CHF"]}},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "channel", "type": ["null", "string"], "default": null},
    {"name": "note", "type": "string"}
  ]
}"#;

/// Six rules of the kinds a real orders rule set has; `amount_cents` drives the mix.
const RULES: &str = r#"
name: bench-orders
rules:
  - { id: order-id, field: order_id, kind: required, severity: hard }
  - { id: amount-nonnegative, field: amount_cents, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-plausible, field: amount_cents, kind: range, severity: soft, params: { max: 1000000 } }
  - { id: currency, field: currency, kind: in_set, severity: hard, params: { values: [EUR, USD, GBP, CHF] } }
  - { id: customer, field: customer_id, kind: regex, severity: soft, params: { pattern: '^c-[0-9]+$' } }
  - { id: created, field: created_at, kind: range, severity: soft, params: { min: "2020-01-01T00:00:00Z" } }
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    Soft,
    Hard,
    Poison,
}

/// 1 % soft, 0.1 % hard, 0.1 % poison, spread evenly.
fn kind_of(index: u64) -> Kind {
    match (index % 1000, index % 100) {
        (7, _) => Kind::Hard,
        (13, _) => Kind::Poison,
        (_, 42) => Kind::Soft,
        _ => Kind::Good,
    }
}

struct Encoder {
    schema: Schema,
    id: u32,
    note: String,
}

impl Encoder {
    fn payload(&self, index: u64) -> Result<Vec<u8>> {
        let kind = kind_of(index);
        if kind == Kind::Poison {
            // Not registry framing (magic byte 0): undecodable, goes to the DLQ.
            return Ok(vec![0xFF; 480]);
        }
        let amount = match kind {
            Kind::Hard => -100,
            Kind::Soft => 5_000_000,
            _ => 1_000 + (index % 50_000) as i64,
        };
        let value = Avro::Record(vec![
            ("order_id".into(), Avro::String(format!("o-{index:010}"))),
            (
                "customer_id".into(),
                Avro::String(format!("c-{}", index % 9973)),
            ),
            ("amount_cents".into(), Avro::Long(amount)),
            ("currency".into(), Avro::Enum(1, "USD".into())),
            ("created_at".into(), Avro::TimestampMillis(now_millis())),
            (
                "channel".into(),
                Avro::Union(1, Box::new(Avro::String("web".into()))),
            ),
            ("note".into(), Avro::String(self.note.clone())),
        ]);
        Ok(encode_avro(self.id, &self.schema, value)?)
    }
}

/// A private tansu broker on memory storage, killed on drop.
struct Tansu {
    child: Child,
    bootstrap: String,
}

impl Tansu {
    async fn start() -> Result<Self> {
        let bin = std::env::var("SUMMIT_TANSU_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dev/cache/tansu/tansu").to_owned()
        });
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting tansu from {bin}"))?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("tansu did not listen on {addr} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            bootstrap: addr.to_string(),
        })
    }

    fn endpoints(&self) -> Endpoints {
        Endpoints {
            kafka_bootstrap: self.bootstrap.clone(),
            ..Endpoints::from_env()
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn producer(endpoints: &Endpoints) -> Result<FutureProducer> {
    Ok(kafka::client_config(endpoints)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "200000")
        .create()?)
}

/// Sends without waiting per record; waits for the oldest acks when librdkafka's queue is full.
struct Sender {
    producer: FutureProducer,
    pending: VecDeque<DeliveryFuture>,
    window: usize,
}

impl Sender {
    fn new(producer: FutureProducer, window: usize) -> Self {
        Self {
            producer,
            pending: VecDeque::new(),
            window,
        }
    }

    async fn send(&mut self, mut record: FutureRecord<'_, [u8], [u8]>) -> Result<()> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.ack_oldest().await?;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        while self.pending.len() > self.window {
            self.ack_oldest().await?;
        }
        Ok(())
    }

    async fn ack_oldest(&mut self) -> Result<()> {
        match self.pending.pop_front() {
            Some(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(error.into()),
                Err(_) => bail!("producer dropped a delivery"),
            },
            None => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(())
            }
        }
    }

    async fn finish(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.ack_oldest().await?;
        }
        Ok(())
    }
}

/// What the reader saw on the output topics.
#[derive(Debug, Default)]
struct Seen {
    first: Option<Instant>,
    last: Option<Instant>,
    /// Smallest and largest CreateTime of the counted outputs: when the pipe or the service
    /// handed its first and last output to librdkafka. Independent of the reader's own lag.
    first_created_ms: Option<i64>,
    last_created_ms: Option<i64>,
    accounted: u64,
    mesh: u64,
    quarantine: u64,
    dlq: u64,
    hard: u64,
    /// Reader-seen time minus `summit-event-time`, for mesh and quarantine records at or after
    /// `latency_from_ms`.
    latency_seen_ms: Vec<i64>,
    /// Output record's CreateTime (set when the service handed it to librdkafka) minus
    /// `summit-event-time`.
    latency_produced_ms: Vec<i64>,
}

#[derive(Debug, Clone, Copy)]
enum Count {
    /// Every record of the topics counts once (the raw copy).
    Records,
    /// Distinct `summit-event-id`s on mesh / quarantine / DLQ / dq.events (hard_fail only).
    EventIds { latency_from_ms: i64 },
}

fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Reads `topics` from the beginning on its own thread until `expected` are accounted for or
/// `timeout` passes.
fn spawn_reader(
    bootstrap: String,
    topics_to_read: Vec<String>,
    expected: u64,
    count: Count,
    timeout: Duration,
) -> std::thread::JoinHandle<Result<Seen>> {
    // Measuring latency, the reader answers as soon as anything is there (5 ms fetch wait).
    // Measuring throughput (rates come from output CreateTime, not from when the reader sees
    // them) it waits longer: a 5 ms reader of 16 partitions cost the shared broker ~4 µs per
    // event, charged to whichever side was running.
    let measures_latency =
        matches!(count, Count::EventIds { latency_from_ms } if latency_from_ms != i64::MAX);
    let fetch_wait = if measures_latency {
        "5".to_owned()
    } else {
        std::env::var("BENCH_READER_WAIT_MS").unwrap_or_else(|_| "100".to_owned())
    };
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique_name("bench-reader"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", &fetch_wait)
            .create()?;
        let mut list = TopicPartitionList::new();
        for topic in &topics_to_read {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    list.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                }
            }
        }
        consumer.assign(&list)?;
        let mesh_prefix = topics::mesh("");
        let quarantine_prefix = topics::quarantine("");
        let dlq_prefix = topics::dlq("");
        let mut ids: HashSet<String> = HashSet::new();
        let mut seen = Seen::default();
        let deadline = Instant::now() + timeout;
        while seen.accounted < expected && Instant::now() < deadline {
            let Some(received) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = received?;
            let now = Instant::now();
            let created = message.timestamp().to_millis();
            match count {
                Count::Records => seen.accounted += 1,
                Count::EventIds { latency_from_ms } => {
                    let topic = message.topic();
                    let dq = header(&message, headers::DQ);
                    let data = if topic.starts_with(&mesh_prefix) {
                        seen.mesh += 1;
                        true
                    } else if topic.starts_with(&quarantine_prefix) {
                        seen.quarantine += 1;
                        true
                    } else if topic.starts_with(&dlq_prefix) {
                        seen.dlq += 1;
                        false
                    } else if dq == Some("hard_fail") {
                        seen.hard += 1;
                        false
                    } else {
                        continue;
                    };
                    if let Some(id) = header(&message, headers::EVENT_ID)
                        && ids.insert(id.to_owned())
                    {
                        seen.accounted += 1;
                    }
                    let event_time =
                        header(&message, headers::EVENT_TIME).and_then(|v| v.parse::<i64>().ok());
                    if data
                        && let Some(event_time) = event_time
                        && event_time >= latency_from_ms
                    {
                        seen.latency_seen_ms.push(now_millis() - event_time);
                        if let Some(produced) = created {
                            seen.latency_produced_ms.push(produced - event_time);
                        }
                    }
                }
            }
            // Only counted outputs get here (soft_fail dq.events records `continue` above).
            seen.first.get_or_insert(now);
            seen.last = Some(now);
            if let Some(created) = created {
                seen.first_created_ms =
                    Some(seen.first_created_ms.map_or(created, |f| f.min(created)));
                seen.last_created_ms =
                    Some(seen.last_created_ms.map_or(created, |l| l.max(created)));
            }
        }
        Ok(seen)
    })
}

fn join_reader(handle: std::thread::JoinHandle<Result<Seen>>) -> Result<Seen> {
    match handle.join() {
        Ok(seen) => seen,
        Err(_) => bail!("reader thread panicked"),
    }
}

/// Events/s from the first to the last output the reader saw.
fn rate_seen(count: u64, seen: &Seen) -> f64 {
    match (seen.first, seen.last) {
        (Some(first), Some(last)) if last > first => count as f64 / (last - first).as_secs_f64(),
        _ => f64::NAN,
    }
}

/// Events/s from the first to the last output's CreateTime.
fn rate_created(count: u64, seen: &Seen) -> f64 {
    match (seen.first_created_ms, seen.last_created_ms) {
        (Some(first), Some(last)) if last > first => count as f64 * 1000.0 / (last - first) as f64,
        _ => f64::NAN,
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// What every service run of the bench shares.
struct ServiceConfig<'a> {
    dir: &'a Path,
    registry: &'a str,
    source: &'a str,
    dataset: &'a str,
    subject: &'a str,
    /// `key=value,key=value` for `kafka.consumer_properties` (`BENCH_CONSUMER_PROPERTIES`).
    consumer_properties: String,
}

struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(config: &ServiceConfig<'_>, bootstrap: &str) -> Result<Self> {
        let ServiceConfig {
            dir,
            registry,
            source,
            dataset,
            subject,
            ..
        } = *config;
        let properties: Vec<String> = config
            .consumer_properties
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| format!("\"{}\": \"{}\"", k.trim(), v.trim()))
            .collect();
        let producer_properties: Vec<String> = std::env::var("BENCH_PRODUCER_PROPERTIES")
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| format!("\"{}\": \"{}\"", k.trim(), v.trim()))
            .collect();
        let producer_properties = producer_properties.join(", ");
        std::fs::write(dir.join("rules.yaml"), RULES)?;
        let config = dir.join(format!("{dataset}.yaml"));
        let group = unique_name("bench-service");
        let properties = properties.join(", ");
        std::fs::write(
            &config,
            format!(
                "service: {{ shutdown_grace: 10s }}\n\
                 admin: {{ listen: \"127.0.0.1:0\" }}\n\
                 kafka: {{ bootstrap_servers: \"{bootstrap}\", group_id: {group}, cluster_name: {CLUSTER}, \
                 consumer_properties: {{ {properties} }} }}\n\
                 mesh: {{ producer_properties: {{ {producer_properties} }} }}\n\
                 schema_registry: {{ url: \"{registry}\" }}\n\
                 routes:\n  - {{ topics: [{source}], dataset: {dataset}, subject: {subject}, rules: rules.yaml }}\n"
            ),
        )?;
        let log = dir.join(format!("{dataset}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(BINARY)
            .arg("--config")
            .arg(&config)
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

    /// SIGTERM, then wait for the exit (it drains and commits).
    fn stop(mut self) -> Result<()> {
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

fn output_topics(source: &str, dataset: &str) -> Vec<String> {
    vec![
        topics::mesh(dataset),
        topics::quarantine(dataset),
        topics::dlq(source),
        topics::DQ_EVENTS.to_owned(),
    ]
}

async fn create_topics(endpoints: &Endpoints, names: &[String], partitions: i32) -> Result<()> {
    for name in names {
        kafka::create_named_topic(endpoints, name, partitions).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // The raw pipe runs as a child process of this binary, like the service, so each side's
    // CPU time is its own process's (the reader's librdkafka threads live in this one).
    if let Ok(args) = std::env::var(RAW_PIPE_ROLE) {
        return raw_pipe_child(&args).await;
    }
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let events = env_u64("BENCH_EVENTS", 200_000);
    let partitions = env_u64("BENCH_PARTITIONS", 4) as i32;
    let paced_rate = env_u64("BENCH_RATE", 20_000);
    let paced_secs = env_u64("BENCH_PACED_SECS", 15);
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
    let sample = encoder.payload(1)?.len();
    println!(
        "ingest bench: {events} events, {partitions} partitions, Avro value {sample} bytes \
         (registry subject {subject}, id {id}); load average at start: {}",
        load_average()
    );

    let source = "bench.orders".to_owned();
    let dataset = "bench_orders";
    let service_config = ServiceConfig {
        dir: &dir,
        registry: &base.schema_registry,
        source: &source,
        dataset,
        subject: &subject,
        consumer_properties: std::env::var("BENCH_CONSUMER_PROPERTIES").unwrap_or_default(),
    };
    if !service_config.consumer_properties.is_empty() {
        println!(
            "service kafka.consumer_properties: {}",
            service_config.consumer_properties
        );
    }
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "throughput,latency".into());
    if phases.contains("throughput") {
        throughput(events, partitions, &encoder, &service_config).await?;
    }
    if phases.contains("latency") {
        latency(
            paced_rate,
            paced_secs,
            partitions,
            &encoder,
            &service_config,
        )
        .await?;
    }
    if std::env::var_os("BENCH_SERVICE_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("service logs kept in {}", dir.display());
    }
    // The subject is this run's own; leave the shared registry as it was.
    if let Err(error) = registry.delete_subject(&subject).await {
        println!("note: could not delete registry subject {subject}: {error}");
    }
    Ok(())
}

/// Load, then the raw pipe and the service on the same data.
async fn throughput(
    events: u64,
    partitions: i32,
    encoder: &Encoder,
    service_config: &ServiceConfig<'_>,
) -> Result<()> {
    let (source, dataset) = (service_config.source, service_config.dataset);
    let copy = "bench.raw-copy".to_owned();
    // Each side gets a fresh broker loaded with the same records: tansu's memory storage only
    // grows, and a second phase on the first phase's broker ran measurably slower.
    let (broker, load_secs) = loaded_broker(
        events,
        partitions,
        encoder,
        source,
        std::slice::from_ref(&copy),
    )
    .await?;
    let mix: Vec<Kind> = (0..events).map(kind_of).collect();
    let count = |k: Kind| mix.iter().filter(|m| **m == k).count();
    println!(
        "load: {events} events in {load_secs:.2} s ({:.0}/s); good {} soft {} hard {} poison {}",
        events as f64 / load_secs,
        count(Kind::Good),
        count(Kind::Soft),
        count(Kind::Hard),
        count(Kind::Poison)
    );

    // Phase 2: the raw pipe as the target defines it, then again with the provenance headers
    // every mesh record carries (DESIGN §3), each on its own freshly loaded broker.
    let plain = raw_phase(&broker, source, &copy, events, RawHeaders::Source).await?;
    drop(broker);
    let (broker, _) = loaded_broker(
        events,
        partitions,
        encoder,
        source,
        std::slice::from_ref(&copy),
    )
    .await?;
    let with_headers = raw_phase(&broker, source, &copy, events, RawHeaders::Design).await?;
    let (raw_rate, raw_cpu, raw_broker_cpu) = plain;

    // Phase 3: the service on the same records, on a fresh broker.
    drop(broker);
    let (broker, _) = loaded_broker(
        events,
        partitions,
        encoder,
        source,
        &output_topics(source, dataset),
    )
    .await?;
    let endpoints = broker.endpoints();
    let reader = spawn_reader(
        endpoints.kafka_bootstrap.clone(),
        output_topics(source, dataset),
        events,
        Count::EventIds {
            latency_from_ms: i64::MAX,
        },
        Duration::from_secs(600),
    );
    let service_started = Instant::now();
    let broker_cpu_before = cpu_seconds(broker.child.id());
    let service = Service::start(service_config, &endpoints.kafka_bootstrap)?;
    let seen = join_reader(reader)?;
    let wall = service_started.elapsed().as_secs_f64();
    let service_cpu = cpu_seconds(service.child.id());
    let service_broker_cpu = cpu_seconds(broker.child.id()) - broker_cpu_before;
    service.stop()?;
    let service_rate = rate_created(seen.accounted, &seen);
    println!(
        "service (kafka-consumer binary, Avro + registry, 6 rules): {} of {events} accounted \
         (mesh {}, quarantine {}, hard_fail dq.events {}, dlq {}); {service_rate:.0} events/s \
         (first to last output CreateTime); {:.0} events/s (reader: first to last output seen); \
         {:.0} events/s over {wall:.1} s wall incl. start-up and group join; load {}",
        seen.accounted,
        seen.mesh,
        seen.quarantine,
        seen.hard,
        seen.dlq,
        rate_seen(seen.accounted, &seen),
        seen.accounted as f64 / wall,
        load_average()
    );
    println!(
        "ratio service/raw: {:.2} (target >= 0.70); service/raw with DESIGN headers: {:.2}",
        service_rate / raw_rate,
        service_rate / with_headers.0
    );
    let per_event = |seconds: f64| seconds * 1e6 / events as f64;
    println!(
        "cpu per event (process user+sys / {events}): raw pipe {:.1} µs, with headers {:.1} µs, \
         service {:.1} µs (incl. start-up); broker during those phases {:.1} / {:.1} / {:.1} µs",
        per_event(raw_cpu),
        per_event(with_headers.1),
        per_event(service_cpu),
        per_event(raw_broker_cpu),
        per_event(with_headers.2),
        per_event(service_broker_cpu),
    );
    if seen.accounted < events {
        println!(
            "WARNING: {} events not accounted for",
            events - seen.accounted
        );
    }
    drop(broker);
    Ok(())
}

/// A fresh broker with `events` records in `source` and the empty `outputs` topics (all with
/// `partitions` partitions); how long loading took.
async fn loaded_broker(
    events: u64,
    partitions: i32,
    encoder: &Encoder,
    source: &str,
    outputs: &[String],
) -> Result<(Tansu, f64)> {
    let broker = Tansu::start().await?;
    let endpoints = broker.endpoints();
    create_topics(&endpoints, &[source.to_owned()], partitions).await?;
    create_topics(&endpoints, outputs, partitions).await?;
    let started = Instant::now();
    let mut sender = Sender::new(producer(&endpoints)?, 100_000);
    for index in 0..events {
        send_event(&mut sender, encoder, source, index).await?;
    }
    sender.finish().await?;
    Ok((broker, started.elapsed().as_secs_f64()))
}

/// Event `index` of the bench data (its payload and its key, one of 9973) to `source`.
async fn send_event(
    sender: &mut Sender,
    encoder: &Encoder,
    source: &str,
    index: u64,
) -> Result<()> {
    let payload = encoder.payload(index)?;
    let key = format!("c-{}", index % 9973);
    sender
        .send(
            FutureRecord::to(source)
                .key(key.as_bytes())
                .payload(payload.as_slice()),
        )
        .await
}

/// On a fresh broker: the service runs while a producer paces `rate` events/s.
async fn latency(
    paced_rate: u64,
    paced_secs: u64,
    partitions: i32,
    encoder: &Encoder,
    service_config: &ServiceConfig<'_>,
) -> Result<()> {
    let (source, dataset) = (service_config.source, service_config.dataset);
    let broker = Tansu::start().await?;
    let endpoints = broker.endpoints();
    create_topics(&endpoints, &[source.to_owned()], partitions).await?;
    create_topics(&endpoints, &output_topics(source, dataset), 1).await?;
    let paced_total = paced_rate * paced_secs;
    let warmup = 200;
    let service = Service::start(service_config, &endpoints.kafka_bootstrap)?;
    // Warm-up: the group has joined and the schema is cached once these are through.
    let mut sender = Sender::new(producer(&endpoints)?, 100_000);
    let reader = spawn_reader(
        endpoints.kafka_bootstrap.clone(),
        output_topics(source, dataset),
        warmup,
        Count::Records,
        Duration::from_secs(60),
    );
    for index in 0..warmup {
        let payload = encoder.payload(index * 1000 + 500)?;
        sender
            .send(
                FutureRecord::to(source)
                    .key(&b"warmup"[..])
                    .payload(payload.as_slice()),
            )
            .await?;
    }
    sender.finish().await?;
    let warm = join_reader(reader)?;
    if warm.accounted < warmup {
        bail!(
            "warm-up did not come through; service log: {}",
            service.log.display()
        );
    }
    let paced_from_ms = now_millis();
    let reader = spawn_reader(
        endpoints.kafka_bootstrap.clone(),
        output_topics(source, dataset),
        warmup + paced_total,
        Count::EventIds {
            latency_from_ms: paced_from_ms,
        },
        Duration::from_secs(paced_secs + 120),
    );
    let pace_started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while sent < paced_total {
        tick.tick().await;
        let due =
            ((pace_started.elapsed().as_secs_f64() * paced_rate as f64) as u64).min(paced_total);
        while sent < due {
            send_event(&mut sender, encoder, source, sent).await?;
            sent += 1;
        }
    }
    sender.finish().await?;
    let achieved = sent as f64 / pace_started.elapsed().as_secs_f64();
    let paced = join_reader(reader)?;
    service.stop()?;
    let mut seen_ms = paced.latency_seen_ms.clone();
    seen_ms.sort_unstable();
    let mut produced_ms = paced.latency_produced_ms.clone();
    produced_ms.sort_unstable();
    println!(
        "paced: {sent} events at {achieved:.0}/s (target {paced_rate}/s) for {paced_secs} s; \
         {} of {} accounted; load {}",
        paced.accounted,
        warmup + paced_total,
        load_average()
    );
    println!(
        "ingest latency, source timestamp -> output seen by the bench reader (mesh+quarantine, \
         n={}): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms (target p99 < 250 ms, aim < 20 ms)",
        seen_ms.len(),
        percentile(&seen_ms, 0.50),
        percentile(&seen_ms, 0.99),
        percentile(&seen_ms, 0.999),
        seen_ms.last().copied().unwrap_or(-1)
    );
    println!(
        "ingest latency, source timestamp -> output CreateTime (service hands it to librdkafka, \
         n={}): p50 {} ms, p99 {} ms, p99.9 {} ms",
        produced_ms.len(),
        percentile(&produced_ms, 0.50),
        percentile(&produced_ms, 0.99),
        percentile(&produced_ms, 0.999)
    );
    drop(broker);
    Ok(())
}

/// Copies `events` records from `source` to `copy` (same partition, key, value, headers) and
/// returns events/s from the first receive to the last acknowledgement.
/// What the raw pipe puts on its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawHeaders {
    /// The source record's headers (none in this bench): the pipe of the target.
    Source,
    /// The eight headers of a mesh record (DESIGN §3), same names and value lengths, built per
    /// record: what the envelope alone costs librdkafka and the broker.
    Design,
}

/// One raw pipe run on `broker`: rate (output CreateTime), pipe CPU seconds, broker CPU seconds.
async fn raw_phase(
    broker: &Tansu,
    source: &str,
    copy: &str,
    events: u64,
    headers: RawHeaders,
) -> Result<(f64, f64, f64)> {
    let endpoints = broker.endpoints();
    let reader = spawn_reader(
        endpoints.kafka_bootstrap.clone(),
        vec![copy.to_owned()],
        events,
        Count::Records,
        Duration::from_secs(300),
    );
    let started = Instant::now();
    let broker_cpu_before = cpu_seconds(broker.child.id());
    let (internal, cpu) = run_raw_pipe_child(&endpoints, source, copy, events, headers)?;
    let seen = join_reader(reader)?;
    let broker_cpu = cpu_seconds(broker.child.id()) - broker_cpu_before;
    let rate = rate_created(seen.accounted, &seen);
    let label = match headers {
        RawHeaders::Source => "raw pipe (StreamConsumer -> FutureProducer, no decode/validate)",
        RawHeaders::Design => "raw pipe + the 8 DESIGN §3 headers per copy (no decode/validate)",
    };
    println!(
        "{label}: {} copied; {rate:.0} events/s (first to last output CreateTime); {:.0} \
         events/s (reader: first to last copy seen); {internal:.0} events/s (pipe: first receive \
         to last ack); {:.1} s wall incl. group join; load {}",
        seen.accounted,
        rate_seen(seen.accounted, &seen),
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok((rate, cpu, broker_cpu))
}

/// Headers shaped like a mesh record's: names of DESIGN §3, values of the same lengths, the
/// per-record ones formatted per record (no event id hashing, no trace parsing).
fn design_headers(message: &BorrowedMessage<'_>) -> OwnedHeaders {
    let source = format!(
        "kafka://{CLUSTER}/{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let event_time = message
        .timestamp()
        .to_millis()
        .unwrap_or_default()
        .to_string();
    let ingest_time = now_millis().to_string();
    let values: [(&str, &str); 8] = [
        (
            headers::TRACEPARENT,
            "00-e0301a7f7766d71df3b474dd7c7930aa-26896f281a85ba57-01",
        ),
        (headers::EVENT_ID, "21cdc678-24f0-5692-848b-1df20accae70"),
        (headers::SOURCE, &source),
        (headers::SCHEMA, "3"),
        (headers::DQ, "pass"),
        (headers::DQ_RULESET, "bench@e9279ab89bd0f9a4"),
        (headers::EVENT_TIME, &event_time),
        (headers::INGEST_TIME, &ingest_time),
    ];
    values
        .iter()
        .fold(OwnedHeaders::new_with_capacity(8), |out, (key, value)| {
            out.insert(Header {
                key,
                value: Some(*value),
            })
        })
}

/// Set in the raw pipe child's environment: `bootstrap,source,copy,events,headers`.
const RAW_PIPE_ROLE: &str = "BENCH_RAW_PIPE_CHILD";

/// User + system CPU seconds of `pid` so far (`/proc/<pid>/stat`, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| cpu_seconds_of_stat(&stat))
        .unwrap_or(f64::NAN)
}

fn cpu_seconds_of_stat(stat: &str) -> f64 {
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// Runs [`raw_pipe`] in a child process; its rate and its own CPU seconds.
fn run_raw_pipe_child(
    endpoints: &Endpoints,
    source: &str,
    copy: &str,
    events: u64,
    headers: RawHeaders,
) -> Result<(f64, f64)> {
    let design = headers == RawHeaders::Design;
    let output = Command::new(std::env::current_exe()?)
        .env(
            RAW_PIPE_ROLE,
            format!(
                "{},{source},{copy},{events},{design}",
                endpoints.kafka_bootstrap
            ),
        )
        .stderr(Stdio::inherit())
        .output()
        .context("running the raw pipe child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("raw pipe child failed ({}): {stdout}", output.status);
    }
    let mut numbers = stdout
        .split_whitespace()
        .filter_map(|word| word.parse::<f64>().ok());
    match (numbers.next(), numbers.next()) {
        (Some(rate), Some(cpu)) => Ok((rate, cpu)),
        _ => bail!("raw pipe child printed no rate and cpu: {stdout}"),
    }
}

async fn raw_pipe_child(args: &str) -> Result<()> {
    let parts: Vec<&str> = args.split(',').collect();
    let [bootstrap, source, copy, events, design] = parts[..] else {
        bail!("{RAW_PIPE_ROLE} must be bootstrap,source,copy,events,design: {args}");
    };
    let headers = if design == "true" {
        RawHeaders::Design
    } else {
        RawHeaders::Source
    };
    let endpoints = Endpoints {
        kafka_bootstrap: bootstrap.to_owned(),
        ..Endpoints::from_env()
    };
    let rate = raw_pipe(&endpoints, source, copy, events.parse()?, headers).await?;
    let cpu = cpu_seconds(std::process::id());
    println!("{rate} {cpu}");
    Ok(())
}

async fn raw_pipe(
    endpoints: &Endpoints,
    source: &str,
    copy: &str,
    events: u64,
    headers: RawHeaders,
) -> Result<f64> {
    let consumer: StreamConsumer =
        kafka::consumer_config(endpoints, &unique_name("bench-raw")).create()?;
    consumer.subscribe(&[source])?;
    // Same producer settings as the mesh producer (idempotent, acks=all, linger 2 ms) and the
    // service's default in-flight window.
    let mut sender = Sender::new(producer(endpoints)?, 20_000);
    let mut first: Option<Instant> = None;
    for _ in 0..events {
        let message = consumer.recv().await?;
        first.get_or_insert_with(Instant::now);
        let mut record = FutureRecord::to(copy)
            .partition(message.partition())
            .payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match headers {
            RawHeaders::Source => {
                if let Some(headers) = message.headers() {
                    record = record.headers(headers.detach());
                }
            }
            RawHeaders::Design => record = record.headers(design_headers(&message)),
        }
        sender.send(record).await?;
    }
    sender.finish().await?;
    let elapsed = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(events as f64 / elapsed)
}
