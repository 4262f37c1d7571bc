//! Kafka topics per test on the local tansu broker.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::{Endpoints, Result, SupportError, unique_name};

/// A client config pointed at the local broker, with the settings every test wants.
pub fn client_config(endpoints: &Endpoints) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &endpoints.kafka_bootstrap)
        // tansu on memory storage is quick; fail fast rather than hang a test for minutes.
        .set("socket.timeout.ms", "10000");
    config
}

/// A consumer config for `group`: manual commits, reading from the earliest offset.
///
/// tansu answers a JoinGroup only after half the session timeout has passed (it waits that long
/// for other members), so librdkafka's 45 s default makes every join take ~23 s. 6 s is the
/// smallest timeout Kafka brokers accept by default and brings a join down to ~3 s.
pub fn consumer_config(endpoints: &Endpoints, group: &str) -> ClientConfig {
    let mut config = client_config(endpoints);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    config
}

/// Creates a topic named `<prefix>-<unique>` with `partitions` partitions and returns its name.
pub async fn create_topic(endpoints: &Endpoints, prefix: &str, partitions: i32) -> Result<String> {
    let name = unique_name(prefix);
    create_named_topic(endpoints, &name, partitions).await?;
    Ok(name)
}

/// Creates `name` if it does not exist yet (an existing topic is not an error).
pub async fn create_named_topic(endpoints: &Endpoints, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(endpoints)
            .create()
            .map_err(|e| SupportError::Unreachable {
                server: "kafka",
                endpoint: endpoints.kafka_bootstrap.clone(),
                source: Box::new(e),
            })?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| SupportError::Unreachable {
            server: "kafka",
            endpoint: endpoints.kafka_bootstrap.clone(),
            source: Box::new(e),
        })?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(SupportError::Create {
                    server: "kafka",
                    what: "topic",
                    name: topic,
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
