//! The built `kafka-consumer` binary against the local tansu broker: routing and headers of
//! every outcome (with its metrics, readiness and lineage epochs), poison records not blocking a
//! partition, SIGTERM drain + commit, start-up refusal of bad configs, zero loss under repeated
//! SIGKILL (one and two instances), offsets held while lineage cannot be written, one ticket per
//! rule per window, and registry-framed Avro end to end.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use rand::Rng;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schema_registry_server::RunningRegistry;
use summit_envelope::{SourceCoordinates, TraceContext, event_id, headers, topics};
use summit_schema::{RegistryClient, SchemaDefinition, encode_avro};
use summit_test_support::fault_proxy::Fault;
use summit_test_support::postgres::TestDatabase;
use summit_test_support::{Endpoints, kafka, unique_name};

mod common;
use common::{
    Output, Service, admin_addr, committed_offset, http_get, metric, read_topics, scrape_until,
    tail, wait_for_log,
};

const CLUSTER: &str = "test";
const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");

const RULES: &str = r#"
name: payments
rules:
  - { id: amount-nonnegative, field: amount, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-small, field: amount, kind: range, severity: soft, params: { max: 1000 } }
"#;

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    source: String,
    dataset: String,
    group: String,
}

async fn setup(prefix: &str, partitions: i32, extra_config: &str) -> Setup {
    setup_with(prefix, partitions, extra_config, "", RULES).await
}

/// `route_extra` is spliced into the route (`subject: ..., `), `rules` is the rule set text.
async fn setup_with(
    prefix: &str,
    partitions: i32,
    extra_config: &str,
    route_extra: &str,
    rules: &str,
) -> Setup {
    let endpoints = Endpoints::from_env();
    let source = kafka::create_topic(&endpoints, prefix, partitions)
        .await
        .expect("tansu reachable");
    let dataset = unique_name(&format!("{prefix}-ds"));
    for topic in [
        topics::mesh(&dataset),
        topics::quarantine(&dataset),
        topics::dlq(&source),
    ] {
        kafka::create_named_topic(&endpoints, &topic, 1)
            .await
            .expect("output topic");
    }
    kafka::create_named_topic(&endpoints, topics::DQ_EVENTS, 1)
        .await
        .expect("dq.events");
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yaml"), rules).expect("rules file");
    let group = unique_name(&format!("{prefix}-group"));
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  bootstrap_servers: \"{}\"\n  group_id: {group}\n  cluster_name: {CLUSTER}\n\
             delivery:\n  commit_interval: 100ms\n  rebalance_drain_timeout: 5s\n\
             service:\n  shutdown_grace: 10s\n\
             admin:\n  listen: \"127.0.0.1:0\"\n  lag_interval: 500ms\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, {route_extra}rules: rules.yaml }}\n{extra_config}",
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
    }
}

fn spawn_service(config: &Path, log: &Path) -> Service {
    spawn_service_with(config, log, &[])
}

fn spawn_service_with(config: &Path, log: &Path, env: &[(&str, &str)]) -> Service {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    // Logs (JSON lines) go to stdout, errors before logging starts to stderr: keep both.
    let stdout = log.try_clone().expect("log file handle");
    Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn,kafka_consumer=info,summit_ingest=info")
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .map(Service)
        .expect("binary starts")
}

fn producer() -> FutureProducer {
    kafka::client_config(&Endpoints::from_env())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// A record to send: expected destination, payload, headers, expected DLQ error kind.
type Case = (Expect, Vec<u8>, Option<OwnedHeaders>, Option<&'static str>);

/// What a test sent and how it should end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mesh,
    Quarantine,
    Hard,
    Dlq,
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> (i32, i64, i64) {
    let key = format!("k{}", rand::rng().random::<u16>());
    let mut record = FutureRecord::to(topic).payload(payload).key(&key);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("source record delivered");
    // tansu echoes no timestamp in the ack; the consumer side reads the stored one.
    (
        delivery.partition,
        delivery.offset,
        delivery.timestamp.to_millis().unwrap_or(0),
    )
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

/// Reads `topics` from the beginning until `done` holds for what was read, or `timeout`.
fn read_outputs(
    topics: &[String],
    timeout: Duration,
    done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    read_outputs_from(&Endpoints::from_env(), topics, timeout, done)
}

fn read_outputs_from(
    endpoints: &Endpoints,
    topics: &[String],
    timeout: Duration,
    done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    // read_uncommitted: dq.events and lineage.events are shared by every test, and the
    // exactly_once tests leave aborted or fenced transactions on them. tansu then holds the last
    // stable offset back, and a read_committed reader (librdkafka's default) sees nothing past it
    // — while effectively_once writes no transactions, so nothing here needs the filter.
    read_topics(endpoints, topics, "read_uncommitted", timeout, done)
}

fn output_topics(setup: &Setup) -> Vec<String> {
    vec![
        topics::mesh(&setup.dataset),
        topics::quarantine(&setup.dataset),
        topics::dlq(&setup.source),
        topics::DQ_EVENTS.to_owned(),
    ]
}

/// Event id → destination categories seen (with repeats), per DESIGN §8's invariant.
fn categorize(setup: &Setup, outputs: &[Output]) -> HashMap<String, Vec<Expect>> {
    let mut seen: HashMap<String, Vec<Expect>> = HashMap::new();
    for output in outputs {
        let id = output.header(headers::EVENT_ID).to_owned();
        let category = if output.topic == topics::mesh(&setup.dataset) {
            Expect::Mesh
        } else if output.topic == topics::quarantine(&setup.dataset) {
            Expect::Quarantine
        } else if output.topic == topics::dlq(&setup.source) {
            Expect::Dlq
        } else if !output
            .header(headers::SOURCE)
            .starts_with(&format!("kafka://{CLUSTER}/{}/", setup.source))
        {
            // dq.events is shared by every test and service: only ours count.
            continue;
        } else if output.header(headers::DQ) == "hard_fail" {
            Expect::Hard
        } else {
            continue;
        };
        seen.entry(id).or_default().push(category);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_lands_with_its_headers_and_sigterm_commits() {
    let (collector, exported) = otlp_collector().await;
    let setup = setup(
        "outcomes",
        1,
        &format!(
            "limits:\n  max_record_bytes: 2000\n\
             telemetry:\n  otlp_endpoint: \"http://{collector}\"\n\
             dq_counts:\n  interval: 300ms\n"
        ),
    )
    .await;
    let producer = producer();
    let parent = TraceContext::new_root();
    let traced = OwnedHeaders::new().insert(Header {
        key: headers::TRACEPARENT,
        value: Some(&parent.to_string()),
    });
    let bad_header = OwnedHeaders::new().insert(Header {
        key: headers::TRACEPARENT,
        value: Some("00-not-a-trace"),
    });
    let big = format!(r#"{{"amount": 1, "pad": "{}"}}"#, "x".repeat(3000));
    let cases: Vec<Case> = vec![
        (
            Expect::Mesh,
            br#"{"amount": 10}"#.to_vec(),
            Some(traced),
            None,
        ),
        (
            Expect::Quarantine,
            br#"{"amount": 5000}"#.to_vec(),
            None,
            None,
        ),
        (Expect::Hard, br#"{"amount": -5}"#.to_vec(), None, None),
        (
            Expect::Dlq,
            b"\x00\x01 not json".to_vec(),
            None,
            Some("undecodable"),
        ),
        (
            Expect::Dlq,
            br#"{"amount": 1}"#.to_vec(),
            Some(bad_header),
            Some("bad_header"),
        ),
        (Expect::Dlq, big.into_bytes(), None, Some("oversize")),
        // After every poison kind: the partition must keep flowing.
        (Expect::Mesh, br#"{"amount": 20}"#.to_vec(), None, None),
    ];
    let mut sent = Vec::new();
    for (expect, payload, headers, kind) in cases {
        let (partition, offset, _) =
            send(&producer, &setup.source, Some(0), &payload, headers).await;
        sent.push((
            source_id(&setup.source, partition, offset),
            offset,
            expect,
            kind,
        ));
    }

    let log = setup.dir.join("service.log");
    // Message spans are INFO spans of summit_telemetry: the filter must let them through.
    let mut child = spawn_service_with(
        &setup.config,
        &log,
        &[(
            "RUST_LOG",
            "warn,kafka_consumer=info,summit_ingest=info,summit_telemetry=info",
        )],
    );
    let admin = admin_addr(&log).await;
    // tansu answers the JoinGroup after half the session timeout (3 s): not assigned yet.
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    let expected: HashSet<String> = sent.iter().map(|s| s.0.clone()).collect();
    let outputs = read_outputs(&output_topics(&setup), Duration::from_secs(40), |out| {
        let seen = categorize(&setup, out);
        expected.iter().all(|id| seen.contains_key(id))
    });
    let seen = categorize(&setup, &outputs);
    let mut traced_output = None;
    for (id, offset, expect, kind) in &sent {
        assert_eq!(
            seen.get(id).map(Vec::as_slice),
            Some(&[*expect][..]),
            "offset {offset}: expected {expect:?}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let mine: Vec<&Output> = outputs
            .iter()
            .filter(|o| o.header(headers::EVENT_ID) == id)
            .collect();
        for output in &mine {
            assert_eq!(
                output.header(headers::SOURCE),
                format!("kafka://{CLUSTER}/{}/0/{offset}", setup.source)
            );
        }
        match expect {
            Expect::Mesh | Expect::Quarantine => {
                let record = mine
                    .iter()
                    .find(|o| o.topic != topics::DQ_EVENTS)
                    .expect("data record");
                assert!(record.header(headers::DQ_RULESET).starts_with("payments@"));
                assert_eq!(record.header(headers::SCHEMA), "unregistered-json");
                let event_time: i64 = record.header(headers::EVENT_TIME).parse().expect("ms");
                let ingest_time: i64 = record.header(headers::INGEST_TIME).parse().expect("ms");
                assert!(event_time > 0 && ingest_time >= event_time, "{record:?}");
                let trace =
                    TraceContext::parse(record.header(headers::TRACEPARENT)).expect("trace");
                if *offset == 0 {
                    assert_eq!(trace.trace_id, parent.trace_id, "trace continued");
                    assert_ne!(trace.parent_id, parent.parent_id, "new span id");
                    traced_output = Some(trace);
                }
                if *expect == Expect::Quarantine {
                    assert_eq!(record.header(headers::DQ), "soft_fail");
                    let violations: serde_json::Value =
                        serde_json::from_str(record.header(headers::DQ_VIOLATIONS)).expect("json");
                    assert_eq!(violations[0]["rule_id"], "amount-small");
                    let event = mine
                        .iter()
                        .find(|o| o.topic == topics::DQ_EVENTS)
                        .expect("soft_fail also has a dq.events record");
                    let body: serde_json::Value =
                        serde_json::from_slice(&event.payload).expect("json");
                    assert_eq!(body["outcome"], "soft_fail");
                } else {
                    assert_eq!(record.header(headers::DQ), "pass");
                    assert!(
                        !mine.iter().any(|o| o.topic == topics::DQ_EVENTS),
                        "pass has no dq event"
                    );
                }
            }
            Expect::Hard => {
                let body: serde_json::Value =
                    serde_json::from_slice(&mine[0].payload).expect("dq event JSON");
                assert_eq!(body["event_id"], id.as_str());
                assert_eq!(body["dataset"], setup.dataset.as_str());
                assert_eq!(body["violations"][0]["rule_id"], "amount-nonnegative");
                assert!(
                    body["ruleset"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("payments@"))
                );
            }
            Expect::Dlq => {
                let record = mine
                    .iter()
                    .find(|o| o.topic == topics::dlq(&setup.source))
                    .expect("DLQ record");
                assert_eq!(record.header(headers::ERROR_KIND), kind.unwrap_or_default());
                assert!(!record.header(headers::ERROR).is_empty());
                assert!(record.header(headers::FAILED_AT).parse::<i64>().is_ok());
                // Every non-pass record also has a dq.events record (DESIGN §4, §5).
                let event = mine
                    .iter()
                    .find(|o| o.topic == topics::DQ_EVENTS)
                    .expect("DLQ'd record has a dq.events record");
                let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json");
                assert_eq!(body["outcome"], "dlq");
                assert_eq!(body["error_kind"], kind.unwrap_or_default());
                assert_eq!(body["dataset"], setup.dataset.as_str());
                assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
                assert_eq!(event.header(headers::ERROR_KIND), kind.unwrap_or_default());
            }
        }
    }
    assert!(outputs.iter().all(|o| o.timestamp.is_some()));

    // Metrics match what was routed.
    let (status, _) = http_get(admin, "/readyz").await;
    assert_eq!(status, 200, "ready while assigned");
    let source = setup.source.as_str();
    let text = scrape_until(admin, |text| {
        metric(
            text,
            "summit_ingest_latency_seconds_count",
            &[("source", source)],
        ) == Some(6.0)
            && metric(
                text,
                "summit_consumer_lag",
                &[("source", source), ("partition", "0")],
            ) == Some(0.0)
            && metric(text, "summit_inflight_records", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "summit_ingest_latency_seconds_count",
            &[("source", source)]
        ),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "summit_consumer_lag",
            &[("source", source), ("partition", "0")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(&text, "summit_inflight_records", &[]), Some(0.0));
    assert_eq!(metric(&text, "summit_inflight_bytes", &[]), Some(0.0));
    assert_eq!(metric(&text, "summit_partitions_paused", &[]), Some(0.0));
    for (outcome, count) in [
        ("pass", 2.0),
        ("soft_fail", 1.0),
        ("hard_fail", 1.0),
        ("dlq", 3.0),
    ] {
        assert_eq!(
            metric(
                &text,
                "summit_records_total",
                &[
                    ("source", source),
                    ("outcome", outcome),
                    ("service", "kafka-consumer")
                ]
            ),
            Some(count),
            "{outcome}: {text}"
        );
    }
    for kind in ["undecodable", "bad_header", "oversize"] {
        assert_eq!(
            metric(
                &text,
                "summit_dlq_records_total",
                &[("source", source), ("kind", kind)]
            ),
            Some(1.0),
            "{kind}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "summit_hard_fail_total",
            &[("dataset", &setup.dataset), ("rule", "amount-nonnegative")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "summit_hard_fail_total", &[("rule", "amount-small")]),
        None,
        "soft rules are not hard failures"
    );
    // Mesh, quarantine and DLQ outputs are timed (6); the hard_fail's dq event is not.
    assert!(metric(&text, "summit_commit_total", &[("result", "ok")]).unwrap_or(0.0) >= 1.0);
    assert!(
        metric(&text, "summit_lineage_events_total", &[("result", "ok")]).unwrap_or(0.0) >= 2.0,
        "START and at least one epoch: {text}"
    );
    assert_eq!(metric(&text, "summit_lineage_blocked", &[]), Some(0.0));

    // SIGTERM: drains, commits everything, exits 0 within the grace period.
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "not stopped within grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let committed = committed_offset(&Endpoints::from_env(), &setup.group, &setup.source);
    assert_eq!(committed, Some(sent.len() as i64));

    // Lineage: START, epochs covering exactly the committed offsets, then COMPLETE.
    let events = read_lineage(&Endpoints::from_env(), &setup.dataset, |events| {
        events.iter().any(|e| is_instance_end(e, "COMPLETE"))
    });
    let epochs = check_lineage(&events, &setup.source, sent.len() as i64);
    assert_eq!(epochs.failures.get("amount-nonnegative"), Some(&1));
    assert_eq!(epochs.failures.get("amount-small"), Some(&1));
    assert_eq!(epochs.rows, sent.len() as u64);
    assert!(events.iter().any(|e| is_instance_end(e, "COMPLETE")));

    // DESIGN §4's periodic per-rule counts in dq.events: the windows (300 ms, the last one
    // written at SIGTERM) add up to exactly what was sent.
    let counts = read_rule_counts(&setup.dataset, sent.len() as u64);
    let total = |field: &str| {
        counts
            .iter()
            .map(|c| c[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(total("records"), sent.len() as u64, "{counts:#?}");
    assert_eq!(
        (
            total("pass"),
            total("soft_fail"),
            total("hard_fail"),
            total("dlq")
        ),
        (2, 1, 1, 3),
        "{counts:#?}"
    );
    let rule_failures = |rule: &str| {
        counts
            .iter()
            .flat_map(|c| c["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["rule_id"] == rule)
            .map(|r| r["failures"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(rule_failures("amount-nonnegative"), 1, "{counts:#?}");
    assert_eq!(rule_failures("amount-small"), 1, "{counts:#?}");
    for window in &counts {
        assert_eq!(window["stage"], "ingest");
        assert!(window["window_start"].as_i64() <= window["window_end"].as_i64());
        // Every rule is listed in every window, failing or not.
        assert_eq!(
            window["rules"].as_array().map(Vec::len),
            Some(2),
            "{window}"
        );
    }

    // Spans went out over OTLP (flushed at exit): the record's span, child of the producer's
    // traceparent, is the span the mesh record's traceparent names.
    let traced_output = traced_output.expect("the traced record reached the mesh");
    let bodies = exported
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let contains = |needle: &[u8]| {
        bodies
            .iter()
            .any(|body| body.windows(needle.len()).any(|w| w == needle))
    };
    assert!(!bodies.is_empty(), "no OTLP export reached the collector");
    assert!(
        contains(&parent.trace_id),
        "the source trace id is exported"
    );
    assert!(
        contains(&parent.parent_id),
        "the span's parent is the producer's span"
    );
    assert!(
        contains(&traced_output.parent_id),
        "the output's traceparent names an exported span"
    );
}

type Exported = Arc<Mutex<Vec<Vec<u8>>>>;

/// An OTLP/HTTP receiver on 127.0.0.1:0 that keeps every `/v1/traces` body (protobuf).
async fn otlp_collector() -> (std::net::SocketAddr, Exported) {
    let exported: Exported = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |State(exported): State<Exported>, body: axum::body::Bytes| async move {
                    exported
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(body.to_vec());
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(exported.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, exported)
}

/// Every `lineage.events` event of the job `kafka-consumer.<dataset>`, read until `done`.
fn read_lineage(
    endpoints: &Endpoints,
    dataset: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let job = format!("kafka-consumer.{dataset}");
    let parse = |outputs: &[Output]| -> Vec<serde_json::Value> {
        outputs
            .iter()
            .filter_map(|o| serde_json::from_slice::<serde_json::Value>(&o.payload).ok())
            .filter(|e| e["job"]["name"] == job.as_str())
            .collect()
    };
    let outputs = read_outputs_from(
        endpoints,
        &[topics::LINEAGE_EVENTS.to_owned()],
        Duration::from_secs(30),
        |out| done(&parse(out)),
    );
    parse(&outputs)
}

/// The `rule_counts` records of `dataset` in dq.events, read until they cover `records`.
fn read_rule_counts(dataset: &str, records: u64) -> Vec<serde_json::Value> {
    let parse = |outputs: &[Output]| -> Vec<serde_json::Value> {
        outputs
            .iter()
            .filter_map(|o| serde_json::from_slice::<serde_json::Value>(&o.payload).ok())
            .filter(|c| c["kind"] == "rule_counts" && c["dataset"] == dataset)
            .collect()
    };
    let covered = |counts: &[serde_json::Value]| {
        counts
            .iter()
            .map(|c| c["records"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= records
    };
    let outputs = read_outputs_from(
        &Endpoints::from_env(),
        &[topics::DQ_EVENTS.to_owned()],
        Duration::from_secs(30),
        |out| covered(&parse(out)),
    );
    parse(&outputs)
}

fn is_instance_end(event: &serde_json::Value, event_type: &str) -> bool {
    event["eventType"] == event_type && event["run"]["facets"]["parent"].is_null()
}

#[derive(Debug, Default)]
struct EpochTotals {
    rows: u64,
    /// Rule id → failures summed over the epochs.
    failures: HashMap<String, u64>,
}

/// Checks one START, epochs that are children of it and whose partition-0 offset ranges of
/// `topic` tile `0..committed` exactly; returns the epochs' row and failure totals.
fn check_lineage(events: &[serde_json::Value], topic: &str, committed: i64) -> EpochTotals {
    let starts: Vec<_> = events
        .iter()
        .filter(|e| e["eventType"] == "START")
        .collect();
    assert_eq!(starts.len(), 1, "{events:#?}");
    let run_id = starts[0]["run"]["runId"].clone();
    // A resent epoch (a retry whose first send did land) is the same child run: count it once.
    let mut epoch_runs = HashSet::new();
    let epochs: Vec<_> = events
        .iter()
        .filter(|e| e["eventType"] == "COMPLETE" && !e["run"]["facets"]["parent"].is_null())
        .filter(|e| epoch_runs.insert(e["run"]["runId"].to_string()))
        .collect();
    assert!(!epochs.is_empty(), "no epoch: {events:#?}");
    let mut ranges = Vec::new();
    let mut totals = EpochTotals::default();
    for epoch in &epochs {
        assert_eq!(epoch["run"]["facets"]["parent"]["run"]["runId"], run_id);
        assert!(
            epoch["run"]["facets"]["summit_epoch"]["ruleset"]
                .as_str()
                .is_some_and(|r| r.starts_with("payments@")),
            "{epoch:#}"
        );
        for input in epoch["inputs"].as_array().expect("inputs") {
            assert!(
                input["name"].as_str().is_some_and(|n| n == topic),
                "{input:#}"
            );
            for range in input["inputFacets"]["summit_offsetRanges"]["ranges"]
                .as_array()
                .expect("offset ranges")
            {
                assert_eq!(range["partition"], "0");
                let first: i64 = range["first"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("first");
                let last: i64 = range["last"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("last");
                ranges.push((first, last));
            }
            totals.rows += input["inputFacets"]["dataQualityMetrics"]["rowCount"]
                .as_u64()
                .expect("rowCount");
        }
        let assertions = epoch["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"]
            .as_array()
            .expect("assertions on the mesh output");
        for assertion in assertions {
            let actual = assertion["actual"].as_str().expect("actual");
            let failures: u64 = actual
                .split('/')
                .next()
                .and_then(|f| f.parse().ok())
                .expect("failures/evaluated");
            assert_eq!(assertion["success"], failures == 0);
            *totals
                .failures
                .entry(assertion["assertion"].as_str().expect("id").to_owned())
                .or_default() += failures;
        }
    }
    ranges.sort_unstable();
    let mut next = 0;
    for (first, last) in &ranges {
        assert_eq!(
            *first, next,
            "ranges must tile the committed offsets: {ranges:?}"
        );
        assert!(last >= first);
        next = last + 1;
    }
    assert_eq!(
        next, committed,
        "epochs cover exactly the committed offsets: {ranges:?}"
    );
    totals
}

fn run_bad_config(config_text: &str, rules: bool) -> (i32, String) {
    let dir = std::env::temp_dir().join(unique_name("badcfg"));
    std::fs::create_dir_all(&dir).expect("dir");
    if rules {
        std::fs::write(dir.join("rules.yaml"), RULES).expect("rules");
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, config_text).expect("config");
    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_config_stops_start_up_naming_the_key() {
    let bootstrap = Endpoints::from_env().kafka_bootstrap;
    let base =
        format!("kafka: {{ bootstrap_servers: \"{bootstrap}\", group_id: g, cluster_name: c }}\n");
    let cases = [
        (
            format!(
                "{base}routes: [{{ topics: [a], dataset: d, rules: rules.yaml, colour: red }}]\n"
            ),
            true,
            "colour",
        ),
        (
            format!("{base}routes: [{{ topic_pattern: '^a(', dataset: d, rules: rules.yaml }}]\n"),
            true,
            "routes[0].topic_pattern",
        ),
        (
            format!("{base}routes: [{{ topics: [a], dataset: d, rules: missing.yaml }}]\n"),
            false,
            "routes[0].rules",
        ),
        (
            format!(
                "{base}schema_registry: {{ url: \"http://127.0.0.1:9\" }}\n\
                 routes: [{{ topics: [a], dataset: d, subject: a-value, rules: rules.yaml }}]\n"
            ),
            true,
            "schema_registry.url",
        ),
        (
            format!(
                "{base}routes: [{{ topics: [a], dataset: d, rules: rules.yaml, \
                 schema_file: orders.avsc }}]\n"
            ),
            true,
            "routes[0].schema_file",
        ),
    ];
    for (text, rules, key) in cases {
        let (code, stderr) = run_bad_config(&text, rules);
        assert_eq!(code, 2, "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}

/// A registry of its own, on a fresh database, holding the repo's `orders-value` v1.
struct OrdersRegistry {
    registry: RunningRegistry,
    v1_text: String,
    v1_id: u32,
    /// Kept until the test ends: the registry's database.
    _database: TestDatabase,
}

async fn orders_registry(database_prefix: &str) -> OrdersRegistry {
    let database = TestDatabase::create(&Endpoints::from_env(), database_prefix)
        .await
        .expect("postgres at SUMMIT_POSTGRES_URL");
    let pool = schema_registry_server::connect(&database.url, 4)
        .await
        .expect("migrations run");
    let registry = RunningRegistry::start("127.0.0.1:0", pool)
        .await
        .expect("registry starts");
    let v1_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/orders-value/v1.avsc"
    ))
    .expect("schemas/orders-value/v1.avsc");
    let v1_id = RegistryClient::new(&registry.url)
        .expect("url")
        .register("orders-value", &SchemaDefinition::avro(&v1_text))
        .await
        .expect("register v1");
    OrdersRegistry {
        registry,
        v1_text,
        v1_id,
        _database: database,
    }
}

/// Issue 4's runtime guard: a route built against a schema that cannot read what the registry
/// now holds refuses to start, naming the subject, both schemas and the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_file_the_registry_cannot_follow_stops_start_up() {
    let OrdersRegistry {
        registry,
        v1_text: v1,
        _database,
        ..
    } = orders_registry("kc_guard").await;
    // The service's copy needs a field v1 writers never send, with no default.
    let mut built: serde_json::Value = serde_json::from_str(&v1).expect("v1 is JSON");
    built["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "region", "type": "string"}));
    let dir = std::env::temp_dir().join(unique_name("guard"));
    std::fs::create_dir_all(&dir).expect("dir");
    let built_path = dir.join("orders-built.avsc");
    std::fs::write(&built_path, built.to_string()).expect("schema file");

    let bootstrap = Endpoints::from_env().kafka_bootstrap;
    let config = |route_extra: &str| {
        format!(
            "kafka: {{ bootstrap_servers: \"{bootstrap}\", group_id: g, cluster_name: c }}\n\
             schema_registry: {{ url: \"{}\" }}\n\
             admin: {{ listen: \"127.0.0.1:0\" }}\n\
             routes: [{{ topics: [a], dataset: d, subject: orders-value, rules: rules.yaml, \
             {route_extra} }}]\n",
            registry.url
        )
    };
    let (code, stderr) = run_bad_config(
        &config(&format!("schema_file: \"{}\"", built_path.display())),
        true,
    );
    assert_eq!(code, 2, "{stderr}");
    for needle in [
        "routes[0].schema_file",
        "orders-value",
        "summit.demo.Order",
        "region",
        "BACKWARD",
    ] {
        assert!(stderr.contains(needle), "{needle} not named in: {stderr}");
    }
    // NONE accepts anything: the same file no longer stops start-up at the guard (the run
    // goes on to join the group, so it is killed once past the check).
    let ok_dir = std::env::temp_dir().join(unique_name("guard-ok"));
    std::fs::create_dir_all(&ok_dir).expect("dir");
    std::fs::write(ok_dir.join("rules.yaml"), RULES).expect("rules");
    let ok_config = ok_dir.join("config.yaml");
    std::fs::write(
        &ok_config,
        config(&format!(
            "schema_file: \"{}\", schema_compatibility: NONE",
            built_path.display()
        )),
    )
    .expect("config");
    let log = ok_dir.join("service.log");
    let child = spawn_service(&ok_config, &log);
    let admin = admin_addr(&log).await;
    let (status, _) = http_get(admin, "/healthz").await;
    assert_eq!(status, 200, "{}", tail(&log));
    drop(child);
    drop(registry);
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            return exit;
        }
        assert!(started.elapsed() < within, "not stopped within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_routed(setup: &Setup, ids: &[String]) -> Vec<Output> {
    let expected: HashSet<&String> = ids.iter().collect();
    read_outputs(&output_topics(setup), Duration::from_secs(40), |out| {
        let seen = categorize(setup, out);
        expected.iter().all(|id| seen.contains_key(*id))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_wait_while_lineage_cannot_be_written() {
    let lineage_broker = kafka::ProxiedBroker::start()
        .await
        .expect("private tansu starts");
    let extra = format!(
        "lineage:\n  bootstrap_servers: \"{}\"\n  emit_budget: 2s\n  attempt_timeout: 1s\n  \
         max_attempts: 2\n  initial_backoff: 100ms\n  \
         producer_properties: {{ socket.timeout.ms: \"1500\" }}\n",
        lineage_broker.bootstrap()
    );
    let setup = setup("lineageblock", 1, &extra).await;
    let log = setup.dir.join("service.log");
    let mut child = spawn_service(&setup.config, &log);
    let admin = admin_addr(&log).await;
    let text = scrape_until(admin, |t| {
        metric(t, "summit_lineage_events_total", &[("result", "ok")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        metric(&text, "summit_lineage_events_total", &[("result", "ok")]),
        Some(1.0),
        "START written while lineage is reachable: {}",
        tail(&log)
    );
    assert!(
        wait_for_log(&log, "assigned", 0, Duration::from_secs(20)).await,
        "{}",
        tail(&log)
    );

    // Lineage unreachable (a hung broker): records still flow to the mesh, offsets do not move.
    lineage_broker.proxy.set_fault(Fault::Blackhole);
    let producer = producer();
    let mut ids = Vec::new();
    for n in 0..5 {
        let payload = format!(r#"{{"amount": {n}}}"#);
        let (partition, offset, _) =
            send(&producer, &setup.source, Some(0), payload.as_bytes(), None).await;
        ids.push(source_id(&setup.source, partition, offset));
    }
    let outputs = wait_routed(&setup, &ids).await;
    assert_eq!(categorize(&setup, &outputs).len(), 5, "{}", tail(&log));
    let text = scrape_until(admin, |t| {
        metric(t, "summit_lineage_blocked", &[]) == Some(1.0)
            && metric(t, "summit_lineage_events_total", &[("result", "error")]).unwrap_or(0.0)
                >= 2.0
    })
    .await;
    assert_eq!(
        metric(&text, "summit_lineage_blocked", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "summit_lineage_events_total", &[("result", "error")]).unwrap_or(0.0) >= 2.0,
        "retried at later commit ticks: {text}"
    );
    // A commit tick that lands while offset 0 is still in flight may commit 0: the next offset
    // to read, covering no record, so it needs no lineage. Nothing past it may be committed.
    let committed = committed_offset(&Endpoints::from_env(), &setup.group, &setup.source);
    assert!(
        committed.unwrap_or(0) == 0,
        "no offset covering a record committed while its lineage is unwritten: {committed:?}"
    );

    // Fault lifted: the held epoch is written and the offsets advance.
    lineage_broker.proxy.set_fault(Fault::None);
    let deadline = Instant::now() + Duration::from_secs(40);
    while committed_offset(&Endpoints::from_env(), &setup.group, &setup.source) != Some(5) {
        assert!(
            Instant::now() < deadline,
            "offsets did not advance: {}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = scrape_until(admin, |t| {
        metric(t, "summit_lineage_blocked", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(metric(&text, "summit_lineage_blocked", &[]), Some(0.0));
    let events = read_lineage(
        &lineage_broker.endpoints(&Endpoints::from_env()),
        &setup.dataset,
        |events| {
            events
                .iter()
                .any(|e| !e["run"]["facets"]["parent"].is_null())
        },
    );
    let totals = check_lineage(&events, &setup.source, 5);
    assert_eq!(totals.rows, 5);
    assert_eq!(totals.failures.values().sum::<u64>(), 0);

    // SIGTERM: /readyz turns 503 at once, while the final lineage event waits for its budget.
    lineage_broker.proxy.set_fault(Fault::Blackhole);
    terminate(&child);
    let mut saw_unready = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !saw_unready {
        if let Ok(response) = reqwest::get(format!("http://{admin}/readyz")).await {
            saw_unready = response.status().as_u16() == 503;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_unready, "/readyz never answered 503 after SIGTERM");
    let exit = wait_exit(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
}

type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn ticket_webhook(
    State(received): State<Received>,
    headers: axum::http::HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> axum::http::StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((key, body));
    axum::http::StatusCode::ACCEPTED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_per_rule_per_window() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let webhook = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/tickets", axum::routing::post(ticket_webhook))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let extra = format!(
        "tickets:\n  threshold: 2\n  window: 1h\n  max_samples: 5\n  \
         webhook: {{ url: \"http://{webhook}/tickets\", initial_backoff: 100ms }}\n"
    );
    let setup = setup("tickets", 1, &extra).await;
    let producer = producer();
    let mut soft = Vec::new();
    let mut hard = Vec::new();
    let mut all = Vec::new();
    for payload in [
        r#"{"amount": 5000}"#,
        r#"{"amount": -5}"#,
        r#"{"amount": 6000}"#,
        r#"{"amount": 10}"#,
        r#"{"amount": -6}"#,
        r#"{"amount": 7000}"#,
    ] {
        let (partition, offset, _) =
            send(&producer, &setup.source, Some(0), payload.as_bytes(), None).await;
        let id = source_id(&setup.source, partition, offset);
        if payload.contains('-') {
            hard.push(id.clone());
        } else if payload.contains("000") {
            soft.push(id.clone());
        }
        all.push(id);
    }
    let log = setup.dir.join("service.log");
    let mut child = spawn_service(&setup.config, &log);
    let admin = admin_addr(&log).await;
    wait_routed(&setup, &all).await;
    let text = scrape_until(admin, |t| {
        metric(t, "summit_tickets_total", &[("result", "sent")]).is_some()
            && ["amount-small", "amount-nonnegative"].iter().all(|rule| {
                metric(
                    t,
                    "summit_tickets_total",
                    &[("rule", rule), ("result", "sent")],
                ) == Some(1.0)
            })
    })
    .await;
    // Give a wrongly repeated ticket the time to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    terminate(&child);
    let exit = wait_exit(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");

    let tickets = received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(tickets.len(), 2, "one per rule: {tickets:#?}");
    for (rule, ids) in [("amount-small", &soft), ("amount-nonnegative", &hard)] {
        let (key, ticket) = tickets
            .iter()
            .find(|(_, t)| t["rule"] == rule)
            .unwrap_or_else(|| panic!("no ticket for {rule}: {tickets:#?}"));
        assert_eq!(ticket["dataset"], setup.dataset.as_str());
        assert_eq!(ticket["failures"], 2, "opened at the threshold");
        assert_eq!(ticket["threshold"], 2);
        assert_eq!(key, ticket["ticket_id"].as_str().expect("ticket id"));
        let samples: Vec<String> = ticket["sample_event_ids"]
            .as_array()
            .expect("samples")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert_eq!(samples, ids[..2].to_vec(), "{rule}");
        assert_eq!(
            metric(
                &text,
                "summit_tickets_total",
                &[
                    ("dataset", &setup.dataset),
                    ("rule", rule),
                    ("result", "sent")
                ]
            ),
            Some(1.0)
        );
    }
}

const AVRO_RULES: &str = r#"
name: payments
rules:
  - { id: amount-nonnegative, field: amount_cents, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-small, field: amount_cents, kind: range, severity: soft, params: { max: 100000 } }
"#;

/// The repo's `orders-value` v1 schema through the in-process registry: registry-framed Avro
/// is routed with its bytes untouched and its schema named; an unknown schema id is DLQ'd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_framed_avro_end_to_end() {
    use apache_avro::types::Value as Avro;

    let OrdersRegistry {
        registry,
        v1_text: schema_text,
        v1_id: schema_id,
        _database,
    } = orders_registry("kc_avro").await;
    let schema = apache_avro::Schema::parse_str(&schema_text).expect("schema parses");
    let order = |amount: i64| {
        let value = Avro::Record(vec![
            ("order_id".into(), Avro::String(format!("o-{amount}"))),
            ("customer_id".into(), Avro::String("c-1".into())),
            ("amount_cents".into(), Avro::Long(amount)),
            ("currency".into(), Avro::Enum(0, "EUR".into())),
            (
                "created_at".into(),
                Avro::TimestampMillis(1_700_000_000_000),
            ),
        ]);
        encode_avro(schema_id, &schema, value).expect("encodes")
    };

    let setup = setup_with(
        "avro",
        1,
        &format!("schema_registry:\n  url: \"{}\"\n", registry.url),
        // The start-up guard passes: the registry's latest is the file itself.
        &format!(
            "subject: orders-value, schema_file: \"{}/../../schemas/orders-value/v1.avsc\", ",
            env!("CARGO_MANIFEST_DIR")
        ),
        AVRO_RULES,
    )
    .await;
    let pass = order(500);
    let soft = order(500_000);
    let mut unknown = order(700);
    // Same framing, an id the registry never issued.
    unknown[1..5].copy_from_slice(&(schema_id + 100_000).to_be_bytes());
    let producer = producer();
    let mut sent = Vec::new();
    for (payload, expect) in [
        (&pass, Expect::Mesh),
        (&soft, Expect::Quarantine),
        (&unknown, Expect::Dlq),
    ] {
        let (partition, offset, _) = send(&producer, &setup.source, Some(0), payload, None).await;
        sent.push((
            source_id(&setup.source, partition, offset),
            expect,
            payload.clone(),
        ));
    }
    let log = setup.dir.join("service.log");
    let mut child = spawn_service(&setup.config, &log);
    let ids: Vec<String> = sent.iter().map(|s| s.0.clone()).collect();
    let outputs = wait_routed(&setup, &ids).await;
    let seen = categorize(&setup, &outputs);
    for (id, expect, payload) in &sent {
        assert_eq!(
            seen.get(id).map(Vec::as_slice),
            Some(&[*expect][..]),
            "{expect:?}: {}",
            tail(&log)
        );
        let data = outputs
            .iter()
            .find(|o| o.header(headers::EVENT_ID) == id && o.topic != topics::DQ_EVENTS)
            .expect("data record");
        assert_eq!(&data.payload, payload, "{expect:?}: value bytes unchanged");
        match expect {
            Expect::Dlq => {
                assert_eq!(data.header(headers::ERROR_KIND), "unknown_schema");
            }
            // The registry id the value was framed with.
            _ => assert_eq!(data.header(headers::SCHEMA), schema_id.to_string()),
        }
    }
    terminate(&child);
    let exit = wait_exit(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    // The epochs name the schema the records were decoded with.
    let events = read_lineage(&Endpoints::from_env(), &setup.dataset, |events| {
        events.iter().any(|e| is_instance_end(e, "COMPLETE"))
    });
    let totals = check_lineage(&events, &setup.source, 3);
    assert_eq!(totals.failures.get("amount-small"), Some(&1));
    assert!(
        events
            .iter()
            .any(|e| e["run"]["facets"]["summit_epoch"]["schema"] == schema_id.to_string().as_str()),
        "{events:#?}"
    );
    // ...and their datasets' schema facets list the fields of the schema the records were
    // decoded with (the registry's v1), as Marquez shows dataset fields.
    let epoch = events
        .iter()
        .find(|e| !e["run"]["facets"]["summit_epoch"].is_null())
        .expect("an epoch event");
    for dataset in epoch["inputs"]
        .as_array()
        .into_iter()
        .chain(epoch["outputs"].as_array())
        .flatten()
    {
        let fields: Vec<(String, String)> = dataset["facets"]["schema"]["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| {
                        (
                            f["name"].as_str().unwrap_or_default().to_owned(),
                            f["type"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            fields,
            [
                ("order_id", "string"),
                ("customer_id", "string"),
                ("amount_cents", "long"),
                ("currency", "Currency"),
                ("created_at", "timestamp-millis"),
            ]
            .map(|(n, t)| (n.to_owned(), t.to_owned())),
            "{dataset:#}"
        );
    }
    drop(registry);
}
