//! A Kafka transactional producer for consume-transform-produce (KIP-98, KIP-447): begin, send
//! records, send the consumer's offsets, commit or abort, and the classification of what went
//! wrong — abort and retry, or stop because another process took the transactional id. Used by
//! kafka-consumer's `exactly_once` mode; the stream processor's checkpoints can use it too.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use summit_mesh::RecordHeaders;

use crate::headers::owned_headers;

/// Bound on one blocking transactional call (begin/send offsets/commit/abort).
pub const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The producer cannot go on: the service stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalTransaction {
    /// Another producer with the same transactional id (a newer process) fenced this one;
    /// retrying would fence it back.
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("fatal transactional producer error: {0}")]
    Fatal(String),
}

/// Why a transaction did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionFailure {
    /// Abort, rewind the source, try again.
    #[error("{0}")]
    Abortable(String),
    #[error(transparent)]
    Fatal(FatalTransaction),
}

#[derive(Debug, thiserror::Error)]
pub enum TransactionSetupError {
    #[error("cannot create the transactional producer: {0}")]
    Client(#[source] KafkaError),
    #[error("init_transactions for transactional id `{id}` failed: {source}")]
    Init {
        id: String,
        #[source]
        source: KafkaError,
    },
}

/// Where and how a transactional producer writes.
#[derive(Debug, Clone)]
pub struct TransactionalSettings {
    pub bootstrap_servers: String,
    pub client_id: String,
    pub transactional_id: String,
    /// `transaction.timeout.ms`: the broker aborts a transaction left open longer.
    pub transaction_timeout: Duration,
    /// Extra librdkafka properties; they override the defaults set here.
    pub properties: Vec<(String, String)>,
}

/// One record of a transaction, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct TransactionRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: Option<&'a RecordHeaders>,
}

/// A transactional producer, initialised (earlier producers with the id fenced).
pub struct TransactionalProducer {
    producer: FutureProducer,
    transactional_id: String,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("transactional_id", &self.transactional_id)
            .finish_non_exhaustive()
    }
}

impl TransactionalProducer {
    /// Creates the producer and runs `init_transactions`, which fences any earlier producer
    /// with this id and aborts the transaction it left open.
    pub fn new(settings: &TransactionalSettings) -> Result<Self, TransactionSetupError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("client.id", &settings.client_id)
            .set("transactional.id", &settings.transactional_id)
            .set(
                "transaction.timeout.ms",
                settings.transaction_timeout.as_millis().to_string(),
            )
            .set("linger.ms", "5");
        for (key, value) in &settings.properties {
            config.set(key, value);
        }
        let producer: FutureProducer = config.create().map_err(TransactionSetupError::Client)?;
        producer
            .init_transactions(TRANSACTION_CALL_TIMEOUT)
            .map_err(|source| TransactionSetupError::Init {
                id: settings.transactional_id.clone(),
                source,
            })?;
        Ok(Self {
            producer,
            transactional_id: settings.transactional_id.clone(),
        })
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    pub fn begin(&self) -> Result<(), TransactionFailure> {
        self.blocking(|p| p.begin_transaction())
            .map_err(|e| self.classify("begin_transaction", e))
    }

    /// Produces every record into the open transaction and waits for all their deliveries.
    pub async fn send_all(
        &self,
        records: impl IntoIterator<Item = TransactionRecord<'_>>,
    ) -> Result<(), TransactionFailure> {
        let mut deliveries = Vec::new();
        for record in records {
            let mut future = FutureRecord::to(record.topic).payload(record.payload);
            if let Some(key) = record.key {
                future = future.key(key);
            }
            if let Some(headers) = record.headers {
                future = future.headers(owned_headers(headers));
            }
            deliveries.push(self.enqueue(future).await?);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(self.classify("produce", error)),
                Err(_) => {
                    return Err(TransactionFailure::Abortable(
                        "delivery report lost".to_owned(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds the consumer's offsets to the transaction (KIP-447: the group metadata lets the
    /// coordinator refuse a zombie of an older generation).
    pub fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), TransactionFailure> {
        self.blocking(|p| p.send_offsets_to_transaction(offsets, group, TRANSACTION_CALL_TIMEOUT))
            .map_err(|e| self.classify("send_offsets_to_transaction", e))
    }

    pub fn commit(&self) -> Result<(), TransactionFailure> {
        self.blocking(|p| p.commit_transaction(TRANSACTION_CALL_TIMEOUT))
            .map_err(|e| self.classify("commit_transaction", e))
    }

    pub fn abort(&self) -> Result<(), TransactionFailure> {
        self.blocking(|p| p.abort_transaction(TRANSACTION_CALL_TIMEOUT))
            .map_err(|e| self.classify("abort_transaction", e))
    }

    /// Gives up the client (to drop it where a hang cannot block the caller).
    pub fn into_inner(self) -> FutureProducer {
        self.producer
    }

    /// Enqueues one record, waiting while librdkafka's queue is full.
    async fn enqueue<'a>(
        &self,
        mut record: FutureRecord<'a, [u8], [u8]>,
    ) -> Result<DeliveryFuture, TransactionFailure> {
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(self.classify("produce", error)),
            }
        }
    }

    fn blocking<T>(&self, call: impl FnOnce(&FutureProducer) -> T) -> T {
        // librdkafka's transactional calls block up to their timeout: keep the runtime's other
        // tasks (signal handling) running.
        tokio::task::block_in_place(|| call(&self.producer))
    }

    fn classify(&self, step: &str, error: KafkaError) -> TransactionFailure {
        match self.fatal(&error) {
            Some(fatal) => TransactionFailure::Fatal(fatal),
            None => TransactionFailure::Abortable(format!("{step}: {error}")),
        }
    }

    /// `Some` when the producer can no longer be used: fenced, or another fatal error.
    fn fatal(&self, error: &KafkaError) -> Option<FatalTransaction> {
        let fatal = self.producer.client().fatal_error();
        let transaction_fatal = matches!(error, KafkaError::Transaction(e) if e.is_fatal());
        if fatal.is_none() && !transaction_fatal && !is_fencing(error.rdkafka_error_code()) {
            return None;
        }
        let code = fatal
            .as_ref()
            .map(|(code, _)| *code)
            .or(error.rdkafka_error_code());
        let detail = match &fatal {
            Some((code, reason)) => format!("{code:?}: {reason}"),
            None => error.to_string(),
        };
        Some(if is_fencing(code) {
            FatalTransaction::Fenced(format!(
                "another process took transactional id `{}` (same service.instance_id?); \
                 this instance stops ({detail})",
                self.transactional_id
            ))
        } else {
            FatalTransaction::Fatal(detail)
        })
    }
}

/// The error codes that mean another producer owns the transactional id now.
pub fn is_fencing(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::FencedInstanceId
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_codes_are_recognised() {
        assert!(is_fencing(Some(RDKafkaErrorCode::ProducerFenced)));
        assert!(is_fencing(Some(RDKafkaErrorCode::InvalidProducerEpoch)));
        assert!(!is_fencing(Some(RDKafkaErrorCode::RequestTimedOut)));
        assert!(!is_fencing(None));
    }
}
