//! The commit path (DESIGN §8): finalizer → commit gate (lineage) → checkpointer → metrics.
//! One implementation, used by the run loop's periodic commit, by a revoke or a lease loss
//! ([`CommitPath::release`]) and by shutdown ([`CommitPath::commit_final`]).
//!
//! Positions handed to the gate and the checkpointer are the last finished position of each
//! lane, inclusive; a Kafka checkpointer adds 1 (Kafka commits the next offset to read).

use std::error::Error;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use summit_mesh::{Finalizer, Lane, Position};
use summit_telemetry::{Metrics, WriteResult};
use tokio::sync::Notify;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Cause = Box<dyn Error + Send + Sync>;

/// Why the commit gate did not let a commit through.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Trying again later may pass: the commit is held back, nothing is skipped.
    #[error("{0}")]
    Held(#[source] Cause),
    /// It never will (e.g. the lineage topic refuses the events): the service stops.
    #[error("{0}")]
    Fatal(#[source] Cause),
}

/// Guards every commit. Lineage is the gate: it emits the epochs the commit covers first.
pub trait CommitGate<L, P>: Send + Sync + Debug {
    /// `finished`: per lane, the last position whose outputs are all acknowledged.
    fn before_commit<'a>(&'a self, finished: &'a [(L, P)]) -> BoxFuture<'a, Result<(), GateError>>;

    /// The lanes were released (after their last commit attempt): forget their state.
    fn released(&self, _lanes: &[L]) {}
}

/// A checkpoint the source did not store; the positions are offered again.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint not stored: {0}")]
pub struct CheckpointError(#[source] pub Cause);

/// Stores finished positions where the source keeps them: a Kafka group commit, a Kinesis
/// lease-row checkpoint.
pub trait Checkpointer<L, P>: Send + Sync {
    fn checkpoint<'a>(
        &'a self,
        finished: &'a [(L, P)],
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;
}

/// The commit path stopped for good: the run ends with this.
#[derive(Debug, thiserror::Error)]
#[error("the commit gate refused for good: {0}")]
pub struct CommitStopped(#[source] pub GateError);

/// Retry pacing of a held gate: doubles from `min` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

#[derive(Debug, Default)]
struct HeldState {
    retry_at: Option<Instant>,
    delay: Duration,
}

/// The one commit path of a pipeline.
#[derive(Debug)]
pub struct CommitPath<L: Lane, P: Position> {
    finalizer: Arc<Finalizer<L, P>>,
    gate: Option<Arc<dyn CommitGate<L, P>>>,
    metrics: Option<Metrics>,
    backoff: Backoff,
    held: Mutex<HeldState>,
    stopped: Mutex<Option<GateError>>,
    stop_raised: Notify,
    /// Lanes forgotten since the run loop last asked (it drops their DLQ summary windows).
    released: Mutex<Vec<L>>,
}

impl<L: Lane, P: Position> CommitPath<L, P> {
    pub fn new(
        finalizer: Arc<Finalizer<L, P>>,
        gate: Option<Arc<dyn CommitGate<L, P>>>,
        metrics: Option<Metrics>,
        backoff: Backoff,
    ) -> Self {
        Self {
            finalizer,
            gate,
            metrics,
            backoff,
            held: Mutex::default(),
            stopped: Mutex::new(None),
            stop_raised: Notify::new(),
            released: Mutex::default(),
        }
    }

    pub fn finalizer(&self) -> &Arc<Finalizer<L, P>> {
        &self.finalizer
    }

    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// The periodic commit: what is finished, unless a held gate's backoff has not run out.
    pub async fn commit_ready(&self, checkpointer: &dyn Checkpointer<L, P>) {
        self.report_in_flight();
        if self.held().retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let finished = self.finalizer.take_committable();
        if finished.is_empty() {
            return;
        }
        match self.pass_gate(&finished).await {
            Ok(()) => *self.held() = HeldState::default(),
            Err(error) => {
                let delay = self.hold_back();
                tracing::warn!(%error, retry_in = ?delay, "commit held back by the commit gate");
                self.offer_again(&finished);
                return;
            }
        }
        self.checkpoint(checkpointer, &finished).await;
    }

    /// The last commit at shutdown, bounded by `timeout` (uncommitted is safe, late is not).
    /// `true`: everything finished was checkpointed.
    pub async fn commit_final(
        &self,
        checkpointer: &dyn Checkpointer<L, P>,
        timeout: Duration,
    ) -> bool {
        let finished = self.finalizer.take_committable();
        if finished.is_empty() {
            return true;
        }
        match tokio::time::timeout(timeout, self.pass_gate(&finished)).await {
            Ok(Ok(())) => self.checkpoint(checkpointer, &finished).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, "final commit held back by the commit gate");
                false
            }
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "commit gate did not answer in time for the final commit"
                );
                false
            }
        }
    }

    /// A revoke or a lease loss: wait up to `drain_timeout` for the lanes' outputs, commit what
    /// they reached, then forget them (finalizer and gate). What is not committed is re-read by
    /// the next owner.
    pub async fn release(
        &self,
        lanes: &[L],
        checkpointer: &dyn Checkpointer<L, P>,
        drain_timeout: Duration,
    ) -> Vec<(L, P)> {
        let drained = self.wait_drained(lanes, drain_timeout).await;
        let finished = self.finalizer.take_committable_for(lanes);
        let mut committed = Vec::new();
        if !finished.is_empty() {
            match tokio::time::timeout(drain_timeout, self.pass_gate(&finished)).await {
                Ok(Ok(())) => {
                    if self.checkpoint(checkpointer, &finished).await {
                        committed = finished;
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, lanes = ?lanes, "released lanes' commit held back by the commit gate; the next owner re-reads them")
                }
                Err(_) => tracing::warn!(
                    ?drain_timeout,
                    "commit gate did not answer in time for the release"
                ),
            }
        }
        if !drained {
            tracing::warn!(lanes = ?lanes, timeout = ?drain_timeout, "released lanes still had unacknowledged outputs; released uncommitted");
        }
        self.forget(lanes);
        committed
    }

    /// Drops the lanes from the finalizer and the gate without committing.
    pub fn forget(&self, lanes: &[L]) {
        for lane in lanes {
            self.finalizer.revoke(lane);
        }
        if let Some(gate) = &self.gate {
            gate.released(lanes);
        }
        self.released
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(lanes);
    }

    /// The lanes forgotten since the last call.
    pub fn take_released(&self) -> Vec<L> {
        std::mem::take(&mut *self.released.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves when the gate refused for good; the run loop stops on it.
    pub async fn stopped(&self) -> CommitStopped {
        loop {
            let raised = self.stop_raised.notified();
            if let Some(error) = self.stopped_slot().take() {
                return CommitStopped(error);
            }
            raised.await;
        }
    }

    async fn wait_drained(&self, lanes: &[L], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if lanes
                .iter()
                .all(|lane| self.finalizer.pending(Some(lane)) == 0)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn pass_gate(&self, finished: &[(L, P)]) -> Result<(), GateError> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        let result = gate.before_commit(finished).await;
        if let Err(GateError::Fatal(cause)) = result {
            let message = cause.to_string();
            self.stopped_slot().get_or_insert(GateError::Fatal(cause));
            self.stop_raised.notify_one();
            return Err(GateError::Fatal(message.into()));
        }
        result
    }

    /// `true`: stored.
    async fn checkpoint(&self, checkpointer: &dyn Checkpointer<L, P>, finished: &[(L, P)]) -> bool {
        let result = checkpointer.checkpoint(finished).await;
        if let Some(metrics) = &self.metrics {
            metrics.record_commit(WriteResult::from(&result));
        }
        if let Err(error) = &result {
            tracing::warn!(%error, "offering the positions again");
            self.offer_again(finished);
        }
        result.is_ok()
    }

    fn offer_again(&self, finished: &[(L, P)]) {
        for (lane, position) in finished {
            self.finalizer.commit_failed(lane, position);
        }
    }

    fn hold_back(&self) -> Duration {
        let mut held = self.held();
        held.delay = (held.delay * 2).max(self.backoff.min).min(self.backoff.max);
        held.retry_at = Some(Instant::now() + held.delay);
        held.delay
    }

    fn report_in_flight(&self) {
        if let Some(metrics) = &self.metrics {
            let (records, bytes) = self.finalizer.budget().in_flight();
            metrics.set_inflight(
                i64::try_from(records).unwrap_or(i64::MAX),
                i64::try_from(bytes).unwrap_or(i64::MAX),
            );
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped_slot(&self) -> std::sync::MutexGuard<'_, Option<GateError>> {
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
