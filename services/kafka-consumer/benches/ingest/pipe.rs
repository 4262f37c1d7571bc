//! The raw pipe: a StreamConsumer → FutureProducer copy of the source topic with no decode or
//! validation, run as a child process of the bench (like the service) so its CPU time is its
//! own.
//!
//! It does the work the service does around its own: it reads the service's configuration file
//! and takes from it the source consumer's settings (`source_consumer_config`, the service's
//! own function: `DEFAULT_CONSUMER_PROPERTIES`, `limits.fetch_queue_kbytes`,
//! cooperative-sticky, manual commits, ...), the mesh producer's settings
//! ([`mesh_producer_config`]), the in-flight window (`limits.max_in_flight_records`) and the
//! commit interval (`delivery.commit_interval`). Copies are partitioned by key, as the service's
//! outputs are, and offsets are committed synchronously each interval, only up to records
//! whose copy (and every earlier record's copy) was acknowledged.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kafka_consumer::config::Config;
use kafka_consumer::source::source_consumer_config;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use summit_envelope::{headers, now_millis};

use crate::CLUSTER;
use crate::broker::{Sender, cpu_seconds};

/// What the raw pipe puts on its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawHeaders {
    /// The source record's headers (none in this bench): the pipe of the target.
    Source,
    /// The eight headers of a mesh record (DESIGN §3), same names and value lengths, built per
    /// record: what the envelope alone costs librdkafka and the broker.
    Design,
}

/// In the child's environment: the path of the configuration file (its presence makes the
/// bench binary the pipe), then the copy topic, how many records to copy, `design` or `source`.
const CHILD_CONFIG: &str = "BENCH_RAW_PIPE_CONFIG";
const CHILD_COPY: &str = "BENCH_RAW_PIPE_COPY";
const CHILD_EVENTS: &str = "BENCH_RAW_PIPE_EVENTS";
const CHILD_HEADERS: &str = "BENCH_RAW_PIPE_HEADERS";

/// A pipe that has copied nothing for this long gives up (and reports what it copied).
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// What the pipe child reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipeReport {
    /// Events/s from its first receive to its last acknowledgement.
    pub(crate) rate: f64,
    /// Its user + system CPU seconds.
    pub(crate) cpu: f64,
    pub(crate) copied: u64,
    /// Records covered by its last successful commit (sum of committed next offsets).
    pub(crate) committed: u64,
}

/// A running pipe child.
#[derive(Debug)]
pub(crate) struct RawPipe {
    child: Child,
}

impl RawPipe {
    /// Starts a pipe copying `events` records of the route's topic to `copy`, configured by the
    /// service configuration file at `config`.
    pub(crate) fn start(
        config: &Path,
        copy: &str,
        events: u64,
        headers: RawHeaders,
    ) -> Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .env(CHILD_CONFIG, config)
            .env(CHILD_COPY, copy)
            .env(CHILD_EVENTS, events.to_string())
            .env(
                CHILD_HEADERS,
                if headers == RawHeaders::Design {
                    "design"
                } else {
                    "source"
                },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the raw pipe child")?;
        Ok(Self { child })
    }

    /// Waits for the child to finish (it stops once it has copied its records, or after
    /// [`IDLE_LIMIT`] without any) and reads its report.
    pub(crate) async fn finish(self) -> Result<PipeReport> {
        let child = self.child;
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("raw pipe child failed ({}): {stdout}", output.status);
        }
        let numbers: Vec<f64> = stdout
            .split_whitespace()
            .filter_map(|word| word.parse::<f64>().ok())
            .collect();
        match numbers[..] {
            [rate, cpu, copied, committed] => Ok(PipeReport {
                rate,
                cpu,
                copied: copied as u64,
                committed: committed as u64,
            }),
            _ => bail!("raw pipe child printed no rate, cpu, copied, committed: {stdout}"),
        }
    }
}

/// The bench binary as the pipe child, if this process is one: runs it and prints its report.
pub(crate) async fn run_child_if_asked() -> Option<Result<()>> {
    let config = std::env::var_os(CHILD_CONFIG)?;
    Some(child_main(Path::new(&config)).await)
}

async fn child_main(config_path: &Path) -> Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let copy = var(CHILD_COPY)?;
    let events: u64 = var(CHILD_EVENTS)?.parse()?;
    let headers = match var(CHILD_HEADERS)?.as_str() {
        "design" => RawHeaders::Design,
        _ => RawHeaders::Source,
    };
    // As the service reads it (`SUMMIT_` overrides included).
    let config = Config::load(config_path, std::env::vars())?;
    let (rate, copied, committed) = raw_pipe(&config, &copy, events, headers).await?;
    let cpu = cpu_seconds(std::process::id());
    println!("{rate} {cpu} {copied} {committed}");
    Ok(())
}

/// The service's mesh producer settings: `summit_kafka::ProducerSettings::client_config`
/// (private there; keep the two in step): idempotent, `acks=all`, `linger.ms=2`, then
/// `mesh.producer_properties`.
fn mesh_producer_config(config: &Config) -> ClientConfig {
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", config.mesh_bootstrap_servers())
        .set("client.id", format!("{}-raw-pipe", config.instance_id()))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2");
    for (key, value) in &config.mesh.producer_properties {
        producer.set(key, value);
    }
    producer
}

/// Copies `events` records; returns events/s (first receive to last acknowledgement), records
/// copied, records committed.
async fn raw_pipe(
    config: &Config,
    copy: &str,
    events: u64,
    headers: RawHeaders,
) -> Result<(f64, u64, u64)> {
    let consumer: StreamConsumer = source_consumer_config(config).create()?;
    let topics: Vec<&str> = config
        .routes
        .iter()
        .flat_map(|route| route.topics.iter().map(String::as_str))
        .collect();
    consumer.subscribe(&topics)?;
    let window = usize::try_from(config.limits.max_in_flight_records)?;
    let mut sender = Sender::new(mesh_producer_config(config).create()?, window);
    let mut offsets = Offsets::default();
    let mut tick = tokio::time::interval(config.delivery.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut copied, mut first) = (0u64, None::<Instant>);
    let (mut progress_at, mut copied_then) = (Instant::now(), 0u64);
    // The lane of a record, as the service keeps it: the topic name interned once.
    let mut topic: Arc<str> = Arc::from("");
    while copied < events {
        tokio::select! {
            biased;
            _ = tick.tick() => {
                offsets.commit(&consumer, sender.take_acked());
                if copied != copied_then {
                    (progress_at, copied_then) = (Instant::now(), copied);
                } else if progress_at.elapsed() > IDLE_LIMIT {
                    eprintln!("raw pipe: nothing to copy for {IDLE_LIMIT:?}; stopping at {copied}");
                    break;
                }
                tick.reset();
            }
            received = consumer.recv() => match received {
                Ok(message) => {
                    first.get_or_insert_with(Instant::now);
                    if *topic != *message.topic() {
                        topic = Arc::from(message.topic());
                    }
                    let source = (topic.clone(), message.partition(), message.offset());
                    sender.send(copy_of(&message, copy, headers), source).await?;
                    copied += 1;
                }
                // As the service does: a fetch error is reported, the consumer goes on.
                Err(error) => eprintln!("raw pipe: source fetch error: {error}"),
            },
        }
    }
    sender.finish().await?;
    let elapsed = first.map_or(f64::NAN, |f| f.elapsed().as_secs_f64());
    offsets.commit(&consumer, sender.take_acked());
    Ok((copied as f64 / elapsed, copied, offsets.committed_records()))
}

/// A copy of `message` for `copy`: its key, value and headers (or the DESIGN ones); no
/// partition, so librdkafka's partitioner places it by key like the service's outputs.
fn copy_of<'a>(
    message: &'a BorrowedMessage<'_>,
    copy: &'a str,
    headers: RawHeaders,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record = FutureRecord::to(copy).payload(message.payload().unwrap_or_default());
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    match headers {
        RawHeaders::Source => {
            if let Some(headers) = message.headers() {
                record = record.headers(headers.detach());
            }
        }
        RawHeaders::Design => record = record.headers(design_headers(message)),
    }
    record
}

/// Source positions acknowledged and committed, per partition.
#[derive(Debug, Default)]
struct Offsets {
    /// The last source offset whose copy and every earlier one's is acknowledged.
    acked: BTreeMap<(Arc<str>, i32), i64>,
    committed: BTreeMap<(Arc<str>, i32), i64>,
}

impl Offsets {
    /// Commits (synchronously, one round trip, as the service's `KafkaCommitter` does) the next
    /// offset after each newly acknowledged position; nothing when there is none. A failed
    /// commit is reported and retried at the next interval.
    fn commit(
        &mut self,
        consumer: &StreamConsumer,
        acked: impl Iterator<Item = (Arc<str>, i32, i64)>,
    ) {
        for (topic, partition, offset) in acked {
            self.acked.insert((topic, partition), offset);
        }
        let mut list = TopicPartitionList::new();
        for (key, offset) in &self.acked {
            if self.committed.get(key) != Some(offset) {
                let _ = list.add_partition_offset(&key.0, key.1, Offset::Offset(offset + 1));
            }
        }
        if list.count() == 0 {
            return;
        }
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => self.committed.clone_from(&self.acked),
            Err(error) => eprintln!("raw pipe: commit failed (retried next interval): {error}"),
        }
    }

    /// Records committed, for a source whose partitions start at offset 0.
    fn committed_records(&self) -> u64 {
        self.committed
            .values()
            .map(|offset| (offset + 1) as u64)
            .sum()
    }
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
