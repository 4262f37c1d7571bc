//! `delivery.mode: exactly_once` with the built binary against the local tansu broker:
//! a committed flow (routing as in effectively_once, the group's committed offsets equal to what
//! was consumed, one lineage epoch per committed transaction with its rule assertions, metrics
//! and readiness on the admin port), an injected abort that is rewound
//! and re-processed, fencing of an instance by a newer process with the same instance id, and
//! `summitctl kafka transactions abort` on a transaction left open by a crashed producer.
//!
//! What these tests do NOT prove: that aborted data is invisible to `read_committed` readers.
//! tansu 0.6 accepts transactions but does not filter aborted batches (nor does librdkafka's
//! mock cluster, DESIGN §8), so outputs of an aborted transaction are visible here and outputs
//! are counted by unique event id, accepting same-id copies. The tests prove the transaction
//! flow (begin / produce / send offsets / commit or abort), that offsets only move with a
//! committed transaction, that an abort is followed by re-processing, and that fencing stops the
//! older process; isolation has to be checked on Apache Kafka, MSK, Confluent or Redpanda.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use summit_envelope::{SourceCoordinates, event_id, headers, topics};
use summit_lineage::RunEvent;
use summit_test_support::{Endpoints, kafka, unique_name};

mod common;
use common::{Output, Service, admin_addr, http_get, metric, read_topics, scrape_until, tail};

const CLUSTER: &str = "test";
const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");

const RULES: &str = r#"
name: payments
rules:
  - { id: amount-nonnegative, field: amount, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-small, field: amount, kind: range, severity: soft, params: { max: 1000 } }
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mesh,
    Quarantine,
    Hard,
    Dlq,
}

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    source: String,
    dataset: String,
    group: String,
    txn_prefix: String,
    partitions: i32,
}

async fn setup(prefix: &str, partitions: i32, instance_id: &str) -> Setup {
    let endpoints = Endpoints::from_env();
    let source = kafka::create_topic(&endpoints, prefix, partitions)
        .await
        .expect("tansu reachable");
    let dataset = unique_name(&format!("{prefix}-ds"));
    for topic in [
        topics::mesh(&dataset),
        topics::quarantine(&dataset),
        topics::dlq(&source),
        topics::DQ_EVENTS.to_owned(),
        topics::LINEAGE_EVENTS.to_owned(),
    ] {
        kafka::create_named_topic(&endpoints, &topic, 1)
            .await
            .expect("output topic");
    }
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yaml"), RULES).expect("rules file");
    let group = unique_name(&format!("{prefix}-group"));
    let txn_prefix = unique_name(&format!("{prefix}-txn"));
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  bootstrap_servers: \"{}\"\n  group_id: {group}\n  cluster_name: {CLUSTER}\n\
             delivery:\n  mode: exactly_once\n  transaction_max_records: 25\n  transaction_interval: 100ms\n  \
             transactional_id_prefix: {txn_prefix}\n  test_fault_injection: true\n\
             service:\n  shutdown_grace: 10s\n  instance_id: {instance_id}\n\
             admin:\n  listen: \"127.0.0.1:0\"\n  lag_interval: 500ms\n\
             dq_counts:\n  interval: 200ms\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, rules: rules.yaml }}\n",
            endpoints.kafka_bootstrap
        ),
    )
    .expect("config file");
    Setup {
        dir,
        config,
        source,
        dataset,
        group,
        txn_prefix,
        partitions,
    }
}

fn spawn_service(config: &Path, log: &Path, env: &[(&str, &str)]) -> Service {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("EOS_TEST_RUST_LOG")
                .unwrap_or_else(|_| "warn,kafka_consumer=info,summit_ingest=info".to_owned()),
        )
        .envs(env.iter().copied())
        // Logs go to stdout, errors (and the fencing message) to stderr: keep both.
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("binary starts");
    Service(child)
}

fn producer() -> FutureProducer {
    kafka::client_config(&Endpoints::from_env())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

fn source_id(topic: &str, partition: i32, offset: i64) -> String {
    event_id(&SourceCoordinates::Kafka {
        cluster: CLUSTER.to_owned(),
        topic: topic.to_owned(),
        partition,
        offset,
    })
    .to_string()
}

/// Sends `count` records cycling through every outcome, round-robin over the partitions.
/// Returns event id → expected outcome, and the end offset per partition.
async fn send_mix(
    setup: &Setup,
    producer: &FutureProducer,
    start: usize,
    count: usize,
) -> Vec<(String, Expect, i32, i64)> {
    let mut sent = Vec::with_capacity(count);
    for i in start..start + count {
        let (expect, payload): (Expect, Vec<u8>) = match i % 4 {
            0 => (Expect::Mesh, format!(r#"{{"amount": {i}}}"#).into_bytes()),
            1 => (Expect::Quarantine, br#"{"amount": 5000}"#.to_vec()),
            2 => (Expect::Hard, br#"{"amount": -1}"#.to_vec()),
            _ => (Expect::Dlq, b"\x00 not json".to_vec()),
        };
        let partition = (i % setup.partitions as usize) as i32;
        let key = format!("k{i}");
        let delivery = producer
            .send(
                FutureRecord::to(&setup.source)
                    .partition(partition)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("source record delivered");
        sent.push((
            source_id(&setup.source, delivery.partition, delivery.offset),
            expect,
            delivery.partition,
            delivery.offset,
        ));
    }
    sent
}

/// Reads `topics` from the beginning (read_committed, which tansu does not enforce) until
/// `done` holds or `timeout`.
fn read_outputs(
    topics: &[String],
    timeout: Duration,
    done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    read_topics(
        &Endpoints::from_env(),
        topics,
        "read_committed",
        timeout,
        done,
    )
}

fn output_topics(setup: &Setup) -> Vec<String> {
    vec![
        topics::mesh(&setup.dataset),
        topics::quarantine(&setup.dataset),
        topics::dlq(&setup.source),
        topics::DQ_EVENTS.to_owned(),
    ]
}

/// Event id → destinations seen, repeats included (DESIGN §8's accounting).
fn categorize(setup: &Setup, outputs: &[Output]) -> HashMap<String, Vec<Expect>> {
    let mut seen: HashMap<String, Vec<Expect>> = HashMap::new();
    for output in outputs {
        let category = if output.topic == topics::mesh(&setup.dataset) {
            Expect::Mesh
        } else if output.topic == topics::quarantine(&setup.dataset) {
            Expect::Quarantine
        } else if output.topic == topics::dlq(&setup.source) {
            Expect::Dlq
        } else if output
            .header(headers::SOURCE)
            .starts_with(&format!("kafka://{CLUSTER}/{}/", setup.source))
            && output.header(headers::DQ) == "hard_fail"
        {
            Expect::Hard
        } else {
            // dq.events is shared; soft_fail dq events accompany quarantine records.
            continue;
        };
        seen.entry(output.header(headers::EVENT_ID).to_owned())
            .or_default()
            .push(category);
    }
    seen
}

/// Every sent record is accounted for in exactly one destination (copies only of the same
/// destination). Returns how many outputs were same-id copies.
fn assert_accounted(
    setup: &Setup,
    sent: &[(String, Expect, i32, i64)],
    outputs: &[Output],
) -> usize {
    let seen = categorize(setup, outputs);
    let mut copies = 0;
    for (id, expect, partition, offset) in sent {
        let found = seen
            .get(id)
            .unwrap_or_else(|| panic!("record {partition}/{offset} ({expect:?}) has no output"));
        assert!(
            found.iter().all(|c| c == expect),
            "record {partition}/{offset}: expected only {expect:?}, got {found:?}"
        );
        copies += found.len() - 1;
    }
    let ids: HashSet<&String> = sent.iter().map(|s| &s.0).collect();
    let strays: Vec<&String> = seen.keys().filter(|id| !ids.contains(id)).collect();
    assert!(
        strays.is_empty(),
        "outputs of records never sent: {strays:?}"
    );
    copies
}

/// The end offset per partition of what was sent.
fn end_offsets(sent: &[(String, Expect, i32, i64)]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (_, _, partition, offset) in sent {
        let end = ends.entry(*partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    ends
}

fn committed(setup: &Setup) -> BTreeMap<i32, i64> {
    let reader: BaseConsumer = kafka::consumer_config(&Endpoints::from_env(), &setup.group)
        .create()
        .expect("offset reader");
    let mut list = TopicPartitionList::new();
    for partition in 0..setup.partitions {
        list.add_partition(&setup.source, partition);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

async fn wait_committed(setup: &Setup, expected: &BTreeMap<i32, i64>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if committed(setup) == *expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

/// One epoch COMPLETE as read back.
#[derive(Debug)]
struct Epoch {
    id: u64,
    run_id: String,
    rows: u64,
    /// (partition, first, last offset) read by the epoch.
    ranges: Vec<(i32, i64, i64)>,
    /// The mesh output's `dataQualityAssertions`: (rule, failures, evaluated).
    assertions: Vec<(String, u64, u64)>,
    schema: Option<String>,
}

/// This dataset's epoch COMPLETE events.
fn epoch_events(setup: &Setup) -> Vec<Epoch> {
    let job = format!("kafka-consumer.{}", setup.dataset);
    let outputs = read_outputs(
        &[topics::LINEAGE_EVENTS.to_owned()],
        Duration::from_secs(5),
        |_| false,
    );
    outputs
        .iter()
        .filter_map(|o| serde_json::from_slice::<RunEvent>(&o.payload).ok())
        .filter(|e| e.job.name == job)
        .filter_map(|e| {
            let epoch = e.run.facets.epoch.as_ref()?.epoch_id;
            let rows = e
                .inputs
                .iter()
                .filter_map(|i| i.input_facets.data_quality_metrics.as_ref()?.row_count)
                .sum();
            let mut ranges: Vec<(i32, i64, i64)> = e
                .inputs
                .iter()
                .filter_map(|i| i.input_facets.offset_ranges.as_ref())
                .flat_map(|facet| facet.ranges.iter())
                .filter_map(|r| {
                    Some((
                        r.partition.parse().ok()?,
                        r.first.parse().ok()?,
                        r.last.parse().ok()?,
                    ))
                })
                .collect();
            ranges.sort();
            let json = serde_json::to_value(&e).ok()?;
            let assertions = json["outputs"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|output| {
                    output["facets"]["dataQualityAssertions"]["assertions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|a| {
                    let (failures, evaluated) = a["actual"].as_str()?.split_once('/')?;
                    Some((
                        a["assertion"].as_str()?.to_owned(),
                        failures.parse().ok()?,
                        evaluated.parse().ok()?,
                    ))
                })
                .collect();
            Some(Epoch {
                id: epoch,
                run_id: e.run.run_id.to_string(),
                rows,
                ranges,
                assertions,
                schema: json["run"]["facets"]["summit_epoch"]["schema"]
                    .as_str()
                    .map(str::to_owned),
            })
        })
        .collect()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_route_records_and_move_offsets_with_lineage() {
    let started = Instant::now();
    let setup = setup("eos-commit", 2, "eos-a").await;
    let producer = producer();
    let sent = send_mix(&setup, &producer, 0, 80).await;
    let log = setup.dir.join("service.log");
    let mut child = spawn_service(&setup.config, &log, &[]);
    let admin = admin_addr(&log).await;
    let ids: HashSet<String> = sent.iter().map(|s| s.0.clone()).collect();
    let outputs = read_outputs(&output_topics(&setup), Duration::from_secs(60), |out| {
        let seen = categorize(&setup, out);
        ids.iter().all(|id| seen.contains_key(id))
    });
    let copies = assert_accounted(&setup, &sent, &outputs);
    assert_eq!(copies, 0, "no abort happened, so no copies");
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!(status, 200, "ready while assigned: {body}");
    let ends = end_offsets(&sent);
    assert!(
        wait_committed(&setup, &ends, Duration::from_secs(20)).await,
        "committed {:?}, expected {ends:?}\n{}",
        committed(&setup),
        tail(&log)
    );
    // Every committed transaction carried one epoch COMPLETE; without aborts the epochs'
    // records add up to exactly what was consumed, with distinct epoch ids.
    let epochs = epoch_events(&setup);
    assert!(!epochs.is_empty(), "no lineage epochs\n{}", tail(&log));
    let rows: u64 = epochs.iter().map(|e| e.rows).sum();
    assert_eq!(rows, sent.len() as u64, "epochs {epochs:?}");
    let distinct: HashSet<u64> = epochs.iter().map(|e| e.id).collect();
    assert_eq!(distinct.len(), epochs.len(), "epoch ids repeat: {epochs:?}");
    // The epochs' offset ranges tile each partition from 0 to its end, in epoch order.
    let mut by_epoch: Vec<&Epoch> = epochs.iter().collect();
    by_epoch.sort_by_key(|e| e.id);
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for epoch in by_epoch {
        for (partition, first, last) in &epoch.ranges {
            let expected = next_offset.entry(*partition).or_insert(0);
            assert_eq!(*first, *expected, "gap or overlap in {epochs:?}");
            *expected = last + 1;
        }
    }
    assert_eq!(next_offset, ends, "epochs {epochs:?}");
    // Each epoch asserts both rules over the records it evaluated (DLQ'd ones are not), and
    // the sums match what was sent: hard fails violate amount-nonnegative, soft fails
    // amount-small.
    let count = |expect: Expect| sent.iter().filter(|s| s.1 == expect).count() as u64;
    let mut failures: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for epoch in &epochs {
        assert_eq!(
            epoch.assertions.len(),
            2,
            "one assertion per rule: {epoch:?}"
        );
        assert_eq!(
            epoch.schema.as_deref(),
            Some("unregistered-json"),
            "{epoch:?}"
        );
        for (rule, failed, evaluated) in &epoch.assertions {
            let sum = failures.entry(rule.clone()).or_default();
            sum.0 += failed;
            sum.1 += evaluated;
        }
    }
    let evaluated = sent.len() as u64 - count(Expect::Dlq);
    assert_eq!(
        failures,
        BTreeMap::from([
            (
                "amount-nonnegative".to_owned(),
                (count(Expect::Hard), evaluated)
            ),
            (
                "amount-small".to_owned(),
                (count(Expect::Quarantine), evaluated)
            ),
        ]),
        "{epochs:?}"
    );

    // Metrics count what was routed, once per record (observers run after the commit).
    let source = setup.source.as_str();
    let timed = sent.len() as f64 - count(Expect::Hard) as f64;
    let text = scrape_until(admin, |text| {
        metric(
            text,
            "summit_ingest_latency_seconds_count",
            &[("source", source)],
        ) == Some(timed)
            && (0..setup.partitions).all(|p| {
                metric(
                    text,
                    "summit_consumer_lag",
                    &[("source", source), ("partition", &p.to_string())],
                ) == Some(0.0)
            })
    })
    .await;
    for (outcome, expect) in [
        ("pass", Expect::Mesh),
        ("soft_fail", Expect::Quarantine),
        ("hard_fail", Expect::Hard),
        ("dlq", Expect::Dlq),
    ] {
        assert_eq!(
            metric(
                &text,
                "summit_records_total",
                &[("source", source), ("outcome", outcome)]
            ),
            Some(count(expect) as f64),
            "{outcome}: {text}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "summit_dlq_records_total",
            &[("source", source), ("kind", "undecodable")]
        ),
        Some(count(Expect::Dlq) as f64),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "summit_hard_fail_total",
            &[("dataset", &setup.dataset), ("rule", "amount-nonnegative")]
        ),
        Some(count(Expect::Hard) as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, "summit_hard_fail_total", &[("rule", "amount-small")]),
        None,
        "soft rules are not hard failures"
    );
    assert_eq!(
        metric(
            &text,
            "summit_ingest_latency_seconds_count",
            &[("source", source)]
        ),
        Some(timed),
        "mesh, quarantine and DLQ records are timed at the commit: {text}"
    );
    for partition in 0..setup.partitions {
        assert_eq!(
            metric(
                &text,
                "summit_consumer_lag",
                &[("source", source), ("partition", &partition.to_string())]
            ),
            Some(0.0),
            "{text}"
        );
    }
    assert!(
        metric(&text, "summit_commit_total", &[("result", "ok")]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(metric(&text, "summit_inflight_records", &[]), Some(0.0));

    // The running instance is a member of the group, so `list` names its transactional id.
    let listed = Command::new(summitctl())
        .args([
            "kafka",
            "transactions",
            "list",
            "--bootstrap-servers",
            &Endpoints::from_env().kafka_bootstrap,
            "--group",
            &setup.group,
            "--prefix",
            &setup.txn_prefix,
        ])
        .output()
        .expect("summitctl runs");
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listing}");
    assert!(
        listing.contains(&format!("{}-eos-a\t{}", setup.txn_prefix, setup.group)),
        "{listing}"
    );

    sigterm(&child);
    // /readyz turns 503 once SIGTERM arrives (the port answers until the process ends).
    let mut saw_unready = false;
    for _ in 0..50 {
        match reqwest::get(format!("http://{admin}/readyz")).await {
            Ok(response) if response.status().as_u16() == 503 => {
                saw_unready = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => break,
        }
    }
    assert!(saw_unready, "/readyz never answered 503 after SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", tail(&log));
    // The instance run: START with the first transaction, COMPLETE in one after SIGTERM.
    let job = format!("kafka-consumer.{}", setup.dataset);
    let instance_run = |outputs: &[Output]| -> Vec<String> {
        outputs
            .iter()
            .filter_map(|o| serde_json::from_slice::<RunEvent>(&o.payload).ok())
            .filter(|e| e.job.name == job && e.run.facets.epoch.is_none())
            .map(|e| format!("{:?}", e.event_type))
            .collect()
    };
    let instance_events = instance_run(&read_outputs(
        &[topics::LINEAGE_EVENTS.to_owned()],
        Duration::from_secs(10),
        |out| instance_run(out).len() >= 2,
    ));
    assert_eq!(instance_events, ["Start", "Complete"], "\n{}", tail(&log));
    // dq.events per-rule counts are told about records only after their transaction commits:
    // without aborts the windows add up to exactly what was sent. They are written outside the
    // transactions, so they are read read_uncommitted.
    let rule_counts = |outputs: &[Output]| -> Vec<serde_json::Value> {
        outputs
            .iter()
            .filter_map(|o| serde_json::from_slice::<serde_json::Value>(&o.payload).ok())
            .filter(|c| c["kind"] == "rule_counts" && c["dataset"] == setup.dataset.as_str())
            .collect()
    };
    let total = |windows: &[serde_json::Value], field: &str| {
        windows
            .iter()
            .map(|w| w[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let windows = rule_counts(&read_topics(
        &Endpoints::from_env(),
        &[topics::DQ_EVENTS.to_owned()],
        "read_uncommitted",
        Duration::from_secs(10),
        |out| total(&rule_counts(out), "records") >= sent.len() as u64,
    ));
    assert_eq!(
        [
            total(&windows, "records"),
            total(&windows, "pass"),
            total(&windows, "soft_fail"),
            total(&windows, "hard_fail"),
            total(&windows, "dlq"),
        ],
        [
            sent.len() as u64,
            count(Expect::Mesh),
            count(Expect::Quarantine),
            count(Expect::Hard),
            count(Expect::Dlq),
        ],
        "{windows:#?}"
    );
    eprintln!(
        "commit: {} records, {} epochs, {:?}",
        sent.len(),
        epochs.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_abort_rewinds_and_the_batch_is_processed_again() {
    let started = Instant::now();
    let setup = setup("eos-abort", 1, "eos-b").await;
    let producer = producer();
    let sent = send_mix(&setup, &producer, 0, 60).await;
    let log = setup.dir.join("service.log");
    // The first transaction (records 0..25 at most) produces, sends offsets, then aborts.
    let mut child = spawn_service(&setup.config, &log, &[("SUMMIT_TEST_FAIL_TXN_AFTER", "1")]);
    let ends = end_offsets(&sent);
    assert!(
        wait_committed(&setup, &ends, Duration::from_secs(60)).await,
        "committed {:?}, expected {ends:?}\n{}",
        committed(&setup),
        tail(&log)
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("aborted on purpose"),
        "fault not injected\n{}",
        tail(&log)
    );
    let ids: HashSet<String> = sent.iter().map(|s| s.0.clone()).collect();
    let outputs = read_outputs(&output_topics(&setup), Duration::from_secs(30), |out| {
        let seen = categorize(&setup, out);
        ids.iter().all(|id| seen.contains_key(id))
    });
    // tansu shows the aborted transaction's outputs to read_committed readers, so the aborted
    // batch's records appear twice here, always with the same event id and destination; on a
    // broker with aborted-transaction filtering they would appear once.
    let copies = assert_accounted(&setup, &sent, &outputs);
    assert!(
        copies > 0,
        "tansu shows aborted outputs, so the re-processed batch must show same-id copies"
    );
    // The aborted epoch's lineage event was produced, then produced again by the retry with the
    // same epoch id (so the same child run id) over the same offsets: the consumer was rewound
    // to the batch's first offsets, not moved on past the aborted records.
    let epochs = epoch_events(&setup);
    let first: Vec<&Epoch> = epochs.iter().filter(|e| e.id == 1).collect();
    assert!(
        first.len() >= 2
            && first
                .iter()
                .all(|e| e.run_id == first[0].run_id && e.ranges == first[0].ranges)
            && first[0].ranges.first().is_some_and(|r| r.1 == 0),
        "epoch 1 should be written by the aborted and the retried transaction over the same offsets: {epochs:?}"
    );
    // The aborted batch's records are counted once, when their retry commits; the failed
    // transaction is counted as a commit error.
    let admin = admin_addr(&log).await;
    let source = setup.source.clone();
    let records_total = move |text: &str| -> f64 {
        ["pass", "soft_fail", "hard_fail", "dlq"]
            .iter()
            .filter_map(|outcome| {
                metric(
                    text,
                    "summit_records_total",
                    &[("source", &source), ("outcome", outcome)],
                )
            })
            .sum()
    };
    let text = scrape_until(admin, |text| records_total(text) >= sent.len() as f64).await;
    assert_eq!(records_total(&text), sent.len() as f64, "{text}");
    assert!(
        metric(&text, "summit_commit_total", &[("result", "error")]).unwrap_or(0.0) >= 1.0,
        "the aborted transaction counts as a commit error: {text}"
    );
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", tail(&log));
    eprintln!(
        "abort: {} records, {copies} same-id copies visible (aborted data), {} epoch events, {:?}",
        sent.len(),
        epochs.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_instance_id_fences_the_first() {
    let started = Instant::now();
    let setup = setup("eos-fence", 2, "eos-same").await;
    let producer = producer();
    let mut sent = send_mix(&setup, &producer, 0, 20).await;
    let log_a = setup.dir.join("a.log");
    let log_b = setup.dir.join("b.log");
    let mut first = spawn_service(&setup.config, &log_a, &[]);
    let ends = end_offsets(&sent);
    assert!(
        wait_committed(&setup, &ends, Duration::from_secs(40)).await,
        "A never committed\n{}",
        tail(&log_a)
    );
    // Same config, same instance id, so the same transactional id: B's init_transactions bumps
    // the producer epoch and A's next transaction must be refused. No records are sent until B
    // holds a partition: tansu 0.6 never completes a rebalance whose leader leaves during it
    // (the remaining member loops on SyncGroup "rebalance in progress"), so A must not be
    // fenced, and leave, in the middle of B's join.
    let mut second = spawn_service(&setup.config, &log_b, &[]);
    let joined = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_b)
        .unwrap_or_default()
        .contains("\"assigned\"")
    {
        assert!(Instant::now() < joined, "B never joined\n{}", tail(&log_b));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut next = sent.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status_a = loop {
        sent.extend(send_mix(&setup, &producer, next, 4).await);
        next += 4;
        if let Ok(Some(status)) = first.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = first.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status_a = status_a.unwrap_or_else(|| {
        panic!(
            "A was not fenced\nA:\n{}\nB:\n{}",
            tail(&log_a),
            tail(&log_b)
        )
    });
    let text_a = std::fs::read_to_string(&log_a).unwrap_or_default();
    assert_eq!(
        status_a.code(),
        Some(3),
        "A: {status_a:?}\n{}",
        tail(&log_a)
    );
    assert!(text_a.contains("fenced"), "A's stderr:\n{}", tail(&log_a));
    assert!(
        second.try_wait().expect("B status").is_none(),
        "B must keep running\n{}",
        tail(&log_b)
    );
    // B takes over every partition and commits everything, A's last work included.
    let ends = end_offsets(&sent);
    assert!(
        wait_committed(&setup, &ends, Duration::from_secs(60)).await,
        "committed {:?}, expected {ends:?}\nB:\n{}",
        committed(&setup),
        tail(&log_b)
    );
    let ids: HashSet<String> = sent.iter().map(|s| s.0.clone()).collect();
    let outputs = read_outputs(&output_topics(&setup), Duration::from_secs(30), |out| {
        let seen = categorize(&setup, out);
        ids.iter().all(|id| seen.contains_key(id))
    });
    let copies = assert_accounted(&setup, &sent, &outputs);
    sigterm(&second);
    let status_b = wait_exit(&mut second, Duration::from_secs(20)).expect("B exits");
    assert!(status_b.success(), "{status_b:?}\n{}", tail(&log_b));
    eprintln!(
        "fencing: {} records, {copies} same-id copies, A exit {:?}, {:?}",
        sent.len(),
        status_a.code(),
        started.elapsed()
    );
}

async fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_between_two_instances_repeats_only_aborted_work() {
    let started = Instant::now();
    let setup = setup("eos-rebalance", 2, "eos-r1").await;
    let producer = producer();
    let mut sent = send_mix(&setup, &producer, 0, 20).await;
    let log_a = setup.dir.join("a.log");
    let log_b = setup.dir.join("b.log");
    let mut first = spawn_service(&setup.config, &log_a, &[]);
    assert!(
        wait_for_log(&log_a, "\"assigned\"", Duration::from_secs(30)).await,
        "A never joined\n{}",
        tail(&log_a)
    );
    // A second instance with its own id (own transactional id): a cooperative rebalance while
    // records keep coming, then A leaves on SIGTERM and B takes every partition.
    let mut second = spawn_service(
        &setup.config,
        &log_b,
        &[("SUMMIT_SERVICE__INSTANCE_ID", "eos-r2")],
    );
    let mut next = sent.len();
    let joined = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_b)
        .unwrap_or_default()
        .contains("\"assigned\"")
    {
        assert!(Instant::now() < joined, "B never joined\n{}", tail(&log_b));
        sent.extend(send_mix(&setup, &producer, next, 2).await);
        next += 2;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sent.extend(send_mix(&setup, &producer, next, 20).await);
    next += 20;
    // A leaves only once the join has settled (tansu cannot finish a rebalance whose leader
    // leaves during it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    sigterm(&first);
    let status_a = wait_exit(&mut first, Duration::from_secs(20)).expect("A exits");
    assert!(status_a.success(), "{status_a:?}\n{}", tail(&log_a));
    sent.extend(send_mix(&setup, &producer, next, 20).await);
    let ends = end_offsets(&sent);
    assert!(
        wait_committed(&setup, &ends, Duration::from_secs(60)).await,
        "committed {:?}, expected {ends:?}\nB:\n{}",
        committed(&setup),
        tail(&log_b)
    );
    let ids: HashSet<String> = sent.iter().map(|s| s.0.clone()).collect();
    let outputs = read_outputs(&output_topics(&setup), Duration::from_secs(30), |out| {
        let seen = categorize(&setup, out);
        ids.iter().all(|id| seen.contains_key(id))
    });
    let copies = assert_accounted(&setup, &sent, &outputs);
    // A batch spanning a revocation is dropped before anything is produced, so same-id copies
    // can only come from an aborted transaction (visible on tansu).
    let aborts = [&log_a, &log_b]
        .iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("transaction failed")
                .count()
        })
        .sum::<usize>();
    assert!(
        copies == 0 || aborts > 0,
        "{copies} same-id copies without an aborted transaction\nA:\n{}\nB:\n{}",
        tail(&log_a),
        tail(&log_b)
    );
    sigterm(&second);
    let status_b = wait_exit(&mut second, Duration::from_secs(20)).expect("B exits");
    assert!(status_b.success(), "{status_b:?}\n{}", tail(&log_b));
    eprintln!(
        "rebalance: {} records, {copies} same-id copies, {aborts} aborted transactions, {:?}",
        sent.len(),
        started.elapsed()
    );
}

/// The `summitctl` binary: built next to this test's deps directory, or built now.
fn summitctl() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = profile_dir.join("summitctl");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "summitctl", "--bin", "summitctl"])
            .status()
            .expect("cargo build summitctl");
        assert!(status.success(), "building summitctl failed");
    }
    assert!(binary.exists(), "no summitctl at {}", binary.display());
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summitctl_aborts_the_open_transaction_of_a_crashed_producer() {
    let started = Instant::now();
    let endpoints = Endpoints::from_env();
    let topic = kafka::create_topic(&endpoints, "eos-crash", 1)
        .await
        .expect("topic");
    let transactional_id = unique_name("eos-crashed");
    let transactional = |id: &str| -> FutureProducer {
        kafka::client_config(&endpoints)
            .set("transactional.id", id)
            .set("transaction.timeout.ms", "60000")
            .create()
            .expect("transactional producer")
    };
    // The "crashed" instance: begins a transaction, produces, never commits. It stays alive
    // as a zombie so the test can show that `abort` fenced it.
    let crashed = transactional(&transactional_id);
    crashed
        .init_transactions(Duration::from_secs(30))
        .expect("init");
    crashed.begin_transaction().expect("begin");
    crashed
        .send(
            FutureRecord::to(&topic).key("k").payload("left open"),
            Duration::from_secs(10),
        )
        .await
        .expect("produced inside the open transaction");

    let abort_started = Instant::now();
    let output = Command::new(summitctl())
        .args([
            "kafka",
            "transactions",
            "abort",
            "--bootstrap-servers",
            &endpoints.kafka_bootstrap,
            "--transactional-id",
            &transactional_id,
        ])
        .output()
        .expect("summitctl runs");
    let abort_elapsed = abort_started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&transactional_id), "{stdout}");
    // The zombie's producer epoch is stale now: its transaction cannot be committed any more.
    // On tansu the zombie gets no "fenced" answer to EndTxn: librdkafka retries until the call
    // times out (a clean ProducerFenced is seen on AddPartitionsToTxn, see the fencing test).
    // The control below shows the same commit succeeding without the abort.
    let zombie_commit = crashed.commit_transaction(Duration::from_secs(10));
    assert!(
        zombie_commit.is_err(),
        "the crashed producer could still commit after summitctl abort"
    );
    // Not dropped: a fenced producer's drop waits on librdkafka's purge (it is a test leak).
    std::mem::forget(crashed);
    let control_id = unique_name("eos-control");
    let control = transactional(&control_id);
    control
        .init_transactions(Duration::from_secs(30))
        .expect("init");
    control.begin_transaction().expect("begin");
    control
        .send(
            FutureRecord::to(&topic).key("k").payload("control"),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    control
        .commit_transaction(Duration::from_secs(10))
        .expect("without an abort the same commit succeeds");

    // A new producer with the id can init and commit.
    let replacement = transactional(&transactional_id);
    replacement
        .init_transactions(Duration::from_secs(30))
        .expect("init after abort");
    replacement.begin_transaction().expect("begin");
    replacement
        .send(
            FutureRecord::to(&topic).key("k").payload("after abort"),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    replacement
        .commit_transaction(Duration::from_secs(30))
        .expect("commit after abort");
    eprintln!(
        "summitctl abort: {abort_elapsed:?}; whole test {:?}",
        started.elapsed()
    );
}
