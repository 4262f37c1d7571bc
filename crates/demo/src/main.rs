//! The demo run by `scripts/dev demo`: sends a handful of events through every local server and
//! prints where each one landed, read back from the server itself (not from what we sent).
//! Resource names are fixed (`demo.*`, `summit-demo-*`) so re-running shows them growing.
//! Then the pipeline demo (`pipeline.rs`): a mix of orders through the kafka-consumer service.

mod pipeline;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use summit_test_support::{Endpoints, dynamodb, kafka, kinesis, sqs};

const EVENTS: [(&str, &str); 3] = [
    (
        "order-1001",
        r#"{"order_id":"order-1001","amount":42.5,"currency":"EUR"}"#,
    ),
    (
        "order-1002",
        r#"{"order_id":"order-1002","amount":7.0,"currency":"USD"}"#,
    ),
    (
        "order-1003",
        r#"{"order_id":"order-1003","amount":-1,"currency":"XXX"}"#,
    ),
];
/// Not `summit-event-id`: that one is derived from where a record landed (DESIGN §3) and is
/// stamped by the consumers, never by a producer.
const DEMO_ORDER_HEADER: &str = "demo-order-id";
const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<()> {
    let endpoints = Endpoints::from_env();
    println!(
        "Summit Ingest demo: {} events through each local server\n",
        EVENTS.len()
    );
    kafka_tour(&endpoints).await.context("kafka (tansu)")?;
    kinesis_tour(&endpoints)
        .await
        .context("kinesis (kinesis-local)")?;
    dynamodb_tour(&endpoints)
        .await
        .context("dynamodb (dynalite)")?;
    sqs_tour(&endpoints).await.context("sqs (moto)")?;
    postgres_tour(&endpoints).await.context("postgres")?;
    pipeline::pipeline_demo(&endpoints)
        .await
        .context("pipeline (kafka-consumer)")?;
    Ok(())
}

async fn kafka_tour(endpoints: &Endpoints) -> Result<()> {
    // Not `demo.orders`: that topic is the pipeline demo's source and holds Avro only.
    let topic = "demo.tour";
    kafka::create_named_topic(endpoints, topic, 3).await?;
    let producer: FutureProducer = kafka::client_config(endpoints)
        .set("enable.idempotence", "true")
        .create()?;
    let mut landed = Vec::new();
    for (key, value) in EVENTS {
        let headers = OwnedHeaders::new().insert(Header {
            key: DEMO_ORDER_HEADER,
            value: Some(key),
        });
        let delivery = producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(headers),
                TIMEOUT,
            )
            .await
            .map_err(|(e, _)| e)?;
        landed.push((key, delivery.partition, delivery.offset));
    }

    // Read each record back from the broker at the position it was acknowledged at.
    let reader: BaseConsumer = kafka::client_config(endpoints)
        .set("group.id", "summit-demo-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    for (key, partition, offset) in landed {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        reader.assign(&assignment)?;
        let message = loop {
            match reader.poll(TIMEOUT) {
                Some(Ok(m)) if m.offset() == offset => break m.detach(),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("record {key} not readable at {topic}/{partition}/{offset}"),
            }
        };
        let event_id = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == DEMO_ORDER_HEADER))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        println!(
            "  kafka     {key}  ->  topic {topic} partition {partition} offset {offset} (header {}={event_id})",
            DEMO_ORDER_HEADER
        );
    }
    Ok(())
}

async fn kinesis_tour(endpoints: &Endpoints) -> Result<()> {
    let client = kinesis::client(endpoints).await;
    let stream = "summit-demo-orders";
    let exists = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .is_ok();
    if !exists {
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(2)
            .send()
            .await?;
    }
    kinesis::wait_active(&client, stream, TIMEOUT).await?;
    for (key, value) in EVENTS {
        let put = client
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(value))
            .send()
            .await?;
        // Read it back with an AT_SEQUENCE_NUMBER iterator: proof the stream holds it there.
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(put.shard_id())
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(put.sequence_number())
            .send()
            .await?
            .shard_iterator
            .context("no shard iterator")?;
        let records = client
            .get_records()
            .shard_iterator(iterator)
            .limit(1)
            .send()
            .await?;
        let first = records
            .records()
            .first()
            .context("record not readable back")?;
        if first.data().as_ref() != value.as_bytes() {
            bail!(
                "stream returned another record at {}",
                put.sequence_number()
            );
        }
        println!(
            "  kinesis   {key}  ->  stream {stream} {} sequence {}",
            put.shard_id(),
            put.sequence_number()
        );
    }
    Ok(())
}

async fn dynamodb_tour(endpoints: &Endpoints) -> Result<()> {
    let client = dynamodb::client(endpoints).await;
    let table = "summit-demo-checkpoints";
    if client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_err()
    {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("event_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("event_id")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await?;
        // dynalite is started with --createTableMs 50.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (key, value) in EVENTS {
        client
            .put_item()
            .table_name(table)
            .item("event_id", AttributeValue::S(key.into()))
            .item("payload", AttributeValue::S(value.into()))
            .send()
            .await?;
        let item = client
            .get_item()
            .table_name(table)
            .key("event_id", AttributeValue::S(key.into()))
            .consistent_read(true)
            .send()
            .await?
            .item
            .context("item not readable back")?;
        println!(
            "  dynamodb  {key}  ->  table {table} item event_id={key} ({} attributes)",
            item.len()
        );
    }
    Ok(())
}

async fn sqs_tour(endpoints: &Endpoints) -> Result<()> {
    let client = sqs::client(endpoints).await;
    let queue = client
        .create_queue()
        .queue_name("summit-demo-dlq")
        .send()
        .await?
        .queue_url
        .context("no queue url")?;
    for (key, value) in EVENTS {
        let sent = client
            .send_message()
            .queue_url(&queue)
            .message_body(value)
            .message_attributes(
                DEMO_ORDER_HEADER,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(key)
                    .build()?,
            )
            .send()
            .await?;
        println!(
            "  sqs       {key}  ->  queue {queue} message {}",
            sent.message_id().unwrap_or("?")
        );
    }
    let depth = client
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    let depth = depth
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_default();
    println!("  sqs       queue now holds {depth} message(s)");
    Ok(())
}

async fn postgres_tour(endpoints: &Endpoints) -> Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&endpoints.postgres_admin_url)
        .await?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS summit_demo;
         CREATE TABLE IF NOT EXISTS summit_demo.events (
             id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, payload JSONB NOT NULL,
             received_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    for (key, value) in EVENTS {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO summit_demo.events (event_id, payload) VALUES ($1, $2::jsonb) RETURNING id",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&pool)
        .await?;
        println!("  postgres  {key}  ->  table summit_demo.events row id {id}");
    }
    pool.close().await;
    Ok(())
}
