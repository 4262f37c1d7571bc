//! `dq.events` writes outside the per-record path: the periodic per-rule counts
//! (`summit_ingest::rule_counts`) through an idempotent producer of their own.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use summit_envelope::topics;
use summit_ingest::commit::{BoxFuture, Cause};
use summit_ingest::rule_counts::CountsWriter;

use crate::ProducerSettings;

/// Bound on one record's delivery (librdkafka retries within it).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The Kafka [`CountsWriter`]: JSON records to `dq.events`, keyed by dataset.
pub struct DqEventsWriter {
    producer: FutureProducer,
}

impl std::fmt::Debug for DqEventsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DqEventsWriter")
    }
}

impl DqEventsWriter {
    pub fn new(settings: &ProducerSettings) -> Result<Self, rdkafka::error::KafkaError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("client.id", &settings.client_id)
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        for (key, value) in &settings.properties {
            client.set(key, value);
        }
        Ok(Self {
            producer: client.create()?,
        })
    }
}

impl CountsWriter for DqEventsWriter {
    fn write<'a>(&'a self, key: &'a [u8], json: &'a [u8]) -> BoxFuture<'a, Result<(), Cause>> {
        Box::pin(async move {
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
            let record = FutureRecord::to(topics::DQ_EVENTS)
                .key(key)
                .payload(json)
                .headers(headers);
            match self.producer.send(record, DELIVERY_TIMEOUT).await {
                Ok(_) => Ok(()),
                Err((error, _)) => Err(Box::new(error) as Cause),
            }
        })
    }
}
