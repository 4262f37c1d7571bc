//! The port lineage leaves through, and how an emission can fail.
//!
//! The emitter never drops an event silently: when it cannot write one within its budget it
//! returns an error and the caller holds the source positions (DESIGN §8: a position is
//! committed only after its lineage is acknowledged), sets `summit_lineage_blocked`, and tries
//! again later. A [`EmitError::Refused`] event would be refused again: the caller stops.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::event::RunEvent;

/// A boxed error from a sink's client library.
pub type SinkCause = Box<dyn std::error::Error + Send + Sync>;

/// How hard to try before giving the event back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Sends tried at most (each one may already be retried inside the client until
    /// `attempt_timeout`).
    pub attempts: u32,
    /// Wall time across all attempts and pauses.
    pub total: Duration,
    /// How long one attempt may stay in flight.
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
    Client(#[source] SinkCause),
    #[error("cannot serialize the lineage event: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Retriable later: the caller holds positions and tries again.
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
        source: SinkCause,
    },
    /// Retrying cannot help (the event is larger than the broker accepts, the topic may not be
    /// written): fatal.
    #[error("lineage event for run {run_id} refused by `{destination}`: {source}")]
    Refused {
        run_id: String,
        destination: String,
        #[source]
        source: SinkCause,
    },
}

impl EmitError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::BudgetExhausted { .. } | Self::Flush { .. })
    }
}

/// Where an acknowledged event landed (partition and offset for Kafka; 0 where a sink has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
    pub attempts: u32,
}

/// The future [`LineageSink::emit`] returns.
pub type EmitFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivered, EmitError>> + Send + 'a>>;

/// Writes RunEvents somewhere durable (Kafka's `lineage.events`, a test's memory) within its
/// retry budget. Object-safe, so a service picks the sink at start-up.
pub trait LineageSink: Send + Sync + std::fmt::Debug {
    /// Sends `event` and waits for its acknowledgement, retrying within the budget.
    fn emit<'a>(&'a self, event: &'a RunEvent) -> EmitFuture<'a>;

    /// Waits for everything queued to be acknowledged, e.g. before exit.
    fn flush(&self, timeout: Duration) -> Result<(), EmitError>;

    /// Called after an emission failed: a sink may replace a client that a long outage left
    /// unusable (an idempotent Kafka producer can stay fenced). Does nothing by default.
    fn renew(&self) {}
}
