//! An idempotent producer whose acknowledgements settle source positions in a [`Finalizer`]:
//! the mesh's [`RecordSink`] on Kafka.
//!
//! Failures are of two kinds. Transient ones (timeouts, a broker away, leadership moving) are
//! retried after a backoff, forever: the source position simply stays uncommitted until the
//! output is acknowledged. Permanent ones (the record is too large for the broker, the topic
//! does not exist or may not be written, the record is invalid) would fail the same way every
//! time, so they are not retried: the first one is kept in a [`PermanentFailure`] slot that the
//! pipeline watches, and the service stops naming the topic and the error.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use summit_mesh::{
    DeliveryObserver, DeliveryTicket, Finalizer, Lane, OutboundRecord, Position, RecordSink,
};
use tokio::sync::{Notify, mpsc};

use crate::headers::{owned_headers, record_headers};

/// librdkafka's default `message.max.bytes`, which brokers default to as well.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// An output the broker did not acknowledge; it goes back to [`MeshProducer::redeliver`].
#[derive(Debug)]
pub struct DeliveryFailure<L, P> {
    pub ticket: Box<DeliveryTicket<L, P>>,
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
    /// A write that can never succeed as it is: the service must stop (nothing was skipped;
    /// the source position of the record stays uncommitted).
    #[error("cannot write to topic `{topic}`: {error} (a permanent error: not retried)")]
    Permanent { topic: String, error: KafkaError },
}

/// Whether a delivery error would repeat on every retry of the same record.
pub fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::MessageBatchTooLarge
                | Code::InvalidRecord
                | Code::InvalidTopic
                | Code::UnknownTopic
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
        )
    )
}

/// `message.max.bytes` from librdkafka producer properties (the last one set wins), or
/// librdkafka's default.
pub fn message_max_bytes<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    properties
        .into_iter()
        .filter(|(key, _)| *key == "message.max.bytes")
        .last()
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
}

/// The first permanent delivery failure, for the pipeline to stop on.
#[derive(Debug, Default)]
pub struct PermanentFailure {
    first: Mutex<Option<(String, KafkaError)>>,
    raised: Notify,
}

impl PermanentFailure {
    fn raise(&self, topic: &str, error: &KafkaError) {
        let mut first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some((topic.to_owned(), error.clone()));
        }
        drop(first);
        self.raised.notify_one();
    }

    /// The failure, if one happened.
    pub fn get(&self) -> Option<MeshError> {
        self.first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|(topic, error)| MeshError::Permanent { topic, error })
    }

    /// Resolves with the first permanent failure.
    pub async fn wait(&self) -> MeshError {
        loop {
            let raised = self.raised.notified();
            if let Some(error) = self.get() {
                return error;
            }
            raised.await;
        }
    }
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
    /// The largest record the producer will send (`message.max.bytes`, as set or defaulted).
    pub fn message_max_bytes(&self) -> usize {
        message_max_bytes(
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

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

type Observer<L, P> = Arc<dyn DeliveryObserver<L, P>>;

#[derive(Debug)]
struct AckingContext<L, P> {
    finalizer: Arc<Finalizer<L, P>>,
    failures: mpsc::UnboundedSender<DeliveryFailure<L, P>>,
    observer: Option<Observer<L, P>>,
    permanent: Arc<PermanentFailure>,
}

impl<L: Lane, P: Position> ClientContext for AckingContext<L, P> {}

impl<L: Lane, P: Position> ProducerContext for AckingContext<L, P> {
    type DeliveryOpaque = Box<DeliveryTicket<L, P>>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<DeliveryTicket<L, P>>) {
        match result {
            Ok(_) => {
                if let Some(observer) = &self.observer {
                    observer.delivered(&ticket);
                }
                self.finalizer.acknowledge(&ticket.lane, &ticket.position);
            }
            Err((error, message)) => {
                if let Some(observer) = &self.observer {
                    observer.failed(&ticket, error);
                }
                if is_permanent(error) {
                    // Not retried and not acknowledged: its source position stays uncommitted.
                    self.permanent.raise(message.topic(), error);
                    return;
                }
                let record = OutboundRecord {
                    kind: ticket.kind,
                    topic: message.topic().to_owned(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: message.headers().map(record_headers).unwrap_or_default(),
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

/// Produces derived records and settles their source positions on acknowledgement.
pub struct MeshProducer<L: Lane, P: Position> {
    producer: ThreadedProducer<AckingContext<L, P>>,
    max_record_bytes: usize,
}

impl<L: Lane, P: Position> std::fmt::Debug for MeshProducer<L, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshProducer")
            .field("in_flight", &self.producer.in_flight_count())
            .finish()
    }
}

/// What [`MeshProducer::new`] hands back beside the producer.
pub type Redeliveries<L, P> = mpsc::UnboundedReceiver<DeliveryFailure<L, P>>;

impl<L: Lane, P: Position> MeshProducer<L, P> {
    /// Creates the producer. Transient failures arrive on the returned receiver (hand it to
    /// [`MeshProducer::redeliver`]); permanent ones in `permanent`.
    pub fn new(
        settings: &ProducerSettings,
        finalizer: Arc<Finalizer<L, P>>,
        observer: Option<Observer<L, P>>,
        permanent: Arc<PermanentFailure>,
    ) -> Result<(Self, Redeliveries<L, P>), MeshError> {
        let (failures, failed) = mpsc::unbounded_channel();
        let context = AckingContext {
            finalizer,
            failures,
            observer,
            permanent,
        };
        let producer = settings
            .client_config()
            .create_with_context(context)
            .map_err(MeshError::Create)?;
        let max_record_bytes = settings.message_max_bytes();
        Ok((
            Self {
                producer,
                max_record_bytes,
            },
            failed,
        ))
    }

    /// Enqueues `record`; its acknowledgement settles `ticket`'s source position. Waits while
    /// librdkafka's queue is full. A transient error is reported as a delivery failure, so the
    /// record is retried instead of lost; a permanent one is raised.
    pub async fn send(&self, record: OutboundRecord, ticket: DeliveryTicket<L, P>) {
        let OutboundRecord {
            kind,
            topic,
            key,
            payload,
            headers,
        } = record;
        let mut base = BaseRecord::with_opaque_to(&topic, Box::new(ticket))
            .payload(&payload)
            .headers(owned_headers(&headers));
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
                    let context = self.producer.context();
                    if is_permanent(&error) {
                        context.permanent.raise(&topic, &error);
                        return;
                    }
                    let failure = DeliveryFailure {
                        ticket: returned.delivery_opaque,
                        record: OutboundRecord {
                            kind,
                            topic: topic.clone(),
                            key: key.clone(),
                            payload: payload.clone(),
                            headers: headers.clone(),
                        },
                        error,
                    };
                    let _ = context.failures.send(failure);
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
        mut failed: Redeliveries<L, P>,
        initial: Duration,
        max: Duration,
    ) {
        while let Some(failure) = failed.recv().await {
            let mut ticket = *failure.ticket;
            ticket.attempt = ticket.attempt.saturating_add(1);
            let delay = backoff(initial, max, ticket.attempt);
            tracing::warn!(
                topic = %failure.record.topic,
                source = %ticket.lane.source(),
                lane = %ticket.lane.lane_id(),
                position = %ticket.position,
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

impl<L: Lane, P: Position> RecordSink<L, P> for MeshProducer<L, P> {
    async fn send(&self, record: OutboundRecord, ticket: DeliveryTicket<L, P>) {
        MeshProducer::send(self, record, ticket).await;
    }

    fn max_record_bytes(&self) -> Option<usize> {
        Some(self.max_record_bytes)
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
    fn size_and_authorization_errors_are_permanent_timeouts_are_not() {
        let produce = |code| KafkaError::MessageProduction(code);
        assert!(is_permanent(&produce(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(is_permanent(&produce(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(is_permanent(&produce(RDKafkaErrorCode::UnknownTopic)));
        assert!(!is_permanent(&produce(RDKafkaErrorCode::MessageTimedOut)));
        assert!(!is_permanent(&produce(RDKafkaErrorCode::QueueFull)));
        assert!(!is_permanent(&produce(
            RDKafkaErrorCode::NotLeaderForPartition
        )));
    }

    #[test]
    fn message_max_bytes_follows_the_last_property() {
        let mut settings = ProducerSettings {
            bootstrap_servers: "x".into(),
            client_id: "c".into(),
            properties: Vec::new(),
        };
        assert_eq!(settings.message_max_bytes(), DEFAULT_MESSAGE_MAX_BYTES);
        settings.properties = vec![
            ("message.max.bytes".into(), "2000".into()),
            ("message.max.bytes".into(), "3000".into()),
        ];
        assert_eq!(settings.message_max_bytes(), 3000);
    }

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
