//! The emitter against the local tansu broker (and against a closed port).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use summit_kafka::LineageEmitter;
use summit_lineage::{
    Assertion, DatasetName, EpochInput, EpochOutput, EpochReport, OffsetRange, SchemaField,
    SchemaUsed,
};
use summit_lineage::{
    EmitError, EventType, LineageRun, RetryBudget, RunEnd, RunEvent, SpecValidator,
};
use summit_test_support::{Endpoints, kafka, unique_name};

fn report(bootstrap: &str, epoch_id: u64) -> EpochReport {
    EpochReport {
        epoch_id,
        inputs: vec![EpochInput {
            dataset: DatasetName::kafka(bootstrap, "orders"),
            offset_ranges: vec![OffsetRange::kafka(
                0,
                10 * epoch_id as i64,
                10 * epoch_id as i64 + 9,
            )],
            row_count: Some(10),
            bytes: None,
        }],
        outputs: vec![EpochOutput {
            dataset: DatasetName::kafka(bootstrap, "mesh.orders"),
            assertions: vec![Assertion {
                assertion: "amount_positive".to_owned(),
                success: true,
                column: Some("amount".to_owned()),
                severity: Some("error".to_owned()),
                actual: Some("0/10".to_owned()),
            }],
        }],
        schema: Some(SchemaUsed {
            id: "orders-value/1".to_owned(),
            fields: vec![SchemaField::new("amount", "double")],
        }),
        ruleset: Some("orders@abc".to_owned()),
    }
}

async fn read_back(
    endpoints: &Endpoints,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, String, Vec<u8>)> {
    let consumer: StreamConsumer = kafka::consumer_config(endpoints, &unique_name("lineage-read"))
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records.len() < expected && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(Ok(message)) => records.push((
                message.partition(),
                String::from_utf8(message.key().expect("keyed").to_vec()).expect("utf-8 key"),
                message.payload().expect("payload").to_vec(),
            )),
            Ok(Err(error)) => panic!("consume failed: {error}"),
            Err(_) => {}
        }
    }
    records
}

#[tokio::test]
async fn run_events_land_keyed_by_run_id_in_order_and_valid() {
    let endpoints = Endpoints::from_env();
    let topic = kafka::create_topic(&endpoints, "lineage-events", 2)
        .await
        .expect("topic");
    let emitter = LineageEmitter::new(
        kafka::client_config(&endpoints),
        topic.clone(),
        RetryBudget::default(),
    )
    .expect("emitter");

    let (run, start) = LineageRun::start("kafka-consumer", "orders", "pod-0");
    let epoch_1 = run.epoch_complete(report(&endpoints.kafka_bootstrap, 1));
    let epoch_2 = run.epoch_complete(report(&endpoints.kafka_bootstrap, 2));
    let complete = run.finish(RunEnd::Complete);
    let sent = [&start, &epoch_1, &epoch_2, &complete];
    for event in sent {
        let sending = Instant::now();
        let delivered = emitter.emit(event).await.expect("broker acknowledges");
        eprintln!(
            "{:?} acknowledged in {:?}",
            event.event_type,
            sending.elapsed()
        );
        assert_eq!(delivered.attempts, 1);
    }
    // A retried emission of an epoch is the same event under the same key.
    emitter.emit(&epoch_1).await.expect("re-emit");

    let records = read_back(&endpoints, &topic, 2, 5).await;
    assert_eq!(records.len(), 5, "all events read back");

    let validator = SpecValidator::new().expect("spec");
    let mut by_key: BTreeMap<String, Vec<(i32, RunEvent)>> = BTreeMap::new();
    for (partition, key, payload) in &records {
        let json: serde_json::Value = serde_json::from_slice(payload).expect("JSON payload");
        if let Err(errors) = validator.validate(&json) {
            panic!("invalid event read back: {errors:#?}\n{json:#}");
        }
        let event: RunEvent = serde_json::from_value(json).expect("a RunEvent");
        assert_eq!(key, &event.run.run_id.to_string(), "keyed by run id");
        by_key
            .entry(key.clone())
            .or_default()
            .push((*partition, event));
    }
    assert_eq!(by_key.len(), 3, "instance run + two epoch runs");

    let instance = &by_key[&run.run_id().to_string()];
    let types: Vec<EventType> = instance.iter().map(|(_, e)| e.event_type).collect();
    assert_eq!(
        types,
        [EventType::Start, EventType::Complete],
        "order within the run"
    );
    assert_eq!(instance[0].1, start);
    assert_eq!(instance[1].1, complete);

    let epoch_1_copies = &by_key[&run.epoch_run_id(1).to_string()];
    assert_eq!(epoch_1_copies.len(), 2);
    assert_eq!(epoch_1_copies[0].1, epoch_1);
    assert_eq!(
        epoch_1_copies[1].1, epoch_1,
        "the re-emission is the same event"
    );
    assert_eq!(
        epoch_1_copies[0].0, epoch_1_copies[1].0,
        "same key, same partition"
    );
    assert_eq!(by_key[&run.epoch_run_id(2).to_string()][0].1, epoch_2);
}

#[tokio::test]
async fn unreachable_broker_exhausts_the_budget_with_an_error() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", closed.to_string());
    let budget = RetryBudget {
        attempts: 3,
        total: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(1),
        initial_backoff: Duration::from_millis(100),
    };
    let emitter = LineageEmitter::new(client, "lineage.events", budget).expect("emitter");
    let (_run, start) = LineageRun::start("kafka-consumer", "orders", "pod-0");

    let started = Instant::now();
    let error = emitter
        .emit(&start)
        .await
        .expect_err("nothing to deliver to");
    let elapsed = started.elapsed();
    eprintln!("gave up after {elapsed:?}: {error}");
    match &error {
        EmitError::BudgetExhausted {
            run_id, attempts, ..
        } => {
            assert_eq!(run_id, &start.run.run_id.to_string());
            assert!(*attempts >= 2, "retried before giving up: {error}");
        }
        other => panic!("expected BudgetExhausted, got {other}"),
    }
    assert!(error.is_retriable());
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "gave up after {elapsed:?}, budget 3 s"
    );
}
