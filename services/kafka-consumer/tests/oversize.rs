//! A record larger than the DLQ's broker accepts in one piece: it is dead-lettered whole, in
//! chunks, and the records behind it are committed (the bug: the oversize DLQ write was
//! refused and retried forever, so the partition never advanced again).

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use summit_envelope::{SourceCoordinates, event_id, headers, topics};
use summit_test_support::{Endpoints, kafka, unique_name};

mod common;
use common::{Output, Service, committed_offset, read_topics, tail};

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-consumer");
const CLUSTER: &str = "test";
const BIG: usize = 3 * 1024 * 1024;

struct Setup {
    endpoints: Endpoints,
    source: String,
    dataset: String,
    group: String,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
}

async fn setup(extra_config: &str) -> Setup {
    let endpoints = Endpoints::from_env();
    let source = kafka::create_topic(&endpoints, "oversize", 1)
        .await
        .expect("tansu reachable");
    let dataset = unique_name("oversize-ds");
    for topic in [topics::mesh(&dataset), topics::dlq(&source)] {
        kafka::create_named_topic(&endpoints, &topic, 1)
            .await
            .expect("output topic");
    }
    let dir = std::env::temp_dir().join(unique_name("oversize"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yaml"), "name: none\nrules: []\n").expect("rules");
    let group = unique_name("oversize-group");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  bootstrap_servers: \"{}\"\n  group_id: {group}\n  cluster_name: {CLUSTER}\n\
             delivery:\n  commit_interval: 100ms\n\
             admin:\n  listen: \"127.0.0.1:0\"\n\
             routes:\n  - {{ topics: [{source}], dataset: {dataset}, rules: rules.yaml }}\n{extra_config}",
            endpoints.kafka_bootstrap
        ),
    )
    .expect("config");
    Setup {
        endpoints,
        source,
        dataset,
        group,
        dir,
        config,
    }
}

fn spawn(setup: &Setup, log: &std::path::Path) -> Service {
    let log_file = std::fs::File::create(log).expect("log");
    Service(
        std::process::Command::new(BINARY)
            .arg("--config")
            .arg(&setup.config)
            .env("RUST_LOG", "warn,kafka_consumer=info,summit_ingest=info")
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("binary starts"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mb_record_is_dead_lettered_whole_in_chunks_and_the_rest_commits() {
    let setup = setup("").await;
    let Setup {
        endpoints,
        source,
        dataset,
        group,
        dir,
        ..
    } = &setup;

    // Good, big, good, good: the big one must not hold back the two behind it.
    let big: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let producer: FutureProducer = kafka::client_config(endpoints)
        .set("message.max.bytes", (BIG * 2).to_string())
        .create()
        .expect("producer");
    let payloads: Vec<Vec<u8>> = vec![
        br#"{"n":0}"#.to_vec(),
        big.clone(),
        br#"{"n":2}"#.to_vec(),
        br#"{"n":3}"#.to_vec(),
    ];
    for payload in &payloads {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(source).payload(payload),
                Duration::from_secs(20),
            )
            .await
            .expect("source record accepted");
    }

    let log = dir.join("service.log");
    let mut service = spawn(&setup, &log);

    let big_id = event_id(&SourceCoordinates::Kafka {
        cluster: CLUSTER.to_owned(),
        topic: source.clone(),
        partition: 0,
        offset: 1,
    })
    .to_string();
    let wanted = [topics::mesh(dataset), topics::dlq(source)];
    let outputs = read_topics(
        endpoints,
        &wanted,
        "read_uncommitted",
        Duration::from_secs(60),
        |read| read.len() >= 3 + BIG.div_ceil(900_000),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while committed_offset(endpoints, group, source) != Some(4)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let committed = committed_offset(endpoints, group, source);
    let _ = service.kill();
    assert_eq!(
        committed,
        Some(4),
        "every offset committed; log:\n{}",
        tail(&log)
    );

    let mesh: Vec<&Output> = outputs
        .iter()
        .filter(|o| o.topic == topics::mesh(dataset))
        .collect();
    let mesh_payloads: Vec<&[u8]> = mesh.iter().map(|o| o.payload.as_slice()).collect();
    assert_eq!(
        mesh_payloads,
        vec![&payloads[0][..], &payloads[2][..], &payloads[3][..]]
    );

    let mut chunks: Vec<&Output> = outputs
        .iter()
        .filter(|o| o.topic == topics::dlq(source))
        .collect();
    assert!(
        chunks.len() >= 4,
        "3 MiB in pieces of at most 1 MB: {}",
        chunks.len()
    );
    let count = chunks.len();
    chunks.sort_by_key(|o| {
        o.header(headers::CHUNK)
            .split('/')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .expect("chunk index")
    });
    let mut whole = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk.header(headers::CHUNK), format!("{index}/{count}"));
        assert_eq!(chunk.header(headers::EVENT_ID), big_id);
        assert_eq!(chunk.header(headers::ERROR_KIND), "oversize");
        assert!(chunk.payload.len() <= 1_000_000);
        whole.extend_from_slice(&chunk.payload);
    }
    assert_eq!(whole.len(), BIG);
    assert!(
        whole == big,
        "the chunks reassemble the payload byte for byte"
    );
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&big)));
    for chunk in &chunks {
        assert_eq!(chunk.header(headers::CHUNK_DIGEST), digest);
    }

    let dq_events = read_topics(
        endpoints,
        &[topics::DQ_EVENTS.to_owned()],
        "read_uncommitted",
        Duration::from_secs(30),
        |read| read.iter().any(|o| o.header(headers::EVENT_ID) == big_id),
    );
    let companion: Vec<&Output> = dq_events
        .iter()
        .filter(|o| o.header(headers::EVENT_ID) == big_id)
        .collect();
    assert_eq!(companion.len(), 1, "one dq.events record for the big one");
    let body: serde_json::Value =
        serde_json::from_slice(&companion[0].payload).expect("dq.events JSON");
    assert_eq!(body["error_kind"], "oversize");
}

/// A mesh record the producer refuses for good (here: over a `message.max.bytes` set low)
/// stops the service, naming the topic and the error, instead of being retried forever; the
/// record's offset stays uncommitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_mesh_write_error_stops_the_service_naming_the_topic() {
    let setup = setup(
        "mesh:\n  producer_properties: { message.max.bytes: \"2000\" }\nservice:\n  shutdown_grace: 2s\n",
    )
    .await;
    let producer: FutureProducer = kafka::client_config(&setup.endpoints)
        .create()
        .expect("producer");
    let payload = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    producer
        .send(
            FutureRecord::<str, str>::to(&setup.source).payload(&payload),
            Duration::from_secs(20),
        )
        .await
        .expect("source record accepted");
    let log = setup.dir.join("service.log");
    let mut service = spawn(&setup, &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = service.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running; log:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{text}");
    let mesh = topics::mesh(&setup.dataset);
    assert!(
        text.contains(&format!("cannot write to topic `{mesh}`")) && text.contains("permanent"),
        "the error names the topic: {text}"
    );
    assert_eq!(
        committed_offset(&setup.endpoints, &setup.group, &setup.source),
        None,
        "the refused record is not committed"
    );
}
