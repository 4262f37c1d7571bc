//! consume → size/header checks → decode → dq → route, with offsets committed only after
//! every output of a record (and of all earlier records of its partition) is acknowledged.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dq_rules::Verdict;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use summit_envelope::headers::{self, DlqErrorKind};
use summit_envelope::{SourceCoordinates, TraceContext, event_id, now_millis};
use summit_kafka::{MeshError, MeshProducer, PermanentFailure, ProducerSettings};
use summit_mesh::records::{self, Judgement, Provenance, Rejection};
use summit_mesh::{
    DeliveryObserver, DeliveryTicket, Finalizer, InFlightBudget, OutboundRecord, PartitionKey,
    RecordSink as _,
};
use summit_schema::wire::VALUE_SCHEMA_ID_HEADER;
use summit_schema::{DecodedPayload, Disposition, SchemaError};
use summit_telemetry::{
    MessageSpan, MessagingOperation, MessagingSystem, Metrics, Readiness, WriteResult,
    trace_context_of,
};
use tracing::Instrument as _;

use crate::config::Config;
use crate::rebalance::{RebalanceHandler, commit_offsets, offer_again, offsets_list};
use summit_ingest::{
    ObservedRecord, ObserverSet, OutcomeObserver, RecordOutcome, Route, RouteTable,
};

/// Seam for lineage: called with the offsets about to be committed; an error holds the commit
/// back (offsets stop advancing, nothing is skipped) until a later attempt succeeds.
pub trait CommitGate: Send + Sync + std::fmt::Debug {
    fn before_commit<'a>(
        &'a self,
        offsets: &'a [(PartitionKey, i64)],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

    /// The partitions were revoked (after their last commit attempt): forget their state.
    fn released(&self, _partitions: &[PartitionKey]) {}
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create the Kafka consumer: {0}")]
    Consumer(#[source] KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Producer(#[from] MeshError),
    #[error("schema registry: {0}")]
    Fatal(#[source] SchemaError),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Every output was acknowledged and committed within the grace period.
    pub drained: bool,
}

/// The running service.
pub struct Pipeline {
    config: Arc<Config>,
    routes: RouteTable,
    consumer: StreamConsumer<RebalanceHandler>,
    producer: Arc<MeshProducer<PartitionKey, i64>>,
    /// The first output the broker refused for good: the run stops on it.
    permanent: Arc<PermanentFailure>,
    finalizer: Arc<Finalizer>,
    outcomes: Option<Arc<dyn OutcomeObserver>>,
    commit_gate: Option<Arc<dyn CommitGate>>,
    metrics: Option<Metrics>,
    /// After the gate refused a commit: no new attempt before this instant (the backoff
    /// doubles from `delivery.retry_backoff` up to `retry_backoff_max`), so a blocked gate
    /// does not take the consuming task's time from fetching.
    gate_backoff: std::sync::Mutex<(Option<Instant>, Duration)>,
    redelivery: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("routes", &self.routes)
            .field("finalizer", &self.finalizer)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn build(
        config: Arc<Config>,
        routes: RouteTable,
        deliveries: Option<Arc<dyn DeliveryObserver>>,
    ) -> Result<Self, PipelineError> {
        let limits = &config.limits;
        let finalizer = Arc::new(Finalizer::new(InFlightBudget::new(
            limits.max_in_flight_records,
            limits.max_in_flight_bytes,
        )));
        let instance = config.instance_id();
        let consumer_config = source_consumer_config(&config);
        let consumer: StreamConsumer<RebalanceHandler> = consumer_config
            .create_with_context(RebalanceHandler::new(
                finalizer.clone(),
                config.delivery.rebalance_drain_timeout,
            ))
            .map_err(PipelineError::Consumer)?;

        let settings = ProducerSettings {
            bootstrap_servers: config.mesh_bootstrap_servers().to_owned(),
            client_id: format!("{instance}-producer"),
            properties: config
                .mesh
                .producer_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let permanent = Arc::new(PermanentFailure::default());
        let (producer, failed) =
            MeshProducer::new(&settings, finalizer.clone(), deliveries, permanent.clone())?;
        let producer = Arc::new(producer);
        let redelivery = tokio::spawn(producer.clone().redeliver(
            failed,
            config.delivery.retry_backoff,
            config.delivery.retry_backoff_max,
        ));
        Ok(Self {
            config,
            routes,
            consumer,
            producer,
            permanent,
            finalizer,
            outcomes: None,
            commit_gate: None,
            metrics: None,
            gate_backoff: std::sync::Mutex::new((None, Duration::ZERO)),
            redelivery,
        })
    }

    /// Adds an observer; every observer sees every record, in the order added.
    pub fn with_outcome_observer(mut self, observer: Arc<dyn OutcomeObserver>) -> Self {
        self.outcomes = Some(match self.outcomes.take() {
            None => observer,
            Some(first) => Arc::new(ObserverSet(vec![first, observer])),
        });
        self
    }

    /// The gate guards every commit: the periodic ones, the final one and the revoke one.
    pub fn with_commit_gate(mut self, gate: Arc<dyn CommitGate>) -> Self {
        self.consumer.context().set_commit_gate(gate.clone());
        self.commit_gate = Some(gate);
        self
    }

    /// Budget, pause, commit and lag metrics.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.consumer.context().set_metrics(metrics.clone());
        self.metrics = Some(metrics);
        self
    }

    /// Flipped to connected/assigned by the rebalance callback.
    pub fn with_readiness(self, readiness: Readiness) -> Self {
        self.consumer.context().set_readiness(readiness);
        self
    }

    /// Runs until `shutdown` resolves, then stops fetching, drains, commits and returns within
    /// the configured grace period.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Shutdown, PipelineError> {
        let subscription = self.config.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|source| PipelineError::Subscribe {
                topics: subscription.clone(),
                source,
            })?;
        tracing::info!(topics = ?subscription, "subscribed");

        let mut commit_tick = tokio::time::interval(self.config.delivery.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut paused_generation: Option<u64> = None;
        tokio::pin!(shutdown);
        let finalizer = self.finalizer.clone();
        let result = loop {
            // Backpressure: pause every assigned partition while the budget is spent, and
            // re-pause after a rebalance hands us new ones.
            let generation = self.consumer.context().generation();
            let budget = finalizer.budget();
            if budget.is_exhausted() && paused_generation != Some(generation) {
                self.set_paused(true);
                paused_generation = Some(generation);
            } else if paused_generation.is_some() && budget.may_resume() {
                self.set_paused(false);
                paused_generation = None;
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                error = self.permanent.wait() => break Err(PipelineError::Producer(error)),
                _ = commit_tick.tick() => {
                    self.commit_ready().await;
                    // A slow commit (gate) must not make the next tick due at once: that would
                    // starve fetching, as the tick arm comes first.
                    commit_tick.reset();
                }
                () = budget.resume_mark_reached(), if paused_generation.is_some() => {}
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        if let Err(error) = self.process(&message, &mut shutdown).await {
                            break Err(error);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "consumer error"),
                },
            }
        };
        let drained = self.drain_and_close().await;
        result.map(|()| Shutdown { drained })
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
        let (records, bytes) = self.finalizer.budget().in_flight();
        match outcome {
            Ok(()) => tracing::debug!(paused, records, bytes, "fetching paused/resumed"),
            Err(error) => tracing::warn!(%error, paused, "pause/resume failed"),
        }
        if let Some(metrics) = &self.metrics {
            let count = if paused { assignment.count() } else { 0 };
            metrics.set_partitions_paused(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    async fn commit_ready(&self) {
        if let Some(metrics) = &self.metrics {
            let (records, bytes) = self.finalizer.budget().in_flight();
            metrics.set_inflight(
                i64::try_from(records).unwrap_or(i64::MAX),
                i64::try_from(bytes).unwrap_or(i64::MAX),
            );
        }
        let backoff = || {
            self.gate_backoff
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if backoff()
            .0
            .is_some_and(|retry_at| Instant::now() < retry_at)
        {
            return;
        }
        let offsets = commit_offsets(self.finalizer.take_committable());
        if offsets.is_empty() {
            return;
        }
        if let Some(gate) = &self.commit_gate {
            if let Err(error) = gate.before_commit(&offsets).await {
                let delivery = &self.config.delivery;
                let mut state = backoff();
                state.1 = (state.1 * 2)
                    .max(delivery.retry_backoff)
                    .min(delivery.retry_backoff_max);
                state.0 = Some(Instant::now() + state.1);
                tracing::warn!(%error, retry_in = ?state.1, "commit held back by the commit gate");
                for (key, offset) in &offsets {
                    offer_again(&self.finalizer, key, *offset);
                }
                return;
            }
            *backoff() = (None, Duration::ZERO);
        }
        // Synchronous (one round trip per commit interval) so the result is known here, for
        // summit_commit_total and to offer failed offsets again.
        let result = self
            .consumer
            .commit(&offsets_list(&offsets), CommitMode::Sync);
        if let Some(metrics) = &self.metrics {
            metrics.record_commit(WriteResult::from(&result));
        }
        if let Err(error) = result {
            tracing::warn!(%error, "offset commit failed");
            for (key, offset) in &offsets {
                offer_again(&self.finalizer, key, *offset);
            }
        }
    }

    /// Stop fetching, wait for in-flight outputs within the grace period, commit, leave the
    /// group (its revoke callback commits again, harmlessly) and flush the producer.
    async fn drain_and_close(&mut self) -> bool {
        let started = Instant::now();
        let grace = self.config.service.shutdown_grace;
        self.set_paused(true);
        // Keep a slice of the grace period for the commit, the group leave and the flush.
        let drain_deadline = started + grace.mul_f32(0.7);
        while self.finalizer.pending(None) > 0 && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let drained = self.finalizer.pending(None) == 0;
        let offsets = commit_offsets(self.finalizer.take_committable());
        if !offsets.is_empty() {
            let gate_ok = match &self.commit_gate {
                // Bounded by the rest of the grace period: uncommitted is safe, late is not.
                Some(gate) => tokio::time::timeout(
                    grace
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_secs(1)),
                    gate.before_commit(&offsets),
                )
                .await
                .is_ok_and(|passed| passed.is_ok()),
                None => true,
            };
            if gate_ok {
                let result = self
                    .consumer
                    .commit(&offsets_list(&offsets), CommitMode::Sync);
                if let Some(metrics) = &self.metrics {
                    metrics.record_commit(WriteResult::from(&result));
                }
                if let Err(error) = result {
                    tracing::warn!(%error, "final commit failed");
                }
            }
        }
        self.consumer.unsubscribe();
        let remaining = grace.saturating_sub(started.elapsed());
        if let Err(error) = self.producer.flush(remaining.min(Duration::from_secs(5))) {
            tracing::warn!(%error, "producer flush incomplete");
        }
        self.redelivery.abort();
        tracing::info!(drained, elapsed = ?started.elapsed(), "stopped");
        drained
    }

    fn classifier(&self) -> RecordClassifier<'_> {
        RecordClassifier {
            config: &self.config,
            routes: &self.routes,
            outcomes: self.outcomes.as_ref(),
            dlq_max_record_bytes: self.producer.max_record_bytes(),
        }
    }

    async fn process(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), PipelineError> {
        if let Some(record) = self.classifier().classify(message, shutdown).await? {
            self.emit(
                record.partition_key,
                record.offset,
                record.bytes,
                record.event_time_ms,
                record.outputs,
            )
            .await;
        }
        Ok(())
    }

    /// Registers the record's outputs with the finalizer, then sends them.
    async fn emit(
        &self,
        partition_key: PartitionKey,
        offset: i64,
        bytes: u64,
        event_time_ms: i64,
        outputs: Vec<OutboundRecord>,
    ) {
        let count = u32::try_from(outputs.len()).unwrap_or(u32::MAX);
        self.finalizer
            .register(&partition_key, offset, count, bytes);
        for record in outputs {
            let ticket = DeliveryTicket {
                lane: partition_key.clone(),
                position: offset,
                kind: record.kind,
                event_time_ms,
                attempt: 0,
            };
            self.producer.send(record, ticket).await;
        }
    }
}

/// One source record's outputs, decided but not yet sent.
#[derive(Debug)]
pub(crate) struct ClassifiedRecord {
    pub(crate) partition_key: PartitionKey,
    pub(crate) offset: i64,
    /// Key + payload bytes of the source record.
    pub(crate) bytes: u64,
    pub(crate) event_time_ms: i64,
    pub(crate) outputs: Vec<OutboundRecord>,
}

/// size/header checks → decode → dq → outputs for one source record; shared by both delivery
/// modes (the effectively_once pipeline and `exactly_once`), which differ only in how they send.
#[derive(Debug)]
pub(crate) struct RecordClassifier<'a> {
    pub(crate) config: &'a Config,
    pub(crate) routes: &'a RouteTable,
    pub(crate) outcomes: Option<&'a Arc<dyn OutcomeObserver>>,
    /// Dead letters larger than this are written in chunks (the DLQ's producer limit).
    pub(crate) dlq_max_record_bytes: Option<usize>,
}

impl RecordClassifier<'_> {
    /// `Ok(None)`: shutdown arrived while the registry was unreachable; the record stays
    /// uncommitted.
    pub(crate) async fn classify(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Option<ClassifiedRecord>, PipelineError> {
        let topic = message.topic();
        let partition = message.partition();
        let offset = message.offset();
        let ingest_time_ms = now_millis();
        let event_time_ms = message.timestamp().to_millis().unwrap_or(ingest_time_ms);
        let coordinates = SourceCoordinates::Kafka {
            cluster: self.config.kafka.cluster_name.clone(),
            topic: topic.to_owned(),
            partition,
            offset,
        };
        let source = coordinates.to_string();
        let event_id = event_id(&coordinates).hyphenated().to_string();
        let payload = message.payload().unwrap_or_default();
        let key = message.key();
        let bytes = (payload.len() + key.map_or(0, <[u8]>::len)) as u64;

        let Some((topic_name, route)) = self.routes.resolve(topic) else {
            // Subscriptions come from the routes, so this is a topic that matched a pattern
            // librdkafka and the regex crate read differently: dead-letter, do not guess.
            let provenance = Provenance {
                event_id: &event_id,
                source: &source,
                trace: None,
                tracestate: None,
            };
            let partition_key = PartitionKey::new(topic, partition);
            let kind = DlqErrorKind::Undecodable;
            self.observe(&ObservedRecord {
                lane: &partition_key,
                position: &offset,
                bytes,
                dataset: None,
                event_id: &event_id,
                schema: None,
                outcome: RecordOutcome::DeadLettered(kind),
            });
            let outputs = self.dead_letter(
                message,
                None,
                &provenance,
                kind,
                "no route matches this topic",
                event_time_ms,
            );
            return Ok(Some(ClassifiedRecord {
                partition_key,
                offset,
                bytes,
                event_time_ms,
                outputs,
            }));
        };
        let partition_key = PartitionKey {
            topic: topic_name,
            partition,
        };

        let mut traceparent: Option<&[u8]> = None;
        let mut tracestate: Option<&[u8]> = None;
        let mut schema_id: Option<&[u8]> = None;
        if let Some(source_headers) = message.headers() {
            for header in source_headers.iter() {
                match header.key {
                    headers::TRACEPARENT => traceparent = header.value,
                    headers::TRACESTATE => tracestate = header.value,
                    VALUE_SCHEMA_ID_HEADER => schema_id = header.value,
                    _ => {}
                }
            }
        }
        let bare = Provenance {
            event_id: &event_id,
            source: &source,
            trace: None,
            tracestate: None,
        };

        if bytes > self.config.limits.max_record_bytes {
            let error = format!(
                "record is {bytes} bytes; limits.max_record_bytes is {}",
                self.config.limits.max_record_bytes
            );
            return self
                .reject(
                    message,
                    partition_key,
                    &route,
                    &bare,
                    DlqErrorKind::Oversize,
                    &error,
                    event_time_ms,
                )
                .await;
        }

        let trace = match parse_trace(traceparent, tracestate) {
            Ok(trace) => trace,
            Err(error) => {
                return self
                    .reject(
                        message,
                        partition_key,
                        &route,
                        &bare,
                        DlqErrorKind::BadHeader,
                        &error,
                        event_time_ms,
                    )
                    .await;
            }
        };
        let (parent, tracestate) = trace;
        let exported_span = (SPANS_EXPORTED.get() != Some(&false)).then(|| {
            let partition_text = partition.to_string();
            let span = MessageSpan {
                system: MessagingSystem::Kafka,
                operation: MessagingOperation::Process,
                destination: topic,
                partition: Some(&partition_text),
                offset: Some(offset),
                message_id: Some(&event_id),
            }
            .start(parent.as_ref());
            let context = trace_context_of(&span);
            let exported = *SPANS_EXPORTED.get_or_init(|| context.is_some());
            (span, context.filter(|_| exported))
        });
        let (span, span_context) = exported_span.unwrap_or((tracing::Span::none(), None));
        // With span export on, outputs point at this span; otherwise at a fresh child id.
        let context = span_context.unwrap_or_else(|| {
            parent
                .as_ref()
                .map_or_else(TraceContext::new_root, TraceContext::child)
        });
        let provenance = Provenance {
            event_id: &event_id,
            source: &source,
            trace: Some(&context),
            tracestate,
        };
        async {
            let decoded = match self.decode(&route, payload, schema_id, shutdown).await {
                Ok(Some(decoded)) => decoded,
                // Shutdown while the registry was unreachable: the record stays uncommitted.
                Ok(None) => return Ok(None),
                Err(DecodeFailure::Record { kind, error }) => {
                    return self
                        .reject(
                            message,
                            partition_key,
                            &route,
                            &provenance,
                            kind,
                            &error,
                            event_time_ms,
                        )
                        .await;
                }
                Err(DecodeFailure::Fatal(error)) => return Err(PipelineError::Fatal(error)),
            };
            let (schema, payload_value) = decoded;
            let outcome = match &payload_value {
                DecodedPayload::Avro(value) => route.evaluator.evaluate(value),
                DecodedPayload::Json(value) => route.evaluator.evaluate(value),
            };
            let judgement = Judgement {
                verdict: outcome.verdict,
                ruleset: &route.ruleset,
                schema: &schema,
                violations: &outcome.violations,
                event_time_ms,
                ingest_time_ms,
            };
            let dataset = &route.dataset;
            let outputs = match outcome.verdict {
                Verdict::Pass => vec![records::mesh_record(
                    dataset,
                    key,
                    payload,
                    &provenance,
                    &judgement,
                )],
                Verdict::SoftFail => vec![
                    records::quarantine_record(dataset, key, payload, &provenance, &judgement),
                    records::dq_event_record(dataset, "ingest", &provenance, &judgement),
                ],
                Verdict::HardFail => vec![records::dq_event_record(
                    dataset,
                    "ingest",
                    &provenance,
                    &judgement,
                )],
            };
            self.observe(&ObservedRecord {
                lane: &partition_key,
                position: &offset,
                bytes,
                dataset: Some(dataset),
                event_id: &event_id,
                schema: Some(&schema),
                outcome: RecordOutcome::Routed(&outcome),
            });
            Ok(Some(ClassifiedRecord {
                partition_key,
                offset,
                bytes,
                event_time_ms,
                outputs,
            }))
        }
        .instrument(span)
        .await
    }

    fn observe(&self, record: &ObservedRecord<'_>) {
        if let Some(observer) = self.outcomes {
            observer.observe(record);
        }
    }

    /// Decodes with the registry (retrying while it is unreachable) or as plain JSON.
    /// `Ok(None)`: shutdown arrived while waiting for the registry.
    async fn decode(
        &self,
        route: &Route,
        payload: &[u8],
        schema_id: Option<&[u8]>,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Option<(String, DecodedPayload)>, DecodeFailure> {
        let Some(decoder) = self.routes.decoder().filter(|_| route.subject.is_some()) else {
            return match serde_json::from_slice(payload) {
                Ok(value) => Ok(Some((
                    "unregistered-json".to_owned(),
                    DecodedPayload::Json(value),
                ))),
                Err(error) => Err(DecodeFailure::Record {
                    kind: DlqErrorKind::Undecodable,
                    error: format!("not JSON: {error}"),
                }),
            };
        };
        let mut attempt: u32 = 0;
        loop {
            match decoder.decode(payload, schema_id).await {
                Ok(decoded) => return Ok(Some((decoded.schema_header(), decoded.payload))),
                Err(error) => match error.disposition() {
                    Disposition::RecordLevel => {
                        let kind = match error {
                            SchemaError::UnknownSchemaId { .. }
                            | SchemaError::UnknownSchemaGuid { .. } => DlqErrorKind::UnknownSchema,
                            _ => DlqErrorKind::Undecodable,
                        };
                        return Err(DecodeFailure::Record {
                            kind,
                            error: error.to_string(),
                        });
                    }
                    Disposition::Fatal => return Err(DecodeFailure::Fatal(error)),
                    Disposition::Retriable => {
                        attempt = attempt.saturating_add(1);
                        let delay = self
                            .config
                            .delivery
                            .retry_backoff
                            .saturating_mul(1 << attempt.min(10))
                            .min(self.config.delivery.retry_backoff_max);
                        tracing::warn!(%error, attempt, "schema registry unavailable; retrying in {delay:?}");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = shutdown.as_mut() => return Ok(None),
                        }
                    }
                },
            }
        }
    }

    /// The DLQ record and its `dq.events` record.
    fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        dataset: Option<&str>,
        provenance: &Provenance<'_>,
        kind: DlqErrorKind,
        error: &str,
        event_time_ms: i64,
    ) -> Vec<OutboundRecord> {
        let source_headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
            .unwrap_or_default();
        let rejection = Rejection {
            kind,
            error,
            failed_at_ms: now_millis(),
        };
        let dead_letter = records::dlq_record(
            message.topic(),
            message.key(),
            message.payload().unwrap_or_default(),
            source_headers,
            provenance,
            &rejection,
        );
        // The whole payload is kept: a record the DLQ cannot take in one piece goes in several.
        let mut outputs = match self.dlq_max_record_bytes {
            Some(limit) => records::chunk_dead_letter(dead_letter, limit),
            None => vec![dead_letter],
        };
        outputs.push(records::dlq_dq_event_record(
            message.topic(),
            dataset,
            provenance,
            &rejection,
            event_time_ms,
        ));
        outputs
    }

    #[allow(clippy::too_many_arguments)] // one call site per rejection reason, all local
    async fn reject(
        &self,
        message: &BorrowedMessage<'_>,
        partition_key: PartitionKey,
        route: &Route,
        provenance: &Provenance<'_>,
        kind: DlqErrorKind,
        error: &str,
        event_time_ms: i64,
    ) -> Result<Option<ClassifiedRecord>, PipelineError> {
        let bytes = (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
        self.observe(&ObservedRecord {
            lane: &partition_key,
            position: &message.offset(),
            bytes,
            dataset: Some(&route.dataset),
            event_id: provenance.event_id,
            schema: None,
            outcome: RecordOutcome::DeadLettered(kind),
        });
        let outputs = self.dead_letter(
            message,
            Some(&route.dataset),
            provenance,
            kind,
            error,
            event_time_ms,
        );
        Ok(Some(ClassifiedRecord {
            partition_key,
            offset: message.offset(),
            bytes,
            event_time_ms,
            outputs,
        }))
    }
}

/// Whether per-message spans reach an OpenTelemetry exporter, learnt from the first record's
/// span (its context is valid only when an OpenTelemetry layer recorded it). Without export the
/// span would only decorate the rare per-record log line, yet creating it (fields formatted by
/// the log layer, entered on every poll) was a visible share of the consuming thread's CPU:
/// once known to be off, records get no span and their outputs a fresh child of the source's
/// context, exactly as before.
static SPANS_EXPORTED: OnceLock<bool> = OnceLock::new();

enum DecodeFailure {
    Record { kind: DlqErrorKind, error: String },
    Fatal(SchemaError),
}

/// The source's trace context, if it sent one, and its `tracestate`. A present but malformed
/// `traceparent` (or a non-UTF-8 `tracestate`) is the record's fault.
fn parse_trace<'a>(
    traceparent: Option<&[u8]>,
    tracestate: Option<&'a [u8]>,
) -> Result<(Option<TraceContext>, Option<&'a str>), String> {
    let state = match tracestate {
        Some(bytes) => Some(
            std::str::from_utf8(bytes).map_err(|_| "tracestate header is not UTF-8".to_owned())?,
        ),
        None => None,
    };
    let Some(bytes) = traceparent else {
        return Ok((None, None));
    };
    let text =
        std::str::from_utf8(bytes).map_err(|_| "traceparent header is not UTF-8".to_owned())?;
    let parent = TraceContext::parse(text).map_err(|e| e.to_string())?;
    Ok((Some(parent), state))
}

/// The source consumer's client config, shared by both delivery modes (exactly_once adds
/// `isolation.level=read_committed`): manual offset store and commit, cooperative-sticky, the
/// fetch queue capped by `limits.fetch_queue_kbytes`, statistics for the lag metric, then the
/// user's `kafka.consumer_properties` (which win).
pub(crate) fn source_consumer_config(config: &Config) -> ClientConfig {
    let instance = config.instance_id();
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("group.id", &config.kafka.group_id)
        .set("client.id", &instance)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            config.kafka.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.kafka.session_timeout.as_millis() / 6)
                .max(100)
                .to_string(),
        )
        .set(
            "queued.max.messages.kbytes",
            config.limits.fetch_queue_kbytes.to_string(),
        )
        // Feeds summit_consumer_lag (see RebalanceHandler::stats and AssignmentTracker::stats).
        .set(
            "statistics.interval.ms",
            config.admin.lag_interval.as_millis().max(100).to_string(),
        );
    for (key, value) in &config.kafka.consumer_properties {
        consumer_config.set(key, value);
    }
    consumer_config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_continued_started_or_refused() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (found, state) =
            parse_trace(Some(parent.as_bytes()), Some(b"k=v")).expect("valid parent");
        let found = found.expect("parent kept");
        assert_eq!(found.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(found.span_id_hex(), "b7ad6b7169203331");
        assert_eq!(state, Some("k=v"));
        let (none, state) = parse_trace(None, None).expect("no header");
        assert!(none.is_none());
        assert_eq!(state, None);
        assert!(parse_trace(Some(b"00-zz"), None).is_err());
        assert!(parse_trace(Some(&[0xff, 0xfe]), None).is_err());
    }
}
