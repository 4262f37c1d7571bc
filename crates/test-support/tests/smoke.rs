//! Smoke tests of the local infrastructure through the exact crates the services use: rdkafka
//! against tansu, aws-sdk-kinesis against kinesis-local, aws-sdk-dynamodb against dynalite,
//! aws-sdk-sqs against moto, sqlx against PostgreSQL. Each test makes its own uniquely named
//! resources, so the suite runs in parallel and re-runs never collide.
//!
//! Run through `scripts/dev test` (which starts the servers), or `scripts/dev up` first.

use std::time::Duration;

use summit_test_support::Endpoints;

const WAIT: Duration = Duration::from_secs(30);

mod kafka {
    use super::*;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};
    use summit_test_support::{kafka, unique_name};

    fn consumer(endpoints: &Endpoints, group: &str) -> StreamConsumer {
        kafka::consumer_config(endpoints, group)
            .create()
            .expect("consumer")
    }

    async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: &str) -> i64 {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "summit-event-id",
                value: Some(key),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            });
        let delivery = producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(headers),
                WAIT,
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        delivery.offset
    }

    #[tokio::test]
    async fn produce_and_consume_keep_headers() {
        let endpoints = Endpoints::from_env();
        let topic = kafka::create_topic(&endpoints, "smoke-headers", 1)
            .await
            .expect("topic");
        let producer: FutureProducer = kafka::client_config(&endpoints)
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        produce(&producer, &topic, "event-1", "{\"n\":1}").await;

        let consumer = consumer(&endpoints, &unique_name("smoke-group"));
        consumer.subscribe(&[&topic]).expect("subscribe");
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("a record within the wait")
            .expect("record");
        assert_eq!(message.key(), Some(&b"event-1"[..]));
        assert_eq!(message.payload(), Some(&b"{\"n\":1}"[..]));
        let headers = message.headers().expect("headers travel");
        let found: Vec<(String, Option<Vec<u8>>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert!(
            found.contains(&("summit-event-id".to_owned(), Some(b"event-1".to_vec()))),
            "{found:?}"
        );
        assert!(
            found.iter().any(|(k, _)| k == "traceparent"),
            "traceparent lost: {found:?}"
        );
    }

    #[tokio::test]
    async fn consumer_group_resumes_after_committed_offset() {
        let endpoints = Endpoints::from_env();
        let topic = kafka::create_topic(&endpoints, "smoke-resume", 1)
            .await
            .expect("topic");
        let producer: FutureProducer = kafka::client_config(&endpoints).create().expect("producer");
        for i in 0..3 {
            produce(&producer, &topic, &format!("k{i}"), &format!("v{i}")).await;
        }
        let group = unique_name("smoke-resume-group");

        // First member reads the first record and commits past it.
        {
            let first = consumer(&endpoints, &group);
            first.subscribe(&[&topic]).expect("subscribe");
            let message = tokio::time::timeout(WAIT, first.recv())
                .await
                .expect("record within wait")
                .expect("record");
            assert_eq!(message.payload(), Some(&b"v0"[..]));
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(
                    &topic,
                    message.partition(),
                    Offset::Offset(message.offset() + 1),
                )
                .expect("offset");
            first.commit(&offsets, CommitMode::Sync).expect("commit");
            first.unsubscribe();
        }

        // A new member of the same group starts after the committed offset, not at the start.
        let second = consumer(&endpoints, &group);
        second.subscribe(&[&topic]).expect("subscribe");
        let message = tokio::time::timeout(WAIT, second.recv())
            .await
            .expect("record within wait")
            .expect("record");
        assert_eq!(
            message.payload(),
            Some(&b"v1"[..]),
            "resumed at the wrong offset"
        );
    }
}

mod kinesis {
    use super::*;
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::{
        ConsumerStatus, PutRecordsRequestEntry, ShardIteratorType, StartingPosition,
        SubscribeToShardEventStream,
    };
    use summit_test_support::{kinesis, unique_name};

    /// PutRecords `count` records `<prefix>-<i>` and checks none failed.
    async fn put_numbered(
        client: &aws_sdk_kinesis::Client,
        stream: &str,
        prefix: &str,
        count: usize,
    ) {
        let entries: Vec<_> = (0..count)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(format!("{prefix}-{i}")))
                    .partition_key(format!("pk-{i}"))
                    .build()
                    .expect("entry")
            })
            .collect();
        let put = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(put.failed_record_count, Some(0));
    }

    /// Every shard's records from TRIM_HORIZON (one GetRecords each), shard by shard.
    async fn read_every_shard(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<String> {
        let shards = client
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let mut bodies = Vec::new();
        for shard in shards.shards() {
            let iterator = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator
                .expect("iterator");
            let got = client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .expect("GetRecords");
            bodies.extend(
                got.records()
                    .iter()
                    .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned()),
            );
        }
        bodies
    }

    #[tokio::test]
    async fn put_records_then_get_records() {
        let endpoints = Endpoints::from_env();
        let client = kinesis::client(&endpoints).await;
        let stream = kinesis::create_stream(&client, "smoke-poll", 1)
            .await
            .expect("stream");
        put_numbered(&client, &stream, "record", 5).await;
        // One shard: the order of writing is kept.
        assert_eq!(
            read_every_shard(&client, &stream).await,
            (0..5).map(|i| format!("record-{i}")).collect::<Vec<_>>()
        );
    }

    /// kinesalite is the bulk-throughput stand-in (no fan-out): the same polling calls must work.
    #[tokio::test]
    async fn kinesalite_serves_the_polling_path() {
        let endpoints = Endpoints::from_env();
        let client = kinesis::kinesalite_client(&endpoints).await;
        let stream = kinesis::create_stream(&client, "smoke-bulk", 2)
            .await
            .expect("stream");
        put_numbered(&client, &stream, "bulk", 50).await;
        // Two shards together hold exactly what was written.
        let mut bodies = read_every_shard(&client, &stream).await;
        bodies.sort();
        let mut expected: Vec<String> = (0..50).map(|i| format!("bulk-{i}")).collect();
        expected.sort();
        assert_eq!(bodies, expected);
    }

    #[tokio::test]
    async fn subscribe_to_shard_receives_a_live_record() {
        let endpoints = Endpoints::from_env();
        let client = kinesis::client(&endpoints).await;
        let stream = kinesis::create_stream(&client, "smoke-efo", 1)
            .await
            .expect("stream");
        let description = client
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .expect("describe")
            .stream_description_summary
            .expect("summary");
        let consumer = client
            .register_stream_consumer()
            .stream_arn(description.stream_arn())
            .consumer_name(unique_name("smoke-consumer"))
            .send()
            .await
            .expect("RegisterStreamConsumer")
            .consumer
            .expect("consumer");
        let consumer_arn = consumer.consumer_arn().to_owned();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = client
                .describe_stream_consumer()
                .consumer_arn(&consumer_arn)
                .send()
                .await
                .expect("DescribeStreamConsumer")
                .consumer_description
                .map(|c| c.consumer_status);
            if status == Some(ConsumerStatus::Active) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "consumer never became ACTIVE"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shards = client
            .list_shards()
            .stream_name(&stream)
            .send()
            .await
            .expect("ListShards");
        let shard_id = shards.shards()[0].shard_id().to_owned();

        let mut subscription = client
            .subscribe_to_shard()
            .consumer_arn(&consumer_arn)
            .shard_id(&shard_id)
            .starting_position(
                StartingPosition::builder()
                    .r#type(ShardIteratorType::Latest)
                    .build()
                    .expect("position"),
            )
            .send()
            .await
            .expect("SubscribeToShard");

        // Written after the subscription opened: only a live push can deliver it.
        client
            .put_record()
            .stream_name(&stream)
            .partition_key("live")
            .data(Blob::new("live-record"))
            .send()
            .await
            .expect("PutRecord");

        let received = tokio::time::timeout(WAIT, async {
            loop {
                match subscription
                    .event_stream
                    .recv()
                    .await
                    .expect("event stream")
                {
                    Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)) => {
                        if let Some(record) = event.records().first() {
                            return String::from_utf8_lossy(record.data().as_ref()).into_owned();
                        }
                    }
                    Some(_) => {}
                    None => panic!("subscription ended before the live record arrived"),
                }
            }
        })
        .await
        .expect("live record within the wait");
        assert_eq!(received, "live-record");
    }
}

mod dynamodb {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use summit_test_support::dynamodb;

    #[tokio::test]
    async fn conditional_put_fails_for_the_second_writer() {
        let endpoints = Endpoints::from_env();
        let client = dynamodb::client(&endpoints).await;
        let table = dynamodb::create_table(&client, "smoke-leases", "lease_key")
            .await
            .expect("table");

        let claim = |owner: &'static str| {
            client
                .put_item()
                .table_name(&table)
                .item("lease_key", AttributeValue::S("shard-0001".into()))
                .item("owner", AttributeValue::S(owner.into()))
                .condition_expression("attribute_not_exists(lease_key)")
                .send()
        };
        claim("worker-a").await.expect("first writer wins");
        let second = claim("worker-b").await;
        let err = second.expect_err("second writer must lose the condition");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()),
            "unexpected error: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&err)
        );

        let item = client
            .get_item()
            .table_name(&table)
            .key("lease_key", AttributeValue::S("shard-0001".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
            .expect("item");
        assert_eq!(
            item.get("owner"),
            Some(&AttributeValue::S("worker-a".into()))
        );
    }
}

mod sqs {
    use super::*;
    use aws_sdk_sqs::types::MessageAttributeValue;
    use summit_test_support::sqs;

    #[tokio::test]
    async fn send_receive_delete_with_attributes() {
        let endpoints = Endpoints::from_env();
        let client = sqs::client(&endpoints).await;
        let queue = sqs::create_queue(&client, "smoke-dlq")
            .await
            .expect("queue");

        client
            .send_message()
            .queue_url(&queue)
            .message_body("poison payload")
            .message_attributes(
                "summit-error-kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("decode")
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("SendMessage");

        let received = client
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = received.messages();
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.body(), Some("poison payload"));
        assert_eq!(
            message
                .message_attributes()
                .and_then(|a| a.get("summit-error-kind"))
                .and_then(|v| v.string_value()),
            Some("decode")
        );

        client
            .delete_message()
            .queue_url(&queue)
            .receipt_handle(message.receipt_handle().expect("receipt handle"))
            .send()
            .await
            .expect("DeleteMessage");
        let after = client
            .receive_message()
            .queue_url(&queue)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        assert!(after.messages().is_empty(), "deleted message came back");
    }
}

mod postgres {
    use super::*;
    use summit_test_support::postgres::TestDatabase;

    #[tokio::test]
    async fn sqlx_round_trip_in_a_fresh_database() {
        let endpoints = Endpoints::from_env();
        let db = TestDatabase::create(&endpoints, "smoke")
            .await
            .expect("database");
        sqlx::query("CREATE TABLE checkpoints (shard TEXT PRIMARY KEY, sequence TEXT NOT NULL)")
            .execute(&db.pool)
            .await
            .expect("create table");
        sqlx::query("INSERT INTO checkpoints (shard, sequence) VALUES ($1, $2)")
            .bind("shard-0001")
            .bind("49590338271490256608559692538361571095921575989136588898")
            .execute(&db.pool)
            .await
            .expect("insert");
        let (sequence,): (String,) =
            sqlx::query_as("SELECT sequence FROM checkpoints WHERE shard = $1")
                .bind("shard-0001")
                .fetch_one(&db.pool)
                .await
                .expect("select");
        assert_eq!(
            sequence,
            "49590338271490256608559692538361571095921575989136588898"
        );
        db.drop_database().await.expect("drop");
    }

    #[tokio::test]
    async fn a_test_database_is_dropped_with_its_value() {
        let endpoints = Endpoints::from_env();
        let db = TestDatabase::create(&endpoints, "smoke_drop")
            .await
            .expect("database");
        let name = db.name.clone();
        let admin = sqlx::PgPool::connect(&endpoints.postgres_admin_url)
            .await
            .expect("admin pool");
        let exists = |admin: sqlx::PgPool, name: String| async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            )
            .bind(name)
            .fetch_one(&admin)
            .await
            .expect("pg_database")
        };
        assert!(exists(admin.clone(), name.clone()).await);
        drop(db);
        assert!(!exists(admin, name).await, "dropped when the value was");
    }
}

mod fault_injection {
    use super::*;
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    use summit_test_support::fault_proxy::Fault;
    use summit_test_support::kafka::{self, ProxiedBroker};

    #[tokio::test]
    async fn a_blackholed_broker_stops_deliveries_until_it_is_lifted() {
        let base = Endpoints::from_env();
        let broker = ProxiedBroker::start().await.expect("private broker");
        let endpoints = broker.endpoints(&base);
        let topic = kafka::create_topic(&endpoints, "smoke-proxy", 1)
            .await
            .expect("topic");
        let producer: FutureProducer = kafka::client_config(&endpoints)
            .set("message.timeout.ms", "20000")
            .create()
            .expect("producer");
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("a")
                    .payload("through the proxy"),
                WAIT,
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered through the proxy");
        let (up, _) = broker.proxy.bytes_forwarded();
        assert!(up > 0, "traffic bypassed the proxy");

        broker.proxy.set_fault(Fault::Blackhole);
        let stuck = producer.send(FutureRecord::to(&topic).key("b").payload("held"), WAIT);
        tokio::pin!(stuck);
        assert!(
            tokio::time::timeout(Duration::from_secs(2), &mut stuck)
                .await
                .is_err(),
            "a delivery was acknowledged while the broker was blackholed"
        );

        broker.proxy.set_fault(Fault::None);
        stuck
            .await
            .map_err(|(e, _)| e)
            .expect("delivered once the blackhole lifted");
        producer.flush(WAIT).expect("flush");
    }
}
