//! The Kafka side of the ingest core's seams: a consumed message as a [`SourceRecord`], the
//! consumer as a [`Source`], and the group commit as a [`Checkpointer`]. Shared by both
//! delivery modes (exactly_once reads through [`KafkaRecord`] too).

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use summit_envelope::SourceCoordinates;
use summit_envelope::headers;
use summit_ingest::commit::{BoxFuture, CheckpointError};
use summit_ingest::{Carriers, Checkpointer, Source, SourceRecord, SpanFields};
use summit_mesh::PartitionKey;
use summit_schema::wire::VALUE_SCHEMA_ID_HEADER;
use summit_telemetry::MessagingSystem;

use crate::config::Config;
use crate::rebalance::RebalanceHandler;

/// One consumed message and the name of the cluster it came from (for `summit-source`).
#[derive(Debug)]
pub struct KafkaRecord<'a> {
    pub message: BorrowedMessage<'a>,
    pub cluster: &'a str,
}

impl SourceRecord for KafkaRecord<'_> {
    type Lane = PartitionKey;
    type Position = i64;

    fn source_name(&self) -> &str {
        self.message.topic()
    }

    fn lane(&self, interned: Option<Arc<str>>) -> PartitionKey {
        PartitionKey {
            topic: interned.unwrap_or_else(|| self.message.topic().into()),
            partition: self.message.partition(),
        }
    }

    fn position(&self) -> i64 {
        self.message.offset()
    }

    fn coordinates(&self) -> SourceCoordinates {
        SourceCoordinates::Kafka {
            cluster: self.cluster.to_owned(),
            topic: self.message.topic().to_owned(),
            partition: self.message.partition(),
            offset: self.message.offset(),
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }

    fn payload(&self) -> &[u8] {
        self.message.payload().unwrap_or_default()
    }

    fn event_time_ms(&self) -> Option<i64> {
        self.message.timestamp().to_millis()
    }

    /// One pass over the headers; a repeated header's last value wins.
    fn carriers(&self) -> Carriers<'_> {
        let mut carriers = Carriers::default();
        if let Some(source_headers) = self.message.headers() {
            for header in source_headers.iter() {
                match header.key {
                    headers::TRACEPARENT => carriers.traceparent = header.value,
                    headers::TRACESTATE => carriers.tracestate = header.value,
                    VALUE_SCHEMA_ID_HEADER => carriers.value_schema_id = header.value,
                    _ => {}
                }
            }
        }
        carriers
    }

    fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default()
    }

    fn span_fields(&self) -> SpanFields {
        SpanFields {
            system: MessagingSystem::Kafka,
            lane: self.message.partition().to_string(),
            offset: Some(self.message.offset()),
        }
    }
}

/// The effectively_once consumer as the core's source.
pub struct KafkaSource {
    pub consumer: StreamConsumer<RebalanceHandler>,
    pub cluster: String,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Source for KafkaSource {
    type Lane = PartitionKey;
    type Position = i64;
    type Record<'a> = KafkaRecord<'a>;
    type Error = KafkaError;

    async fn next(&self) -> Result<KafkaRecord<'_>, KafkaError> {
        let message = self.consumer.recv().await?;
        Ok(KafkaRecord {
            message,
            cluster: &self.cluster,
        })
    }

    fn set_paused(&self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let outcome = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, paused, "pause/resume failed");
        }
    }

    fn generation(&self) -> u64 {
        self.consumer.context().generation()
    }

    fn lanes(&self) -> usize {
        self.consumer
            .assignment()
            .map_or(0, |assignment| assignment.count())
    }
}

/// The group commit of finished positions: Kafka commits the next offset to read, so one past
/// each finished position (DESIGN §8). Synchronous (one round trip per commit interval) so the
/// result is known where it is counted and failed positions are offered again.
pub struct KafkaCommitter<'a, C>(pub &'a C);

impl<C> std::fmt::Debug for KafkaCommitter<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KafkaCommitter")
    }
}

fn commit_finished<X: ConsumerContext + 'static>(
    consumer: &impl Consumer<X>,
    finished: &[(PartitionKey, i64)],
) -> Result<(), CheckpointError> {
    consumer
        .commit(&next_offsets(finished), CommitMode::Sync)
        .map_err(|error| CheckpointError(Box::new(error)))
}

/// The run loop's committer.
impl Checkpointer<PartitionKey, i64> for KafkaCommitter<'_, StreamConsumer<RebalanceHandler>> {
    fn checkpoint<'a>(
        &'a self,
        finished: &'a [(PartitionKey, i64)],
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(std::future::ready(commit_finished(self.0, finished)))
    }
}

/// The revoke callback's committer (the callback is handed the base consumer).
impl Checkpointer<PartitionKey, i64> for KafkaCommitter<'_, BaseConsumer<RebalanceHandler>> {
    fn checkpoint<'a>(
        &'a self,
        finished: &'a [(PartitionKey, i64)],
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(std::future::ready(commit_finished(self.0, finished)))
    }
}

/// The offsets Kafka commits for `finished` positions: the next offset to read.
pub fn next_offsets(finished: &[(PartitionKey, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(finished.len());
    for (key, last) in finished {
        // Only fails for an invalid offset value; ours are next-to-read offsets (>= 0).
        let _ = list.add_partition_offset(&key.topic, key.partition, Offset::Offset(last + 1));
    }
    list
}

/// The source consumer's client config, shared by both delivery modes (exactly_once adds
/// `isolation.level=read_committed`): manual offset store and commit, cooperative-sticky, the
/// fetch queue capped by `limits.fetch_queue_kbytes`, statistics for the lag metric, then the
/// user's `kafka.consumer_properties` (which win).
pub fn source_consumer_config(config: &Config) -> ClientConfig {
    let instance = config.instance_id();
    let session_ms = config.kafka.session_timeout.as_millis();
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("group.id", &config.kafka.group_id)
        .set("client.id", &instance)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_ms / 6).max(100).to_string(),
        )
        .set(
            "queued.max.messages.kbytes",
            config.limits.fetch_queue_kbytes.to_string(),
        )
        // Feeds summit_consumer_lag (see rebalance::report_statistics).
        .set(
            "statistics.interval.ms",
            config.admin.lag_interval.as_millis().max(100).to_string(),
        );
    for (key, value) in &config.kafka.consumer_properties {
        consumer_config.set(key, value);
    }
    consumer_config
}
