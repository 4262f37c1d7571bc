//! Nothing is lost under SIGKILL (DESIGN §8), one instance killed three times mid-work, and two
//! instances through a cooperative rebalance with one killed.
//!
//! Each kill is proven to land mid-work: right after it, a snapshot of the outputs (read up to
//! the high watermarks, no idle time) holds records past the group's committed offsets —
//! acknowledged but uncommitted, so the next owner writes them again. Then every source record
//! is accounted for in every destination DESIGN §4 implies: mesh; quarantine plus its
//! `dq.events` companion (soft_fail); `dq.events` alone (hard_fail); the DLQ plus its companion,
//! for three DLQ kinds (undecodable, oversize, bad header). Payload bytes are unchanged, every
//! output carries one of the sent records' event ids, and the repeats are bounded by what was
//! output but uncommitted at the kills.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use summit_envelope::{SourceCoordinates, event_id, headers, topics};
use summit_test_support::{Endpoints, kafka, unique_name};

mod common;
use common::{
    Output, Service, admin_addrs, committed_offsets, http_get, log_count, read_to_end, tail,
    wait_for_log,
};

const CLUSTER: &str = "test";
const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");
const RULES: &str = r#"
name: payments
rules:
  - { id: amount-nonnegative, field: amount, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-small, field: amount, kind: range, severity: soft, params: { max: 1000 } }
"#;
/// Oversize records are above this (`limits.max_record_bytes`).
const MAX_RECORD_BYTES: usize = 4096;

/// What a source record is, and so where it must end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Pass,
    Soft,
    Hard,
    Undecodable,
    Oversize,
    BadHeader,
}

/// A destination category of one output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Category {
    Mesh,
    Quarantine,
    DqSoft,
    DqHard,
    Dlq(String),
    DqDlq(String),
}

impl Kind {
    fn of(n: usize) -> Self {
        match n % 100 {
            0 => Self::Soft,
            1 => Self::Hard,
            2 => Self::Undecodable,
            3 => Self::Oversize,
            4 => Self::BadHeader,
            _ => Self::Pass,
        }
    }

    fn required(self) -> BTreeSet<Category> {
        let dlq = |kind: &str| [Category::Dlq(kind.into()), Category::DqDlq(kind.into())];
        match self {
            Self::Pass => [Category::Mesh].into(),
            Self::Soft => [Category::Quarantine, Category::DqSoft].into(),
            Self::Hard => [Category::DqHard].into(),
            Self::Undecodable => dlq("undecodable").into(),
            Self::Oversize => dlq("oversize").into(),
            Self::BadHeader => dlq("bad_header").into(),
        }
    }

    fn payload(self, n: usize) -> Vec<u8> {
        match self {
            Self::Pass => format!(r#"{{"amount": {}}}"#, n % 900).into_bytes(),
            Self::Soft => br#"{"amount": 9999}"#.to_vec(),
            Self::Hard => br#"{"amount": -1}"#.to_vec(),
            Self::Undecodable => b"{broken".to_vec(),
            Self::Oversize => format!(
                r#"{{"amount": 1, "pad": "{}"}}"#,
                "x".repeat(MAX_RECORD_BYTES)
            )
            .into_bytes(),
            Self::BadHeader => br#"{"amount": 2}"#.to_vec(),
        }
    }
}

/// One record the writer sent.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    position: (i32, i64),
    kind: Kind,
    payload: Vec<u8>,
}

struct Setup {
    endpoints: Endpoints,
    dir: PathBuf,
    config: PathBuf,
    source: String,
    dataset: String,
    group: String,
    partitions: i32,
}

async fn setup(prefix: &str, partitions: i32) -> Setup {
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
    ] {
        kafka::create_named_topic(&endpoints, &topic, 1)
            .await
            .expect("output topic");
    }
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yaml"), RULES).expect("rules file");
    let group = unique_name(&format!("{prefix}-group"));
    let config = dir.join("config.yaml");
    // Commits once a second, so a SIGKILL lands between commits.
    std::fs::write(
        &config,
        format!(
            "kafka: {{ bootstrap_servers: \"{}\", group_id: {group}, cluster_name: {CLUSTER}, session_timeout: 3s }}\n\
             delivery: {{ commit_interval: 1s, rebalance_drain_timeout: 5s }}\n\
             limits: {{ max_record_bytes: {MAX_RECORD_BYTES} }}\n\
             admin: {{ listen: \"127.0.0.1:0\", lag_interval: 500ms }}\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, rules: rules.yaml }}\n",
            endpoints.kafka_bootstrap
        ),
    )
    .expect("config file");
    Setup {
        endpoints,
        dir,
        config,
        source,
        dataset,
        group,
        partitions,
    }
}

fn spawn(setup: &Setup, log: &Path) -> Service {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let stdout = log.try_clone().expect("log file handle");
    Command::new(BINARY)
        .arg("--config")
        .arg(&setup.config)
        .env("RUST_LOG", "warn,kafka_consumer=info,summit_ingest=info")
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .map(Service)
        .expect("binary starts")
}

fn kill9(child: &mut Child) {
    // std's kill() is SIGKILL on Unix: no drain, no commit, no goodbye.
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends records of every kind, 100 at a time every `pace`, until `count` are sent or `stop`
/// is set (after at least one batch).
async fn write_mix(
    topic: String,
    count: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Sent> {
    let producer: FutureProducer = kafka::client_config(&Endpoints::from_env())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut sent = Vec::new();
    let mut pending = Vec::new();
    for n in 0..count {
        let kind = Kind::of(n);
        let payload = kind.payload(n);
        let key = format!("key-{n}");
        let mut record = FutureRecord::to(&topic).key(&key).payload(&payload);
        if kind == Kind::BadHeader {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: headers::TRACEPARENT,
                value: Some("00-not-a-trace"),
            }));
        }
        let future = producer.send_result(record).expect("enqueued");
        pending.push((future, kind, payload));
        if n % 100 == 99 || n + 1 == count {
            for (future, kind, payload) in pending.drain(..) {
                let delivery = future.await.expect("not cancelled").expect("delivered");
                let id = source_id(&topic, delivery.partition, delivery.offset);
                let position = (delivery.partition, delivery.offset);
                sent.push(Sent {
                    id,
                    position,
                    kind,
                    payload,
                });
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(pace).await;
        }
    }
    sent
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

fn output_topics(setup: &Setup) -> Vec<String> {
    vec![
        topics::mesh(&setup.dataset),
        topics::quarantine(&setup.dataset),
        topics::dlq(&setup.source),
        topics::DQ_EVENTS.to_owned(),
    ]
}

/// The category of an output of this test's source, `None` for others' `dq.events` records.
fn category(setup: &Setup, output: &Output) -> Option<Category> {
    let ours = format!("kafka://{CLUSTER}/{}/", setup.source);
    if !output.header(headers::SOURCE).starts_with(&ours) {
        return None;
    }
    let kind = output.header(headers::ERROR_KIND).to_owned();
    Some(match output.topic.as_str() {
        t if t == topics::mesh(&setup.dataset) => Category::Mesh,
        t if t == topics::quarantine(&setup.dataset) => Category::Quarantine,
        t if t == topics::dlq(&setup.source) => Category::Dlq(kind),
        _ if !kind.is_empty() => Category::DqDlq(kind),
        _ if output.header(headers::DQ) == "soft_fail" => Category::DqSoft,
        _ => Category::DqHard,
    })
}

/// (partition, offset) of the source record an output came from.
fn source_position(output: &Output) -> (i32, i64) {
    let mut parts = output.header(headers::SOURCE).rsplit('/');
    let offset = parts.next().and_then(|o| o.parse().ok()).expect("offset");
    let partition = parts
        .next()
        .and_then(|p| p.parse().ok())
        .expect("partition");
    (partition, offset)
}

/// After a kill: the source records with an output past the committed offsets. They were
/// acknowledged but not committed, so the next owner processes them again.
fn uncommitted_at_kill(setup: &Setup) -> HashSet<(i32, i64)> {
    let committed = committed_offsets(
        &setup.endpoints,
        &setup.group,
        &setup.source,
        setup.partitions,
    );
    let outputs = read_to_end(&setup.endpoints, &output_topics(setup));
    outputs
        .iter()
        .filter(|output| category(setup, output).is_some())
        .map(source_position)
        .filter(|(partition, offset)| *offset >= committed.get(partition).copied().unwrap_or(0))
        .collect()
}

/// Waits (up to `timeout`) until the mesh holds a record past the committed offsets.
async fn wait_uncommitted_output(setup: &Setup, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let committed = committed_offsets(
            &setup.endpoints,
            &setup.group,
            &setup.source,
            setup.partitions,
        );
        let mesh = read_to_end(&setup.endpoints, &[topics::mesh(&setup.dataset)]);
        if mesh
            .iter()
            .map(source_position)
            .any(|(partition, offset)| offset >= committed.get(&partition).copied().unwrap_or(0))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills `child` once outputs past the committed offsets are seen, and returns the records
/// it left acknowledged but uncommitted — `None` when a commit landed between the look and the
/// kill (the kill was not mid-work).
async fn kill_mid_work(setup: &Setup, child: &mut Child) -> Option<HashSet<(i32, i64)>> {
    wait_uncommitted_output(setup, Duration::from_secs(10)).await;
    kill9(child);
    // Produce requests the process sent just before it died may still be appended by the
    // broker: let them land, or the snapshot undercounts what the next owner repeats.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let uncommitted = uncommitted_at_kill(setup);
    (!uncommitted.is_empty()).then_some(uncommitted)
}

/// Every sent record in exactly its required categories, payloads unchanged, no strays;
/// returns each repeated record's position with its number of extra copies.
fn assert_accounted(setup: &Setup, sent: &[Sent], outputs: &[Output]) -> Vec<((i32, i64), usize)> {
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut copies: HashMap<&str, HashMap<Category, usize>> = HashMap::new();
    for output in outputs {
        let Some(category) = category(setup, output) else {
            continue;
        };
        let id = output.header(headers::EVENT_ID);
        let record = by_id
            .get(id)
            .unwrap_or_else(|| panic!("output of no sent record: {id}"));
        if matches!(
            category,
            Category::Mesh | Category::Quarantine | Category::Dlq(_)
        ) {
            assert_eq!(
                output.payload, record.payload,
                "{id} {category:?}: payload changed"
            );
        }
        *copies
            .entry(record.id.as_str())
            .or_default()
            .entry(category)
            .or_default() += 1;
    }
    let mut repeats = Vec::new();
    for record in sent {
        let seen = copies.get(record.id.as_str()).cloned().unwrap_or_default();
        let categories: BTreeSet<Category> = seen.keys().cloned().collect();
        assert_eq!(
            categories,
            record.kind.required(),
            "{} ({:?})",
            record.id,
            record.kind
        );
        let extra = seen.values().max().copied().unwrap_or(1) - 1;
        if extra > 0 {
            repeats.push((record.position, extra));
        }
    }
    repeats
}

/// Repeats are bounded by what was in flight at the kills: every repeated record was output
/// but uncommitted at a kill, and the extra copies are at most the sum over the kills.
fn assert_repeats_bounded(repeats: &[((i32, i64), usize)], kills: &[HashSet<(i32, i64)>]) {
    for (position, extra) in repeats {
        let at_kills = kills.iter().filter(|kill| kill.contains(position)).count();
        assert!(
            *extra <= at_kills,
            "{position:?} repeated {extra} times, uncommitted at {at_kills} kills"
        );
    }
    let total: usize = repeats.iter().map(|(_, extra)| extra).sum();
    let in_flight: usize = kills.iter().map(HashSet::len).sum();
    eprintln!("{total} repeated copies; {in_flight} records uncommitted at the kills");
}

/// Reads every output until each sent record has all its categories.
async fn wait_for_all(setup: &Setup, sent: &[Sent]) -> Vec<Output> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let outputs = read_to_end(&setup.endpoints, &output_topics(setup));
        let mut seen: HashMap<&str, BTreeSet<Category>> = HashMap::new();
        for output in &outputs {
            if let Some(category) = category(setup, output) {
                seen.entry(output.header(headers::EVENT_ID))
                    .or_default()
                    .insert(category);
            }
        }
        let complete = sent.iter().all(|s| {
            seen.get(s.id.as_str())
                .is_some_and(|c| *c == s.kind.required())
        });
        if complete || Instant::now() > deadline {
            return outputs;
        }
        drop(seen);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_work_three_times_loses_nothing_in_any_destination() {
    let setup = setup("kill9", 3).await;
    let log = setup.dir.join("service.log");
    // Writing goes on until the kills are done, so every kill finds work in progress.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_mix(
        setup.source.clone(),
        usize::MAX,
        Duration::from_millis(600),
        stop.clone(),
    ));
    let (mut kills, mut attempts) = (Vec::new(), 0);
    while kills.len() < 3 && attempts < 8 {
        attempts += 1;
        let before = log_count(&log, "assigned");
        let mut child = spawn(&setup, &log);
        assert!(
            wait_for_log(&log, "assigned", before, Duration::from_secs(15)).await,
            "{}",
            tail(&log)
        );
        let alive = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(alive)).await;
        // A kill that found nothing uncommitted is not counted as mid-work (and can cause
        // no repeat); the loop kills again.
        kills.extend(kill_mid_work(&setup, &mut child).await);
    }
    stop.store(true, Ordering::Release);
    assert_eq!(
        kills.len(),
        3,
        "3 kills mid-work in {attempts} attempts: {}",
        tail(&log)
    );
    let sent = writer.await.expect("writer");
    let mut child = spawn(&setup, &log);
    let outputs = wait_for_all(&setup, &sent).await;
    kill9(&mut child);
    let repeats = assert_accounted(&setup, &sent, &outputs);
    eprintln!("{} records accounted for", sent.len());
    assert_repeats_bounded(&repeats, &kills);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_through_a_rebalance_and_a_sigkill_lose_nothing() {
    let setup = setup("kill9pair", 4).await;
    let log = setup.dir.join("service.log");
    let writer = tokio::spawn(write_mix(
        setup.source.clone(),
        3000,
        Duration::from_millis(600),
        Arc::new(AtomicBool::new(false)),
    ));
    let mut first = spawn(&setup, &log);
    assert!(
        wait_for_log(&log, "assigned", 0, Duration::from_secs(15)).await,
        "{}",
        tail(&log)
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // A second member joins: the first drains and commits what it gives up (cooperative).
    let mut second = spawn(&setup, &log);
    let rebalanced = wait_for_log(&log, "revoked", 0, Duration::from_secs(20)).await;
    assert!(
        rebalanced,
        "no partition was revoked when the second member joined: {}",
        tail(&log)
    );
    let admins = admin_addrs(&log, 2).await;
    let (first_lag, second_lag) = settled_lag(&setup, admins[0], admins[1]).await;
    assert!(
        first_lag.is_disjoint(&second_lag) && first_lag.len() + second_lag.len() == 4,
        "lag series of owned partitions only: {first_lag:?} / {second_lag:?}"
    );
    // Killed mid-work, or (a commit won the race) killed anyway: the bound is then 0.
    let at_kill = kill_mid_work(&setup, &mut first).await.unwrap_or_default();
    let mut third = spawn(&setup, &log);
    let sent = writer.await.expect("writer");
    let outputs = wait_for_all(&setup, &sent).await;
    kill9(&mut second);
    kill9(&mut third);
    let repeats = assert_accounted(&setup, &sent, &outputs);
    // The revoke of the first rebalance commits what the first member gave up, so only the
    // kill can cause repeats.
    assert_repeats_bounded(&repeats, &[at_kill]);
}

/// The partitions each instance reports lag for, once the assignment settled (disjoint,
/// covering all four) or after 15 s.
async fn settled_lag(
    setup: &Setup,
    first: std::net::SocketAddr,
    second: std::net::SocketAddr,
) -> (HashSet<String>, HashSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = lag_partitions(first, &setup.source).await;
        let b = lag_partitions(second, &setup.source).await;
        let settled = a.is_disjoint(&b) && !a.is_empty() && !b.is_empty() && a.len() + b.len() == 4;
        if settled || Instant::now() > deadline {
            return (a, b);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn lag_partitions(addr: std::net::SocketAddr, topic: &str) -> HashSet<String> {
    let (_, text) = http_get(addr, "/metrics").await;
    text.lines()
        .filter(|l| {
            l.starts_with("summit_consumer_lag{") && l.contains(&format!("source=\"{topic}\""))
        })
        .filter_map(|l| {
            l.split("partition=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect()
}
