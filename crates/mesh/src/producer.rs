//! An idempotent producer whose acknowledgements settle source offsets in a [`Finalizer`].

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;

use crate::{Finalizer, OutboundRecord, PartitionKey};

/// Which kind of output a delivery belongs to (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    Mesh,
    Quarantine,
    DeadLetter,
    DqEvent,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::Quarantine => "quarantine",
            Self::DeadLetter => "dlq",
            Self::DqEvent => "dq_event",
        }
    }
}

/// Travels with each produced record and comes back with its acknowledgement.
#[derive(Debug, Clone)]
pub struct DeliveryTicket {
    pub partition: PartitionKey,
    pub offset: i64,
    pub kind: OutputKind,
    /// Source record timestamp (epoch ms), for the ingest-latency histogram.
    pub event_time_ms: i64,
    /// Earlier failed attempts of this output.
    pub attempt: u32,
}

/// Hooks for metrics: called on librdkafka's delivery thread, so they must be quick.
pub trait DeliveryObserver: Send + Sync + std::fmt::Debug {
    fn delivered(&self, _ticket: &DeliveryTicket) {}
    fn failed(&self, _ticket: &DeliveryTicket, _error: &KafkaError) {}
}

/// An output the broker did not acknowledge; it goes back to [`MeshProducer::redeliver`].
#[derive(Debug)]
pub struct DeliveryFailure {
    pub ticket: Box<DeliveryTicket>,
    pub record: OutboundRecord,
    pub error: KafkaError,
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Bad producer settings: fatal at start-up.
    #[error("cannot create the mesh producer: {0}")]
    Create(#[source] KafkaError),
    #[error("mesh producer flush did not finish: {0}")]
    Flush(#[source] KafkaError),
}

/// Connection settings for the mesh cluster.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub bootstrap_servers: String,
    pub client_id: String,
    /// Extra librdkafka properties; they override the defaults set here.
    pub properties: Vec<(String, String)>,
}

impl ProducerSettings {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // Idempotence (implies acks=all) keeps librdkafka's own retries free of duplicates
            // and reordering; acks=all is spelled out because offsets wait for it.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

#[derive(Debug)]
struct AckingContext {
    finalizer: Arc<Finalizer>,
    failures: mpsc::UnboundedSender<DeliveryFailure>,
    observer: Option<Arc<dyn DeliveryObserver>>,
}

impl ClientContext for AckingContext {}

impl ProducerContext for AckingContext {
    type DeliveryOpaque = Box<DeliveryTicket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<DeliveryTicket>) {
        match result {
            Ok(_) => {
                if let Some(observer) = &self.observer {
                    observer.delivered(&ticket);
                }
                self.finalizer.acknowledge(&ticket.partition, ticket.offset);
            }
            Err((error, message)) => {
                if let Some(observer) = &self.observer {
                    observer.failed(&ticket, error);
                }
                let record = OutboundRecord {
                    kind: ticket.kind,
                    topic: message.topic().to_owned(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: message
                        .headers()
                        .map(rdkafka::message::BorrowedHeaders::detach)
                        .unwrap_or_else(OwnedHeaders::new),
                };
                // The receiver lives as long as the service; if it is gone the service is
                // stopping and the offset stays uncommitted, which is the safe outcome.
                let _ = self.failures.send(DeliveryFailure {
                    ticket,
                    record,
                    error: error.clone(),
                });
            }
        }
    }
}

/// Produces derived records and settles their source offsets on acknowledgement.
pub struct MeshProducer {
    producer: ThreadedProducer<AckingContext>,
}

impl std::fmt::Debug for MeshProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshProducer")
            .field("in_flight", &self.producer.in_flight_count())
            .finish()
    }
}

impl MeshProducer {
    /// Creates the producer. Failed deliveries arrive on the returned receiver; hand it to
    /// [`MeshProducer::redeliver`].
    pub fn new(
        settings: &ProducerSettings,
        finalizer: Arc<Finalizer>,
        observer: Option<Arc<dyn DeliveryObserver>>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DeliveryFailure>), MeshError> {
        let (failures, failed) = mpsc::unbounded_channel();
        let context = AckingContext {
            finalizer,
            failures,
            observer,
        };
        let producer = settings
            .client_config()
            .create_with_context(context)
            .map_err(MeshError::Create)?;
        Ok((Self { producer }, failed))
    }

    /// Enqueues `record`; its acknowledgement settles `ticket`'s source offset. Waits while
    /// librdkafka's queue is full. Any other error is reported as a delivery failure, so the
    /// record is retried instead of lost.
    pub async fn send(&self, record: OutboundRecord, ticket: DeliveryTicket) {
        let OutboundRecord {
            kind,
            topic,
            key,
            payload,
            headers,
        } = record;
        let mut base = BaseRecord::with_opaque_to(&topic, Box::new(ticket))
            .payload(&payload)
            .headers(headers);
        if let Some(key) = &key {
            base = base.key(key);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    base = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, returned)) => {
                    let failure = DeliveryFailure {
                        ticket: returned.delivery_opaque,
                        record: OutboundRecord {
                            kind,
                            topic: topic.clone(),
                            key: key.clone(),
                            payload: payload.clone(),
                            headers: returned.headers.unwrap_or_else(OwnedHeaders::new),
                        },
                        error,
                    };
                    self.producer.context().deliver_failure(failure);
                    return;
                }
            }
        }
    }

    /// Sends failed outputs again after an exponential backoff (`initial` doubling up to
    /// `max`), forever: an output is never skipped, its source offset simply stays uncommitted
    /// until it is acknowledged. Runs until the producer's failure channel closes.
    pub async fn redeliver(
        self: Arc<Self>,
        mut failed: mpsc::UnboundedReceiver<DeliveryFailure>,
        initial: Duration,
        max: Duration,
    ) {
        while let Some(failure) = failed.recv().await {
            let mut ticket = *failure.ticket;
            ticket.attempt = ticket.attempt.saturating_add(1);
            let delay = backoff(initial, max, ticket.attempt);
            tracing::warn!(
                topic = %failure.record.topic,
                source_topic = %ticket.partition.topic,
                source_partition = ticket.partition.partition,
                source_offset = ticket.offset,
                attempt = ticket.attempt,
                error = %failure.error,
                "delivery failed; retrying after {delay:?}"
            );
            let producer = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                producer.send(failure.record, ticket).await;
            });
        }
    }

    /// Waits up to `timeout` for every enqueued record to be acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), MeshError> {
        self.producer.flush(timeout).map_err(MeshError::Flush)
    }

    /// Records enqueued in librdkafka and not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

impl AckingContext {
    fn deliver_failure(&self, failure: DeliveryFailure) {
        let _ = self.failures.send(failure);
    }
}

fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff(initial, max, 1), initial);
        assert_eq!(backoff(initial, max, 2), Duration::from_millis(200));
        assert_eq!(backoff(initial, max, 5), Duration::from_millis(1600));
        assert_eq!(backoff(initial, max, 6), max);
        assert_eq!(backoff(initial, max, 1000), max);
    }
}
