//! Memory stays bounded while the mesh broker is unreachable (DESIGN §7 backpressure), and
//! nothing is lost once it is back.
//!
//! Source topic on the shared broker; the mesh is a private broker behind a fault-injecting
//! proxy. The service runs with small limits; the proxy blackholes the mesh (connections stay
//! open, nothing moves: a hung broker), a backlog many times the limits is produced, and the
//! service's RSS (`VmRSS` in /proc/<pid>/status) is sampled.
//!
//! The bound, from the config (`LimitsConfig` documents the same sum):
//!
//! - baseline RSS, measured after a first batch went through;
//! - `max_in_flight_bytes` × 3: records awaiting acknowledgement, the source copy and up to two
//!   outputs each (headers make an output a bit larger than its source record; pass records
//!   have one output);
//! - `fetch_queue_kbytes`: librdkafka's prefetch queue (`queued.max.messages.kbytes`; one
//!   partition here);
//! - `max.partition.fetch.bytes`: one fetch response being parsed (librdkafka default 1 MiB);
//! - `SLACK`: allocator fragmentation, thread stacks, librdkafka buffers.
//!
//! An unbounded consumer would hold the whole backlog (40 MB here) plus its outputs: with the
//! limits raised to 1 GB / 1 000 000 records this test sees ~88 MiB against a ~52 MiB bound.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use summit_envelope::{SourceCoordinates, event_id, headers, topics};
use summit_test_support::fault_proxy::Fault;
use summit_test_support::kafka::{self, ProxiedBroker};
use summit_test_support::{Endpoints, unique_name};

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");
const CLUSTER: &str = "backpressure";

const MAX_IN_FLIGHT_RECORDS: u64 = 1000;
const MAX_IN_FLIGHT_BYTES: u64 = 1024 * 1024;
const FETCH_QUEUE_KBYTES: u64 = 1024;
const MAX_PARTITION_FETCH_BYTES: u64 = 1024 * 1024;
const SLACK: u64 = 16 * 1024 * 1024;

/// Records before the fault (they must all come through: the service works) and while it lasts.
const FIRST_BATCH: u64 = 2_000;
const BACKLOG: u64 = 40_000;
const VALUE_BYTES: usize = 1024;

const RULES: &str = r#"
name: backpressure
rules:
  - { id: amount-nonnegative, field: amount, kind: range, severity: hard, params: { min: 0 } }
"#;

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn produce(producer: &FutureProducer, topic: &str, from: u64, count: u64) {
    let pad = "x".repeat(VALUE_BYTES - 40);
    let mut deliveries = Vec::with_capacity(count as usize);
    for n in from..from + count {
        let value = format!(r#"{{"amount": {n}, "pad": "{pad}"}}"#);
        let key = format!("k{}", n % 97);
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(&key)
            .payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => panic!("enqueue source record {n}: {error}"),
        }
    }
    for delivery in deliveries {
        let acked = delivery.await.expect("delivery future");
        assert!(acked.is_ok(), "source record not acknowledged: {acked:?}");
    }
}

/// The group's committed offset of partition 0, read without joining the group.
async fn committed(bootstrap: String, group: String, topic: String) -> Option<i64> {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .ok()?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&topic, 0);
        let offsets = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .ok()?;
        match offsets.find_partition(&topic, 0)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    })
    .await
    .ok()
    .flatten()
}

/// Distinct event ids on `topic` (read from the beginning) until `expected` are all there or
/// `timeout`.
async fn mesh_ids(
    bootstrap: String,
    topic: String,
    expected: HashSet<String>,
    timeout: Duration,
) -> HashSet<String> {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique_name("bp-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("offset");
        consumer.assign(&list).expect("assign");
        let mut seen = HashSet::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !expected.iter().all(|id| seen.contains(id)) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200))
                && let Some(id) = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == headers::EVENT_ID))
                    .and_then(|h| h.value)
            {
                seen.insert(String::from_utf8_lossy(id).into_owned());
            }
        }
        seen
    })
    .await
    .expect("reader thread")
}

/// The admin address the service logs once its port is bound.
async fn admin_addr(log: &std::path::Path) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains("admin server listening"))
        {
            if let Some(rest) = line.split("admin_addr").nth(1) {
                let addr: String = rest
                    .trim_start_matches(['"', ':', '='])
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                if let Ok(addr) = addr.parse() {
                    return addr;
                }
            }
        }
        assert!(Instant::now() < deadline, "no admin address logged: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `name`'s first sample on the admin port's `/metrics`, if it is there.
async fn metric(admin: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_mesh_is_blackholed() {
    let shared = Endpoints::from_env();
    let mesh = ProxiedBroker::start().await.expect("private tansu starts");
    let mesh_endpoints = mesh.endpoints(&shared);
    let source = kafka::create_topic(&shared, "backpressure", 1)
        .await
        .expect("shared tansu reachable");
    let dataset = unique_name("bp-ds");
    for topic in [
        topics::mesh(&dataset),
        topics::quarantine(&dataset),
        topics::dlq(&source),
        topics::DQ_EVENTS.to_owned(),
    ] {
        kafka::create_named_topic(&mesh_endpoints, &topic, 1)
            .await
            .expect("mesh topic");
    }
    let dir = std::env::temp_dir().join(unique_name("backpressure"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yaml"), RULES).expect("rules");
    let group = unique_name("bp-group");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka: {{ bootstrap_servers: \"{}\", group_id: {group}, cluster_name: {CLUSTER} }}\n\
             mesh: {{ bootstrap_servers: \"{}\" }}\n\
             delivery: {{ commit_interval: 100ms }}\n\
             service: {{ shutdown_grace: 5s }}\n\
             admin: {{ listen: \"127.0.0.1:0\" }}\n\
             limits: {{ max_in_flight_records: {MAX_IN_FLIGHT_RECORDS}, \
             max_in_flight_bytes: {MAX_IN_FLIGHT_BYTES}, fetch_queue_kbytes: {FETCH_QUEUE_KBYTES} }}\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, rules: rules.yaml }}\n",
            shared.kafka_bootstrap,
            mesh.bootstrap()
        ),
    )
    .expect("config");
    let log: PathBuf = dir.join("service.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(BINARY)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn,kafka_consumer=info,summit_ingest=info")
        // Logs (JSON lines) go to stdout, errors before logging starts to stderr: keep both.
        .stdout(log_file.try_clone().expect("log file handle"))
        .stderr(log_file)
        .spawn()
        .expect("service starts");
    let mut child = Killed(child);
    let pid = child.0.id();
    let tail = || std::fs::read_to_string(&log).unwrap_or_default();

    let producer: FutureProducer = kafka::client_config(&shared)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let total = FIRST_BATCH + BACKLOG;
    let ids: Vec<String> = (0..total as i64)
        .map(|offset| {
            event_id(&SourceCoordinates::Kafka {
                cluster: CLUSTER.to_owned(),
                topic: source.clone(),
                partition: 0,
                offset,
            })
            .to_string()
        })
        .collect();

    // The mesh works: the first batch comes through and is committed.
    produce(&producer, &source, 0, FIRST_BATCH).await;
    let first: HashSet<String> = ids[..FIRST_BATCH as usize].iter().cloned().collect();
    let seen = mesh_ids(
        mesh.bootstrap(),
        topics::mesh(&dataset),
        first.clone(),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        first.is_subset(&seen),
        "first batch: {} of {FIRST_BATCH} arrived; log:\n{}",
        first.intersection(&seen).count(),
        tail()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(
        shared.kafka_bootstrap.clone(),
        group.clone(),
        source.clone(),
    )
    .await
        != Some(FIRST_BATCH as i64)
    {
        assert!(
            Instant::now() < deadline,
            "first batch not committed; log:\n{}",
            tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin = admin_addr(&log).await;
    let baseline = rss_bytes(pid).expect("service RSS readable");
    let bound = baseline
        + 3 * MAX_IN_FLIGHT_BYTES
        + FETCH_QUEUE_KBYTES * 1024
        + MAX_PARTITION_FETCH_BYTES
        + SLACK;

    // The mesh hangs; a backlog of 40× the byte limit arrives at the source.
    mesh.proxy.set_fault(Fault::Blackhole);
    produce(&producer, &source, FIRST_BATCH, BACKLOG).await;
    let mut peak = 0;
    let (mut peak_records, mut peak_bytes) = (0.0f64, 0.0f64);
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "service exited while the mesh was blackholed; log:\n{}",
            tail()
        );
        peak = peak.max(rss_bytes(pid).expect("service RSS readable"));
        if let Some(records) = metric(admin, "summit_inflight_records").await {
            peak_records = peak_records.max(records);
        }
        if let Some(bytes) = metric(admin, "summit_inflight_bytes").await {
            peak_bytes = peak_bytes.max(bytes);
        }
    }
    let paused = metric(admin, "summit_partitions_paused").await;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "backpressure: baseline RSS {:.1} MiB, peak while blackholed {:.1} MiB, bound {:.1} MiB, \
         backlog {:.1} MiB; in flight at most {peak_records} records / {peak_bytes} bytes; \
         partitions paused: {paused:?}",
        mib(baseline),
        mib(peak),
        mib(bound),
        mib(BACKLOG * VALUE_BYTES as u64)
    );
    // The service says it paused, and its budget held: fetching stops once a limit is reached,
    // so at most one record (the one that reached it) goes past the byte limit.
    assert_eq!(paused, Some(1.0), "the one source partition is paused");
    assert!(
        peak_records > 0.0 && peak_records <= MAX_IN_FLIGHT_RECORDS as f64,
        "in-flight records {peak_records}"
    );
    assert!(
        peak_bytes <= (MAX_IN_FLIGHT_BYTES + 2 * VALUE_BYTES as u64) as f64,
        "in-flight bytes {peak_bytes}"
    );
    assert!(
        peak <= bound,
        "RSS {:.1} MiB exceeded the bound {:.1} MiB (baseline {:.1} MiB)",
        mib(peak),
        mib(bound),
        mib(baseline)
    );
    // Nothing was acknowledged by the hung mesh, so nothing past the first batch is committed:
    // the service held its position instead of skipping or buffering the backlog away.
    assert_eq!(
        committed(
            shared.kafka_bootstrap.clone(),
            group.clone(),
            source.clone()
        )
        .await,
        Some(FIRST_BATCH as i64),
        "committed offset moved while the mesh was blackholed"
    );

    // The mesh is back: everything arrives, once per event id, and offsets reach the end.
    mesh.proxy.set_fault(Fault::None);
    let expected: HashSet<String> = ids.iter().cloned().collect();
    let seen = mesh_ids(
        mesh.bootstrap(),
        topics::mesh(&dataset),
        expected.clone(),
        Duration::from_secs(180),
    )
    .await;
    let missing = expected.difference(&seen).count();
    assert_eq!(
        missing,
        0,
        "{missing} records missing after the fault; log:\n{}",
        tail()
    );
    assert!(
        seen.is_subset(&expected),
        "unexpected event ids on the mesh"
    );
    assert_eq!(
        metric(admin, "summit_partitions_paused").await,
        Some(0.0),
        "fetching resumed"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(
        shared.kafka_bootstrap.clone(),
        group.clone(),
        source.clone(),
    )
    .await
        != Some(total as i64)
    {
        assert!(
            Instant::now() < deadline,
            "offsets did not reach {total}; log:\n{}",
            tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(child);
    mesh.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
