//! DLQ overload control through Kafka (DESIGN §4): a burst of 10,000 poison records behind a
//! DLQ budget of 500 records/s. Every poison record must reach the DLQ with its payload, the
//! source must be paused while over budget, `dq.events` must hold the first companions one by
//! one and the rest as burst summaries whose counts add up, and the good records behind the
//! burst must reach the mesh and be committed: nothing lost.
//!
//! A private tansu holds every topic, so `dq.events` has this test's records only.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use summit_envelope::{SourceCoordinates, event_id, headers, topics};
use summit_test_support::kafka::ProxiedBroker;
use summit_test_support::{Endpoints, kafka, unique_name};

mod common;
use common::{Output, Service, admin_addr, committed_offset, http_get, metric, read_topics, tail};

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");
const CLUSTER: &str = "burst";
const POISON: i64 = 10_000;
const GOOD: i64 = 100;
/// Well below what the service does unthrottled (about 1,000/s in a debug build here), so
/// the budget, not the service, sets the pace.
const BUDGET_PER_SECOND: i64 = 500;
const COMPANIONS_PER_WINDOW: u64 = 50;

fn poison_payload(index: i64) -> Vec<u8> {
    format!("poison #{index}: not json").into_bytes()
}

async fn produce(endpoints: &Endpoints, source: &str) {
    let producer: FutureProducer = kafka::client_config(endpoints)
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for index in 0..POISON + GOOD {
        let payload = if index < POISON {
            poison_payload(index)
        } else {
            format!(r#"{{"n":{index}}}"#).into_bytes()
        };
        let record = FutureRecord::<str, [u8]>::to(source).payload(&payload);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .expect("queued"),
        );
    }
    for delivery in pending {
        delivery.await.expect("delivered").expect("accepted");
    }
}

fn write_config(dir: &std::path::Path, bootstrap: &str, source: &str, dataset: &str, group: &str) {
    std::fs::write(dir.join("rules.yaml"), "name: none\nrules: []\n").expect("rules");
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "kafka: {{ bootstrap_servers: \"{bootstrap}\", group_id: {group}, cluster_name: {CLUSTER} }}\n\
             delivery: {{ commit_interval: 100ms }}\n\
             admin: {{ listen: \"127.0.0.1:0\", lag_interval: 200ms }}\n\
             dlq: {{ max_records_per_second: {BUDGET_PER_SECOND}, companions_per_window: {COMPANIONS_PER_WINDOW}, companion_window: 1s }}\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, rules: rules.yaml }}\n"
        ),
    )
    .expect("config");
}

fn poison_id(source: &str, offset: i64) -> String {
    event_id(&SourceCoordinates::Kafka {
        cluster: CLUSTER.to_owned(),
        topic: source.to_owned(),
        partition: 0,
        offset,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_poison_records_is_throttled_compacted_and_loses_nothing() {
    let shared = Endpoints::from_env();
    let broker = ProxiedBroker::start().await.expect("private tansu starts");
    let endpoints = broker.endpoints(&shared);
    let source = unique_name("burst");
    let dataset = unique_name("burst-ds");
    for topic in [
        source.clone(),
        topics::mesh(&dataset),
        topics::quarantine(&dataset),
        topics::dlq(&source),
        topics::DQ_EVENTS.to_owned(),
        topics::LINEAGE_EVENTS.to_owned(),
    ] {
        kafka::create_named_topic(&endpoints, &topic, 1)
            .await
            .expect("topic");
    }
    produce(&endpoints, &source).await;

    let dir = std::env::temp_dir().join(unique_name("dlq-burst"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let group = unique_name("burst-group");
    write_config(&dir, &broker.bootstrap(), &source, &dataset, &group);
    let log = dir.join("service.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let started = Instant::now();
    let mut service = Service(
        std::process::Command::new(BINARY)
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .env("RUST_LOG", "warn,kafka_consumer=info,summit_ingest=info")
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("binary starts"),
    );
    let admin = admin_addr(&log).await;

    // While the burst runs: the throttle gauge is seen at 1, then everything is committed.
    let mut seen_throttled = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let total = POISON + GOOD;
    while committed_offset(&endpoints, &group, &source) != Some(total) {
        assert!(
            Instant::now() < deadline,
            "not committed; log:\n{}",
            tail(&log)
        );
        let (_, text) = http_get(admin, "/metrics").await;
        seen_throttled |=
            metric(&text, "summit_dlq_throttled", &[("source", &source)]) == Some(1.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let (_, text) = http_get(admin, "/metrics").await;
    let _ = service.kill();

    let minimum = Duration::from_secs(((POISON - BUDGET_PER_SECOND) / BUDGET_PER_SECOND) as u64);
    assert!(seen_throttled, "summit_dlq_throttled never read 1");
    assert!(
        elapsed >= minimum,
        "the budget was not applied: {elapsed:?} < {minimum:?}"
    );
    let pauses = metric(
        &text,
        "summit_dlq_throttle_pauses_total",
        &[("source", &source)],
    );
    assert!(
        pauses.is_some_and(|n| n >= 1.0),
        "pauses counted: {pauses:?}"
    );

    check_dead_letters(&endpoints, &source);
    let folded = check_dq_events(&endpoints, &source);
    let compacted = metric(
        &text,
        "summit_dlq_companions_compacted_total",
        &[("source", &source), ("kind", "undecodable")],
    );
    assert_eq!(compacted, Some(folded as f64));
    let mesh = read_topics(
        &endpoints,
        &[topics::mesh(&dataset)],
        "read_uncommitted",
        Duration::from_secs(30),
        |read| read.len() as i64 >= GOOD,
    );
    assert_eq!(
        mesh.len() as i64,
        GOOD,
        "every good record in the mesh once"
    );
}

/// Every poison record is in the DLQ once, with its payload byte for byte and its event id.
fn check_dead_letters(endpoints: &Endpoints, source: &str) {
    let dead = read_topics(
        endpoints,
        &[topics::dlq(source)],
        "read_uncommitted",
        Duration::from_secs(60),
        |read| read.len() as i64 >= POISON,
    );
    assert_eq!(dead.len() as i64, POISON);
    let mut ids = HashSet::new();
    for record in &dead {
        let offset: i64 = record
            .header(headers::SOURCE)
            .rsplit('/')
            .next()
            .and_then(|offset| offset.parse().ok())
            .expect("summit-source ends with the offset");
        assert_eq!(record.payload, poison_payload(offset));
        assert_eq!(record.header(headers::EVENT_ID), poison_id(source, offset));
        assert_eq!(record.header(headers::ERROR_KIND), "undecodable");
        ids.insert(offset);
    }
    assert_eq!(
        ids.len() as i64,
        POISON,
        "no poison record twice, none missing"
    );
}

/// `dq.events`: companions written one by one plus the summaries' counts cover the burst
/// exactly, at most `COMPANIONS_PER_WINDOW` single companions per window. Returns the number
/// folded into summaries.
fn check_dq_events(endpoints: &Endpoints, source: &str) -> u64 {
    let events = read_topics(
        endpoints,
        &[topics::DQ_EVENTS.to_owned()],
        "read_uncommitted",
        Duration::from_secs(30),
        |read| summarised(read, source) >= POISON as u64,
    );
    let (summaries, singles): (Vec<&Output>, Vec<&Output>) = events
        .iter()
        .filter(|o| o.header(headers::ERROR_KIND) == "undecodable")
        .partition(|o| !o.header("summit-dlq-summary-count").is_empty());
    let folded: u64 = summaries.iter().map(|o| summary_count(o)).sum();
    let single_ids: HashSet<&str> = singles
        .iter()
        .map(|o| o.header(headers::EVENT_ID))
        .collect();
    assert_eq!(single_ids.len(), singles.len(), "no companion twice");
    assert!(!summaries.is_empty(), "a burst this size is summarised");
    assert_eq!(singles.len() as u64 + folded, POISON as u64);
    let windows = summaries.len() as u64;
    assert!(
        singles.len() as u64 <= COMPANIONS_PER_WINDOW * (windows + 1),
        "{} single companions for {windows} windows",
        singles.len()
    );
    for summary in &summaries {
        let body: serde_json::Value = serde_json::from_slice(&summary.payload).expect("json");
        assert_eq!(body["summary"], "dlq_burst");
        assert_eq!(body["source"], source);
        assert_eq!(body["dlq_topic"], topics::dlq(source));
        let first = body["first_event_id"].as_str().expect("first id");
        assert!(
            !single_ids.contains(first),
            "a folded companion is not also single"
        );
    }
    folded
}

fn summary_count(output: &Output) -> u64 {
    output
        .header("summit-dlq-summary-count")
        .parse()
        .expect("count header")
}

fn summarised(read: &[Output], source: &str) -> u64 {
    read.iter()
        .filter(|o| o.header(headers::ERROR_KIND) == "undecodable")
        .map(|o| match o.header("summit-dlq-summary-count") {
            "" => u64::from(o.header(headers::SOURCE).contains(source)),
            _ => summary_count(o),
        })
        .sum()
}
