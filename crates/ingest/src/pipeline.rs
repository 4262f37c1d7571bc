//! The run loop every ingest service runs (effectively_once): fetch → classify → register
//! the outputs with the finalizer → send, with backpressure (pause while the in-flight budget
//! is spent or the DLQ budget is exceeded), the periodic commit and the drain at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use summit_mesh::{DeliveryTicket, Lane, OutboundRecord, Position, RecordSink};

use crate::classify::{Classified, Classifier, ClassifyError};
use crate::commit::{Checkpointer, CommitPath, CommitStopped};
use crate::dlq::{
    CompactionPolicy, CompanionCompactor, CompanionFate, DlqBudget, DlqLimits, Summary,
};
use crate::source::Source;

/// The loop's own settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub commit_interval: Duration,
    pub shutdown_grace: Duration,
    /// `None`: dead letters are not rate-limited.
    pub dlq_limits: Option<DlqLimits>,
    /// `None`: every companion is written.
    pub compaction: Option<CompactionPolicy>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Every output was acknowledged and committed within the grace period.
    pub drained: bool,
}

/// Why a run stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// The sink refused an output for good (the adapter's `sink_failed` future).
    #[error(transparent)]
    Sink(E),
    #[error(transparent)]
    Commit(#[from] CommitStopped),
}

#[derive(Debug)]
struct DlqControl<L, P> {
    budget: Option<DlqBudget>,
    compactor: Option<CompanionCompactor<L, P>>,
    /// Paused over the DLQ budget until this instant, for this source.
    throttled: Option<(Instant, String)>,
}

/// The pipeline of one service instance: classifier, sink and commit path.
#[derive(Debug)]
pub struct IngestPipeline<L: Lane, P: Position, S> {
    classifier: Classifier<L, P>,
    sink: Arc<S>,
    commit: Arc<CommitPath<L, P>>,
    settings: PipelineSettings,
    dlq: Mutex<DlqControl<L, P>>,
}

/// Whether fetching is paused, and since which source generation.
#[derive(Debug, Default)]
struct PauseState {
    over_budget: bool,
    paused_at: Option<u64>,
}

impl<L: Lane, P: Position, S: RecordSink<L, P>> IngestPipeline<L, P, S> {
    pub fn new(
        classifier: Classifier<L, P>,
        sink: Arc<S>,
        commit: Arc<CommitPath<L, P>>,
        settings: PipelineSettings,
    ) -> Self {
        let dlq = DlqControl {
            budget: settings.dlq_limits.map(DlqBudget::new),
            compactor: settings.compaction.map(CompanionCompactor::new),
            throttled: None,
        };
        Self {
            classifier,
            sink,
            commit,
            settings,
            dlq: Mutex::new(dlq),
        }
    }

    pub fn classifier(&self) -> &Classifier<L, P> {
        &self.classifier
    }

    pub fn commit_path(&self) -> &Arc<CommitPath<L, P>> {
        &self.commit
    }

    /// Runs until `shutdown` resolves (then drains and commits within the grace period), the
    /// sink fails for good (`sink_failed`), the registry is fatally wrong or the commit gate
    /// refuses for good.
    pub async fn run<Src, E>(
        &self,
        source: &Src,
        checkpointer: &dyn Checkpointer<L, P>,
        shutdown: impl Future<Output = ()>,
        sink_failed: impl Future<Output = E>,
    ) -> Result<Shutdown, RunError<E>>
    where
        Src: Source<Lane = L, Position = P>,
        E: std::error::Error + 'static,
    {
        let mut tick = tokio::time::interval(self.settings.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pause = PauseState::default();
        tokio::pin!(shutdown, sink_failed);
        let budget = self.commit.finalizer().budget();
        let result = loop {
            let released = self.commit.take_released();
            if !released.is_empty() {
                self.forget_lanes(&released);
            }
            self.steer(source, &mut pause);
            let throttled_until = self.dlq().throttled.as_ref().map(|(until, _)| *until);
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                error = &mut sink_failed => break Err(RunError::Sink(error)),
                stopped = self.commit.stopped() => break Err(RunError::Commit(stopped)),
                _ = tick.tick() => {
                    self.send_expired_summaries().await;
                    self.commit.commit_ready(checkpointer).await;
                    // A slow commit (gate) must not make the next tick due at once: that would
                    // starve fetching, as the tick arm comes first.
                    tick.reset();
                }
                () = budget.resume_mark_reached(), if pause.over_budget => {}
                () = sleep_until(throttled_until), if throttled_until.is_some() => self.end_throttle(),
                received = source.next() => match received {
                    Ok(record) => {
                        if let Err(error) = self.process(&record, &mut shutdown).await {
                            break Err(error.into());
                        }
                    }
                    Err(error) => tracing::warn!(%error, "source fetch error"),
                },
            }
        };
        let drained = self.drain(source, checkpointer).await;
        result.map(|()| Shutdown { drained })
    }

    /// Classifies one record and sends its outputs (an in-memory test drives this too).
    pub async fn process<R, F>(
        &self,
        record: &R,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<(), ClassifyError>
    where
        R: crate::SourceRecord<Lane = L, Position = P>,
        F: Future<Output = ()>,
    {
        if let Some(classified) = self.classifier.classify(record, shutdown).await? {
            self.emit(classified).await;
        }
        Ok(())
    }

    /// Pauses while the in-flight budget is spent or dead letters are over budget, and
    /// re-pauses lanes a rebalance added; resumes once both allow.
    fn steer<Src: Source<Lane = L, Position = P>>(&self, source: &Src, pause: &mut PauseState) {
        let budget = self.commit.finalizer().budget();
        if budget.is_exhausted() {
            pause.over_budget = true;
        } else if pause.over_budget && budget.may_resume() {
            pause.over_budget = false;
        }
        let wanted = pause.over_budget || self.dlq().throttled.is_some();
        let generation = source.generation();
        match (wanted, pause.paused_at) {
            (true, Some(at)) if at == generation => {}
            (true, _) => {
                self.set_paused(source, true);
                pause.paused_at = Some(generation);
            }
            (false, Some(_)) => {
                self.set_paused(source, false);
                pause.paused_at = None;
            }
            (false, None) => {}
        }
    }

    fn set_paused<Src: Source<Lane = L, Position = P>>(&self, source: &Src, paused: bool) {
        source.set_paused(paused);
        let (records, bytes) = self.commit.finalizer().budget().in_flight();
        tracing::debug!(paused, records, bytes, "fetching paused/resumed");
        if let Some(metrics) = self.commit.metrics() {
            let lanes = if paused { source.lanes() } else { 0 };
            metrics.set_partitions_paused(i64::try_from(lanes).unwrap_or(i64::MAX));
        }
    }

    fn end_throttle(&self) {
        if let Some((_, source)) = self.dlq().throttled.take()
            && let Some(metrics) = self.commit.metrics()
        {
            metrics.set_dlq_throttled(&source, false);
        }
    }

    /// Registers the record's outputs with the finalizer (plus a summary's pending output when
    /// its companion is folded), then sends them.
    async fn emit(&self, mut classified: Classified<L, P>) {
        let dead = classified.dead_letter.take();
        let mut outputs = std::mem::take(&mut classified.outputs);
        let (mut hold, mut release, mut closed) = (0, None, None);
        if let Some(dead) = dead {
            let fate = self.control_dead_letter(&classified, &dead, &outputs);
            closed = fate.1;
            match fate.0 {
                CompanionFate::Write => outputs.push(dead.companion),
                CompanionFate::Folded { release: previous } => {
                    hold = 1;
                    release = previous;
                    if let Some(metrics) = self.commit.metrics() {
                        metrics.record_dlq_companion_compacted(&dead.source_name, dead.kind);
                    }
                }
            }
        }
        let Classified {
            lane,
            position,
            bytes,
            event_time_ms,
            ..
        } = classified;
        let finalizer = self.commit.finalizer();
        let count = u32::try_from(outputs.len()).unwrap_or(u32::MAX) + hold;
        finalizer.register(&lane, position.clone(), count, bytes);
        if let Some(previous) = release {
            // The summary's pending output moved on to this record.
            finalizer.acknowledge(&lane, &previous);
        }
        self.send_all(&lane, &position, event_time_ms, outputs)
            .await;
        if let Some(summary) = closed {
            self.send_summary(summary).await;
        }
    }

    /// Charges the DLQ budget (throttling when over) and decides the companion's fate.
    fn control_dead_letter(
        &self,
        classified: &Classified<L, P>,
        dead: &crate::classify::DeadLettered,
        outputs: &[OutboundRecord],
    ) -> (CompanionFate<P>, Option<Summary<L, P>>) {
        let now = Instant::now();
        let bytes: u64 = outputs.iter().map(record_size).sum();
        let mut control = self.dlq();
        if let Some(wait) = control
            .budget
            .as_mut()
            .and_then(|budget| budget.charge(&dead.source_name, bytes, now))
            && control.throttled.is_none()
        {
            tracing::warn!(source = %dead.source_name, ?wait, "dead letters over the DLQ budget; pausing the source");
            if let Some(metrics) = self.commit.metrics() {
                metrics.set_dlq_throttled(&dead.source_name, true);
            }
            control.throttled = Some((now + wait, dead.source_name.clone()));
        }
        match control.compactor.as_mut() {
            Some(compactor) => compactor.admit(
                (&dead.source_name, &classified.lane, dead.kind),
                &classified.position,
                &dead.event_id,
                now,
            ),
            None => (CompanionFate::Write, None),
        }
    }

    async fn send_all(
        &self,
        lane: &L,
        position: &P,
        event_time_ms: i64,
        outputs: Vec<OutboundRecord>,
    ) {
        for record in outputs {
            let ticket = DeliveryTicket {
                lane: lane.clone(),
                position: position.clone(),
                kind: record.kind,
                event_time_ms,
                attempt: 0,
            };
            self.sink.send(record, ticket).await;
        }
    }

    async fn send_summary(&self, summary: Summary<L, P>) {
        if let Some(metrics) = self.commit.metrics() {
            metrics.record_dlq_summary(&summary.source, summary.kind);
        }
        tracing::info!(source = %summary.source, kind = summary.kind.as_str(), folded = summary.folded, "dead-letter burst summary");
        self.sink.send(summary.record, summary.ticket).await;
    }

    async fn send_expired_summaries(&self) {
        let expired = match self.dlq().compactor.as_mut() {
            Some(compactor) => compactor.expired(Instant::now()),
            None => return,
        };
        for summary in expired {
            self.send_summary(summary).await;
        }
    }

    /// Released lanes (revoke, lease loss) lose their open summary windows too: the next owner
    /// re-reads those records.
    fn forget_lanes(&self, lanes: &[L]) {
        if let Some(compactor) = self.dlq().compactor.as_mut() {
            compactor.forget(lanes);
        }
    }

    /// Stop fetching, write open summaries, wait for in-flight outputs within 70 % of the grace
    /// period (the rest is for the commit and the adapter's close), then commit.
    async fn drain<Src: Source<Lane = L, Position = P>>(
        &self,
        source: &Src,
        checkpointer: &dyn Checkpointer<L, P>,
    ) -> bool {
        let started = Instant::now();
        let grace = self.settings.shutdown_grace;
        self.set_paused(source, true);
        let open = match self.dlq().compactor.as_mut() {
            Some(compactor) => compactor.close_all(),
            None => Vec::new(),
        };
        for summary in open {
            self.send_summary(summary).await;
        }
        let finalizer = self.commit.finalizer();
        let drain_deadline = started + grace.mul_f32(0.7);
        while finalizer.pending(None) > 0 && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let drained = finalizer.pending(None) == 0;
        let left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        self.commit.commit_final(checkpointer, left).await;
        self.end_throttle();
        tracing::info!(drained, elapsed = ?started.elapsed(), "drained");
        drained
    }

    fn dlq(&self) -> MutexGuard<'_, DlqControl<L, P>> {
        self.dlq.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn record_size(record: &OutboundRecord) -> u64 {
    (record.payload.len() + record.key.as_ref().map_or(0, Vec::len) + record.headers.byte_len())
        as u64
}

async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until.into()).await,
        None => std::future::pending().await,
    }
}
