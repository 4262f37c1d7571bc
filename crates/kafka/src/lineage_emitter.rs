//! Writes RunEvents to `lineage.events`, keyed by run id, with a bounded retry budget: the
//! Kafka [`LineageSink`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use summit_lineage::{Delivered, EmitError, EmitFuture, LineageSink, RetryBudget, RunEvent};

use crate::is_permanent;

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
        let producer = client
            .create()
            .map_err(|error| EmitError::Client(Box::new(error)))?;
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
                        destination: self.topic.clone(),
                        source: Box::new(error),
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
            .map_err(|source| EmitError::Flush {
                timeout,
                source: Box::new(source),
            })
    }
}

impl LineageSink for LineageEmitter {
    fn emit<'a>(&'a self, event: &'a RunEvent) -> EmitFuture<'a> {
        Box::pin(LineageEmitter::emit(self, event))
    }

    fn flush(&self, timeout: Duration) -> Result<(), EmitError> {
        LineageEmitter::flush(self, timeout)
    }
}

/// A [`LineageEmitter`] replaced by a fresh producer after every failed emission: an
/// idempotent producer can be left fenced for good by a broker outage (its epoch bumped while
/// requests hung), and a new one also starts from fresh connections.
pub struct RenewingLineageEmitter {
    current: Mutex<Arc<LineageEmitter>>,
    client: ClientConfig,
    topic: String,
    budget: RetryBudget,
}

impl std::fmt::Debug for RenewingLineageEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewingLineageEmitter")
            .field("topic", &self.topic)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl RenewingLineageEmitter {
    pub fn new(
        client: ClientConfig,
        topic: impl Into<String>,
        budget: RetryBudget,
    ) -> Result<Self, EmitError> {
        let topic = topic.into();
        let first = LineageEmitter::new(client.clone(), topic.clone(), budget)?;
        Ok(Self {
            current: Mutex::new(Arc::new(first)),
            client,
            topic,
            budget,
        })
    }

    fn current(&self) -> Arc<LineageEmitter> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl LineageSink for RenewingLineageEmitter {
    fn emit<'a>(&'a self, event: &'a RunEvent) -> EmitFuture<'a> {
        Box::pin(async move { self.current().emit(event).await })
    }

    fn flush(&self, timeout: Duration) -> Result<(), EmitError> {
        self.current().flush(timeout)
    }

    fn renew(&self) {
        match LineageEmitter::new(self.client.clone(), self.topic.clone(), self.budget) {
            Ok(fresh) => {
                let old = std::mem::replace(
                    &mut *self.current.lock().unwrap_or_else(PoisonError::into_inner),
                    Arc::new(fresh),
                );
                // Dropping a producer purges and flushes for up to 500 ms: not on this task.
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => drop(runtime.spawn_blocking(move || drop(old))),
                    Err(_) => drop(old),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot renew the lineage producer"),
        }
    }
}
