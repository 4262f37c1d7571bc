//! The pipeline demo: a producer sends a mix of orders (good, soft_fail, hard_fail, poison) to
//! `demo.orders`, the `kafka-consumer` binary runs as a child until every one of them is
//! accounted for, and the demo prints, for this run's records only, how many landed where and
//! one sample of each destination with its headers.
//!
//! "This run's records" are found by event id: the demo knows where each record landed
//! (partition, offset) and derives the id exactly as the service does, and it reads the
//! outputs only from their end offsets before the run. So re-running on the long-lived broker
//! counts only the new records.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use summit_envelope::{SourceCoordinates, event_id, headers, now_millis, topics};
use summit_schema::{DecodedPayload, Decoder, RegistryClient, SchemaDefinition, encode_avro};
use summit_test_support::{Endpoints, kafka};

const SOURCE: &str = "demo.orders";
const DATASET: &str = "orders";
const SUBJECT: &str = "orders-value";
/// The `<cluster>` of `summit-source`; set on the service too, so the ids derived here match.
const CLUSTER: &str = "local";
const WAIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Destination {
    Mesh,
    Quarantine,
    Dropped,
    Dlq,
}

impl Destination {
    fn label(self) -> String {
        match self {
            Self::Mesh => topics::mesh(DATASET),
            Self::Quarantine => topics::quarantine(DATASET),
            Self::Dropped => format!("dropped (hard_fail; only a {} record)", topics::DQ_EVENTS),
            Self::Dlq => topics::dlq(SOURCE),
        }
    }
}

/// One order of the mix and where the rules should send it.
struct Order {
    what: &'static str,
    expect: Destination,
    value: Vec<u8>,
}

fn order_value(
    schema: &Schema,
    id: u32,
    n: u32,
    order_id: &str,
    amount_cents: i64,
    channel: Option<&str>,
) -> Result<Vec<u8>> {
    let value = Avro::Record(vec![
        ("order_id".into(), Avro::String(order_id.to_owned())),
        (
            "customer_id".into(),
            Avro::String(format!("cust-{}", n % 7)),
        ),
        ("amount_cents".into(), Avro::Long(amount_cents)),
        ("currency".into(), Avro::Enum(0, "EUR".into())),
        ("created_at".into(), Avro::TimestampMillis(now_millis())),
        (
            "channel".into(),
            match channel {
                Some(c) => Avro::Union(1, Box::new(Avro::String(c.to_owned()))),
                None => Avro::Union(0, Box::new(Avro::Null)),
            },
        ),
    ]);
    Ok(encode_avro(id, schema, value)?)
}

/// 12 good, 4 soft_fail, 2 hard_fail, 2 poison.
fn mix(schema: &Schema, id: u32) -> Result<Vec<Order>> {
    let run = now_millis() % 1_000_000;
    let mut orders = Vec::new();
    for n in 0..12u32 {
        let channel = ["web", "app", "store"][n as usize % 3];
        orders.push(Order {
            what: "good order",
            expect: Destination::Mesh,
            value: order_value(
                schema,
                id,
                n,
                &format!("ord-{run}{n:02}"),
                1_000 + i64::from(n) * 250,
                Some(channel),
            )?,
        });
    }
    for n in 0..2u32 {
        orders.push(Order {
            what: "large order (amount-needs-review)",
            expect: Destination::Quarantine,
            value: order_value(
                schema,
                id,
                n,
                &format!("ord-{run}5{n}"),
                750_000,
                Some("web"),
            )?,
        });
        orders.push(Order {
            what: "unknown channel (channel-known)",
            expect: Destination::Quarantine,
            value: order_value(schema, id, n, &format!("ord-{run}6{n}"), 4_200, Some("fax"))?,
        });
    }
    orders.push(Order {
        what: "negative amount (amount-positive)",
        expect: Destination::Dropped,
        value: order_value(schema, id, 1, &format!("ord-{run}70"), -500, Some("app"))?,
    });
    orders.push(Order {
        what: "malformed order id (order-id-format)",
        expect: Destination::Dropped,
        value: order_value(schema, id, 2, "ORDER#??", 1_200, Some("store"))?,
    });
    orders.push(Order {
        what: "poison: JSON sent to an Avro topic",
        expect: Destination::Dlq,
        value: br#"{"order_id":"ord-1","amount_cents":100}"#.to_vec(),
    });
    orders.push(Order {
        what: "poison: framed with a schema id the registry does not know",
        expect: Destination::Dlq,
        value: summit_schema::wire::frame(987_654_321, b"\x02\x04junk"),
    });
    Ok(orders)
}

/// The subject's latest schema, registering `schemas/orders-value` (v1, then v2) if absent.
async fn orders_schema(registry: &RegistryClient) -> Result<(u32, Schema)> {
    if registry.latest(SUBJECT).await.is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/orders-value");
        for version in ["v1.avsc", "v2.avsc"] {
            let text = std::fs::read_to_string(dir.join(version))
                .with_context(|| format!("reading schemas/orders-value/{version}"))?;
            registry
                .register(SUBJECT, &SchemaDefinition::avro(text))
                .await
                .with_context(|| format!("registering {SUBJECT} {version}"))?;
        }
        println!("  registered {SUBJECT} (v1, v2) in the schema registry");
    }
    let latest = registry.latest(SUBJECT).await?;
    let schema = Schema::parse_str(&latest.definition.schema)
        .with_context(|| format!("{SUBJECT} v{} is not Avro", latest.version))?;
    println!(
        "  schema: {SUBJECT} version {} (registry id {})",
        latest.version, latest.id
    );
    Ok((latest.id, schema))
}

fn service_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SUMMIT_KAFKA_CONSUMER_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/kafka-consumer")
}

/// The output topics' end offsets now: this run's outputs come after them.
fn end_offsets(consumer: &BaseConsumer, names: &[String]) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for name in names {
        let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(10))?;
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                let (_, high) =
                    consumer.fetch_watermarks(name, partition.id(), Duration::from_secs(10))?;
                list.add_partition_offset(name, partition.id(), Offset::Offset(high))?;
            }
        }
    }
    Ok(list)
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn destination_of(message: &OwnedMessage) -> Option<Destination> {
    let topic = message.topic();
    if topic == topics::mesh(DATASET) {
        Some(Destination::Mesh)
    } else if topic == topics::quarantine(DATASET) {
        Some(Destination::Quarantine)
    } else if topic == topics::dlq(SOURCE) {
        Some(Destination::Dlq)
    } else if header(message, headers::DQ).as_deref() == Some("hard_fail") {
        Some(Destination::Dropped)
    } else {
        None
    }
}

fn stop(child: &mut Child) -> Result<Option<i32>> {
    // SIGTERM: the service drains, commits and exits within its grace period.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill()?;
    bail!("kafka-consumer did not stop within 20 s of SIGTERM")
}

pub(crate) async fn pipeline_demo(endpoints: &Endpoints) -> Result<()> {
    println!(
        "\nPipeline: demo producer -> {SOURCE} -> kafka-consumer -> mesh / quarantine / dq.events / DLQ"
    );
    let registry = Arc::new(RegistryClient::new(&endpoints.schema_registry)?);
    let (schema_id, schema) = orders_schema(&registry).await?;

    kafka::create_named_topic(endpoints, SOURCE, 3).await?;
    let outputs = [
        topics::mesh(DATASET),
        topics::quarantine(DATASET),
        topics::DQ_EVENTS.to_owned(),
        topics::dlq(SOURCE),
    ];
    for name in &outputs {
        kafka::create_named_topic(endpoints, name, 1).await?;
    }
    let reader: BaseConsumer = kafka::client_config(endpoints)
        .set("group.id", "summit-demo-reader")
        .set("enable.auto.commit", "false")
        // A start offset past the end (a topic re-created since) reads the topic from the start.
        .set("auto.offset.reset", "earliest")
        // The exactly_once service writes dq.events inside transactions, and tansu 0.6 can leave
        // the topic's last stable offset stuck (an unfinished transaction): a read_committed
        // reader then sees nothing new there. This run's records are not transactional.
        .set("isolation.level", "read_uncommitted")
        .create()?;
    let start = end_offsets(&reader, &outputs)?;

    let producer: FutureProducer = kafka::client_config(endpoints)
        .set("enable.idempotence", "true")
        .create()?;
    let orders = mix(&schema, schema_id)?;
    let mut sent: HashMap<String, (&Order, i32, i64)> = HashMap::new();
    for (n, order) in orders.iter().enumerate() {
        let key = format!("cust-{}", n % 7);
        let delivery = producer
            .send(
                FutureRecord::to(SOURCE).key(&key).payload(&order.value),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)?;
        let id = event_id(&SourceCoordinates::Kafka {
            cluster: CLUSTER.to_owned(),
            topic: SOURCE.to_owned(),
            partition: delivery.partition,
            offset: delivery.offset,
        })
        .to_string();
        sent.insert(id, (order, delivery.partition, delivery.offset));
    }
    let expected_counts = |d: Destination| orders.iter().filter(|o| o.expect == d).count();
    println!(
        "  sent {} orders to {SOURCE}: {} good, {} soft_fail, {} hard_fail, {} poison",
        orders.len(),
        expected_counts(Destination::Mesh),
        expected_counts(Destination::Quarantine),
        expected_counts(Destination::Dropped),
        expected_counts(Destination::Dlq),
    );

    let binary = service_binary();
    let log = std::env::temp_dir().join("summit-demo-kafka-consumer.log");
    let config_dir = std::env::var("SUMMIT_DEMO_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("config"));
    let log_file = std::fs::File::create(&log)?;
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(config_dir.join("kafka-consumer.yaml"))
        .env(
            "SUMMIT_KAFKA__BOOTSTRAP_SERVERS",
            &endpoints.kafka_bootstrap,
        )
        .env("SUMMIT_KAFKA__CLUSTER_NAME", CLUSTER)
        .env("SUMMIT_SCHEMA_REGISTRY__URL", &endpoints.schema_registry)
        .env("RUST_LOG", "warn,kafka_consumer=info,summit_ingest=info")
        // Logs go to stdout, errors before logging starts to stderr: keep both.
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it: cargo build -p kafka-consumer)",
                binary.display()
            )
        })?;
    println!(
        "  started kafka-consumer (pid {}, log {})",
        child.id(),
        log.display()
    );

    // Read this run's outputs until every sent record is accounted for.
    reader.assign(&start)?;
    let started = Instant::now();
    let mut landed: BTreeMap<Destination, Vec<OwnedMessage>> = BTreeMap::new();
    let mut dq_events: Vec<OwnedMessage> = Vec::new();
    let mut accounted: HashMap<String, Destination> = HashMap::new();
    // Every record that did not pass also owes a dq.events record, written beside its data
    // record: keep reading until those are in too, not only until each record has landed.
    let owed_dq_events = sent
        .values()
        .filter(|(order, _, _)| order.expect != Destination::Mesh)
        .count();
    let mut dq_event_ids: std::collections::HashSet<String> = std::collections::HashSet::new();
    while (accounted.len() < sent.len() || dq_event_ids.len() < owed_dq_events)
        && started.elapsed() < WAIT
    {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "kafka-consumer exited early ({status}); see {}",
                log.display()
            );
        }
        let Some(received) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = received?.detach();
        let Some(id) = header(&message, headers::EVENT_ID) else {
            continue;
        };
        if !sent.contains_key(&id) {
            continue; // an earlier run's output
        }
        if message.topic() == topics::DQ_EVENTS {
            dq_event_ids.insert(id.clone());
            dq_events.push(message.clone());
        }
        if let Some(destination) = destination_of(&message) {
            accounted.insert(id, destination);
            landed.entry(destination).or_default().push(message);
        }
    }
    let elapsed = started.elapsed();
    let exit = stop(&mut child)?;
    let exit = exit.map_or("none (signal)".to_owned(), |c| c.to_string());
    if accounted.len() == sent.len() {
        println!(
            "  all accounted for after {:.1} s (incl. consumer-group join); kafka-consumer stopped by SIGTERM, exit code {exit}",
            elapsed.as_secs_f64(),
        );
    } else {
        println!(
            "  only {} of {} accounted for after {:.1} s; kafka-consumer stopped by SIGTERM, exit code {exit}",
            accounted.len(),
            sent.len(),
            elapsed.as_secs_f64(),
        );
        for element in start.elements() {
            let (low, high) = reader
                .fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    Duration::from_secs(10),
                )
                .unwrap_or((-1, -1));
            println!(
                "    {}/{}: read from {:?}, now holds offsets {low}..{high}",
                element.topic(),
                element.partition(),
                element.offset()
            );
        }
    }

    // Effectively-once allows repeats (same event id written twice); show them, do not hide them.
    let distinct = |messages: &[OwnedMessage]| {
        messages
            .iter()
            .filter_map(|m| header(m, headers::EVENT_ID))
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    println!("\n  destination                                   records  event ids  expected");
    for destination in [
        Destination::Mesh,
        Destination::Quarantine,
        Destination::Dropped,
        Destination::Dlq,
    ] {
        let messages = landed.get(&destination).map_or(&[][..], Vec::as_slice);
        println!(
            "  {:<45} {:>7}  {:>9}  {:>8}",
            destination.label(),
            messages.len(),
            distinct(messages),
            expected_counts(destination)
        );
    }
    // Which records the dq.events entries are about, by the destination of their source record.
    let mut about: BTreeMap<Destination, usize> = BTreeMap::new();
    for message in &dq_events {
        if let Some((order, _, _)) = header(message, headers::EVENT_ID).and_then(|id| sent.get(&id))
        {
            *about.entry(order.expect).or_default() += 1;
        }
    }
    let about: Vec<String> = about
        .iter()
        .map(|(d, n)| format!("{n} for {}", d.label()))
        .collect();
    println!(
        "  {:<45} {:>7}  {:>9}  {:>8}  ({})",
        topics::DQ_EVENTS,
        dq_events.len(),
        distinct(&dq_events),
        orders.len() - expected_counts(Destination::Mesh),
        about.join(", ")
    );
    println!(
        "  (expected in {}: one per record that did not pass: soft_fail, hard_fail, DLQ)",
        topics::DQ_EVENTS
    );
    let mut copies: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for message in landed.values().flatten().chain(&dq_events) {
        let id = header(message, headers::EVENT_ID).unwrap_or_default();
        copies
            .entry((message.topic().to_owned(), id))
            .or_default()
            .push(message.offset());
    }
    for ((topic, id), mut offsets) in copies {
        offsets.sort_unstable();
        offsets.dedup();
        if offsets.len() > 1 {
            println!(
                "  repeat: {topic} holds event id {id} {} times (offsets {offsets:?})",
                offsets.len()
            );
        }
    }

    let decoder = Decoder::new(registry);
    for (destination, messages) in &landed {
        let Some(sample) = messages.first() else {
            continue;
        };
        let what = header(sample, headers::EVENT_ID)
            .and_then(|id| {
                sent.get(&id)
                    .map(|(o, p, off)| format!("{} ({SOURCE}/{p}/{off})", o.what))
            })
            .unwrap_or_default();
        println!(
            "\n  sample of {}: {what}\n    topic {} partition {} offset {}",
            destination.label(),
            sample.topic(),
            sample.partition(),
            sample.offset()
        );
        if let Some(h) = sample.headers() {
            for header in h.iter() {
                let value = header
                    .value
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                println!("    {}: {value}", header.key);
            }
        }
        let payload = sample.payload().unwrap_or_default();
        let shown = match (destination, decoder.decode(payload, None).await) {
            (Destination::Mesh | Destination::Quarantine, Ok(decoded)) => match decoded.payload {
                DecodedPayload::Avro(value) => serde_json::Value::try_from(value)
                    .map(|j| j.to_string())
                    .unwrap_or_else(|e| format!("(Avro, not shown: {e})")),
                DecodedPayload::Json(value) => value.to_string(),
            },
            // DLQ values are whatever arrived, often binary: show those escaped.
            _ => match std::str::from_utf8(payload) {
                Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
                _ => payload.escape_ascii().to_string(),
            },
        };
        println!("    value: {shown}");
    }

    let mut wrong = Vec::new();
    for (id, (order, partition, offset)) in &sent {
        match accounted.get(id) {
            Some(d) if *d == order.expect => {}
            got => wrong.push(format!(
                "{SOURCE}/{partition}/{offset} {}: expected {}, got {}",
                order.what,
                order.expect.label(),
                got.map_or("nothing".to_owned(), |d| d.label())
            )),
        }
    }
    let dq_event_ids: std::collections::HashSet<String> = dq_events
        .iter()
        .filter_map(|m| header(m, headers::EVENT_ID))
        .collect();
    for (id, (order, partition, offset)) in &sent {
        if order.expect != Destination::Mesh && !dq_event_ids.contains(id) {
            wrong.push(format!(
                "{SOURCE}/{partition}/{offset} {}: no {} record",
                order.what,
                topics::DQ_EVENTS
            ));
        }
    }
    if !wrong.is_empty() {
        bail!(
            "{} records did not land where expected (log: {}):\n  {}",
            wrong.len(),
            log.display(),
            wrong.join("\n  ")
        );
    }
    println!(
        "\n  every record of this run is accounted for by its summit-event-id, in the destination its rules give"
    );
    print_rule_counts(&reader, sent.len() as u64)
}

/// The per-rule counts the service wrote to dq.events (`kind: "rule_counts"`, DESIGN §4): its
/// last window is written at SIGTERM, so it is there once the service has exited.
fn print_rule_counts(reader: &BaseConsumer, expected_records: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut windows: Vec<serde_json::Value> = Vec::new();
    let covered = |windows: &[serde_json::Value]| {
        windows
            .iter()
            .map(|w| w["records"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= expected_records
    };
    while !covered(&windows) && Instant::now() < deadline {
        let Some(received) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = received?;
        if message.topic() != topics::DQ_EVENTS {
            continue;
        }
        let Ok(body) =
            serde_json::from_slice::<serde_json::Value>(message.payload().unwrap_or_default())
        else {
            continue;
        };
        if body["kind"] == "rule_counts"
            && body["dataset"] == DATASET
            && body["instance"] == "summit-demo"
        {
            windows.push(body);
        }
    }
    let Some(last) = windows.last() else {
        println!(
            "  no rule_counts record in {} within 10 s",
            topics::DQ_EVENTS
        );
        return Ok(());
    };
    let total = |field: &str| {
        windows
            .iter()
            .map(|w| w[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    println!(
        "\n  {} per-rule counts (kind rule_counts, {} window(s), written every dq_counts.interval and at shutdown):\n    records {}: pass {}, soft_fail {}, hard_fail {}, dlq {}",
        topics::DQ_EVENTS,
        windows.len(),
        total("records"),
        total("pass"),
        total("soft_fail"),
        total("hard_fail"),
        total("dlq"),
    );
    for rule in last["rules"].as_array().into_iter().flatten() {
        let failures: u64 = windows
            .iter()
            .flat_map(|w| w["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["rule_id"] == rule["rule_id"])
            .map(|r| r["failures"].as_u64().unwrap_or(0))
            .sum();
        println!(
            "    {:<24} {:<5} failures {failures}",
            rule["rule_id"].as_str().unwrap_or_default(),
            rule["severity"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
