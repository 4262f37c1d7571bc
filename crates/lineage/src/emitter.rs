//! Writes RunEvents to `lineage.events`, keyed by run id, with a bounded retry budget.
//!
//! The emitter never drops an event silently: when the budget is spent it returns an error and
//! the caller holds the source offsets (DESIGN §8: a position is committed only after its
//! lineage is acknowledged), sets `summit_lineage_blocked`, and tries again later.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::event::RunEvent;

/// How hard to try before giving the event back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Sends tried at most (each one already retried inside librdkafka until `attempt_timeout`).
    pub attempts: u32,
    /// Wall time across all attempts and pauses.
    pub total: Duration,
    /// How long librdkafka may keep one attempt in flight (`message.timeout.ms`).
    pub attempt_timeout: Duration,
    /// Pause after the first failed attempt; doubles after each further one.
    pub initial_backoff: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            attempts: 5,
            total: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("cannot create the lineage producer: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot serialize the lineage event: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Retriable later: the caller holds offsets and tries again.
    #[error(
        "lineage event for run {run_id} not acknowledged after {attempts} attempts in {elapsed:?}: {last_error}"
    )]
    BudgetExhausted {
        run_id: String,
        attempts: u32,
        elapsed: Duration,
        last_error: String,
    },
    #[error("lineage events still unacknowledged after flushing for {timeout:?}: {source}")]
    Flush {
        timeout: Duration,
        #[source]
        source: KafkaError,
    },
    /// Retrying cannot help (e.g. the event is larger than the broker accepts): fatal.
    #[error("lineage event for run {run_id} refused: {source}")]
    Refused {
        run_id: String,
        #[source]
        source: KafkaError,
    },
}

impl EmitError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::BudgetExhausted { .. } | Self::Flush { .. })
    }
}

/// Where an acknowledged event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
    pub attempts: u32,
}

/// Sends RunEvents to one topic with an idempotent producer.
pub struct LineageEmitter {
    producer: FutureProducer,
    topic: String,
    budget: RetryBudget,
}

impl std::fmt::Debug for LineageEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageEmitter")
            .field("topic", &self.topic)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl LineageEmitter {
    /// `client` carries the connection settings (`bootstrap.servers`, security); idempotence
    /// and the per-attempt timeout are set here. `topic` is normally
    /// `summit_envelope::topics::LINEAGE_EVENTS`.
    pub fn new(
        mut client: ClientConfig,
        topic: impl Into<String>,
        budget: RetryBudget,
    ) -> Result<Self, EmitError> {
        let attempt_ms = budget.attempt_timeout.as_millis().max(1).to_string();
        client
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", &attempt_ms)
            // Lineage is small and rare: send at once rather than wait to batch.
            .set("linger.ms", "5");
        let producer = client.create().map_err(EmitError::Client)?;
        Ok(Self {
            producer,
            topic: topic.into(),
            budget,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `event` keyed by its run id and waits for the broker's acknowledgement, retrying
    /// within the budget. The payload is serialized once, so every retry sends the same bytes.
    pub async fn emit(&self, event: &RunEvent) -> Result<Delivered, EmitError> {
        let payload = serde_json::to_vec(event).map_err(EmitError::Serialize)?;
        let key = event.key();
        let started = Instant::now();
        let mut backoff = self.budget.initial_backoff;
        let mut attempts = 0;
        let mut last_error = String::from("no attempt made");
        while attempts < self.budget.attempts.max(1) {
            let Some(remaining) = self.budget.total.checked_sub(started.elapsed()) else {
                break;
            };
            attempts += 1;
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
            let send = self.producer.send(record, Timeout::After(remaining));
            match tokio::time::timeout(remaining, send).await {
                Ok(Ok(delivery)) => {
                    return Ok(Delivered {
                        partition: delivery.partition,
                        offset: delivery.offset,
                        attempts,
                    });
                }
                Ok(Err((error, _message))) if is_permanent(&error) => {
                    return Err(EmitError::Refused {
                        run_id: key,
                        source: error,
                    });
                }
                Ok(Err((error, _message))) => last_error = error.to_string(),
                Err(_elapsed) => {
                    last_error = if attempts == 1 {
                        "total time budget ran out during the first send".to_owned()
                    } else {
                        format!("total time budget ran out mid-send; before that: {last_error}")
                    }
                }
            }
            let Some(remaining) = self.budget.total.checked_sub(started.elapsed()) else {
                break;
            };
            if attempts < self.budget.attempts {
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        Err(EmitError::BudgetExhausted {
            run_id: key,
            attempts,
            elapsed: started.elapsed(),
            last_error,
        })
    }

    /// Waits for everything queued to be acknowledged, e.g. before exit.
    pub fn flush(&self, timeout: Duration) -> Result<(), EmitError> {
        self.producer
            .flush(Timeout::After(timeout))
            .map_err(|source| EmitError::Flush { timeout, source })
    }
}

/// Errors no retry can fix.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}
