//! `delivery.mode: exactly_once` (DESIGN §8): consume-transform-produce in Kafka transactions.
//!
//! Per batch (up to `delivery.transaction_max_records` records or `delivery.transaction_interval`):
//! classify every record exactly as effectively_once does ([`RecordClassifier`]), then
//! `begin_transaction`, produce every output (mesh / quarantine / DLQ / dq.events) and one
//! lineage epoch COMPLETE per dataset into `lineage.events`, `send_offsets_to_transaction` with
//! the consumer's group metadata (KIP-447), `commit_transaction`.
//!
//! - One `transactional.id` per instance (`<prefix>-<instance_id>`): the group metadata sent
//!   with the offsets lets the coordinator refuse a zombie of an older generation, so no
//!   per-partition ids are needed.
//! - A failed produce, send-offsets or commit aborts the transaction, rewinds the consumer to
//!   the batch's first offsets and tries again after a backoff; nothing is skipped.
//! - A fatal producer error (fenced by a newer producer with the same id) stops the service with
//!   [`TransactionError::Fenced`]: another process owns the id, and retrying would fence it back.
//! - The batch is buffered, not produced while it fills, so no transaction is open while
//!   `recv()` runs the rebalance callbacks; a revocation during a batch discards and rewinds it.
//! - Sources are read with `isolation.level=read_committed`.
//!
//! Operations ([`run`]) are those of effectively_once: the same admin server, readiness,
//! metrics, tickets and per-record `process <topic>` spans (made by the shared
//! [`RecordClassifier`]). The difference is when a record counts: here the "acknowledgement" is
//! the transaction's commit. Observers (outcome metrics, tickets) are told about a batch's
//! records only once its transaction has committed, and `summit_ingest_latency_seconds` is
//! observed then, from each record's source timestamp; an aborted or discarded batch counts
//! nothing (its records are counted when they commit after being read again).
//! `summit_commit_total` counts batch transactions, `summit_inflight_*` is the open batch.
//!
//! Test-only fault injection: with `delivery.test_fault_injection: true`, the variable
//! `SUMMIT_TEST_FAIL_TXN_AFTER=<n>` makes the n-th transaction (counting from 1) abort instead
//! of committing, once. Without the flag the variable is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use summit_envelope::headers::DlqErrorKind;
use summit_envelope::topics;
use summit_ingest::{
    ObservedRecord, ObserverSet, OutcomeMetrics, OutcomeObserver, RecordOutcome, RouteTable,
    TicketFeed, latency_since,
};
use summit_lineage::{DatasetName, EpochInput, EpochReport, LineageRun, OffsetRange, RunEnd};
use summit_mesh::{OutboundRecord, OutputKind, PartitionKey};
use summit_telemetry::{Metrics, Readiness, WriteResult};

use crate::config::Config;
use crate::lineage::{RuleAssertions, epoch_outputs, schema_used};
use crate::pipeline::{Shutdown, classify_settings};
use crate::rebalance::{keys_of, report_statistics};
use crate::service::{Operations, SERVICE_NAME, ServiceError};
use crate::source::{KafkaRecord, source_consumer_config};
use summit_ingest::{Classified, Classifier, ClassifyError};

/// Variable read (only with `delivery.test_fault_injection`) to abort the n-th transaction.
pub const FAIL_TXN_AFTER_ENV: &str = "SUMMIT_TEST_FAIL_TXN_AFTER";

/// Bound on one blocking transactional call (begin/send offsets/commit/abort).
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("cannot create the Kafka {client}: {source}")]
    Client {
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("init_transactions for transactional id `{id}` failed: {source}")]
    Init {
        id: String,
        #[source]
        source: KafkaError,
    },
    /// Another producer with the same transactional id (a newer process with this
    /// `service.instance_id`) fenced this one.
    #[error("fenced: {0}")]
    Fenced(String),
    #[error("fatal transactional producer error: {0}")]
    Fatal(String),
    #[error("{FAIL_TXN_AFTER_ENV} must be a positive integer, got `{0}`")]
    FaultInjection(String),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// Metrics, the admin server or the ticketer could not start.
    #[error(transparent)]
    Operations(#[from] ServiceError),
}

/// The exactly_once service: the admin server, metrics, readiness and tickets (the same
/// `service::Operations` as effectively_once) around a [`TransactionalPipeline`]. `/readyz`
/// turns 503 as soon as `shutdown` fires.
pub async fn run(
    config: Arc<Config>,
    routes: RouteTable,
    shutdown: impl Future<Output = ()>,
) -> Result<Shutdown, TransactionError> {
    let mut operations = Operations::start(&config, &routes).await?;
    let mut pipeline = TransactionalPipeline::build(config, routes)?
        .with_metrics(operations.metrics.clone())
        .with_readiness(operations.readiness.clone())
        .with_outcome_observer(Arc::new(OutcomeMetrics::new(operations.metrics.clone())));
    if let Some(ticketing) = operations.ticketing.take() {
        pipeline = pipeline.with_outcome_observer(Arc::new(TicketFeed::new(ticketing)));
    }
    if let Some(counts) = &operations.rule_counts {
        pipeline = pipeline.with_outcome_observer(counts.clone());
    }
    let draining = operations.readiness.clone();
    let result = pipeline
        .run(async move {
            shutdown.await;
            draining.set_shutting_down();
        })
        .await;
    operations.stop().await;
    result
}

/// Consumer context: counts revocations so a batch that spans one is discarded, keeps
/// readiness (connected / assigned) and `summit_consumer_lag` of the owned partitions in step
/// with the assignment, and logs.
#[derive(Debug, Default)]
pub struct AssignmentTracker {
    revocations: AtomicU64,
    owned: Mutex<BTreeSet<PartitionKey>>,
    metrics: OnceLock<Metrics>,
    readiness: OnceLock<Readiness>,
}

impl AssignmentTracker {
    fn count(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    fn owned(&self) -> MutexGuard<'_, BTreeSet<PartitionKey>> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClientContext for AssignmentTracker {
    fn stats(&self, statistics: Statistics) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        // Held while setting, so a revoke cannot remove a series that is then set again.
        let owned = self.owned();
        report_statistics(&statistics, &owned, metrics, self.readiness.get());
    }
}

impl ConsumerContext for AssignmentTracker {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = ?names(list), "assigned");
                let mut owned = self.owned();
                owned.extend(keys_of(list));
                if let Some(readiness) = self.readiness.get() {
                    // A group assignment needs the coordinator: we are connected.
                    readiness.set_connected(true);
                    readiness.set_assigned(!owned.is_empty());
                }
            }
            Rebalance::Revoke(list) => {
                // Nothing to drain: no transaction is open while recv() runs this callback.
                tracing::info!(partitions = ?names(list), "revoked");
                self.revocations.fetch_add(1, Ordering::AcqRel);
                let mut owned = self.owned();
                for key in keys_of(list) {
                    if let Some(metrics) = self.metrics.get() {
                        metrics.remove_partition(&key.topic, &key.partition.to_string());
                    }
                    owned.remove(&key);
                }
                if let Some(readiness) = self.readiness.get() {
                    readiness.set_assigned(!owned.is_empty());
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

fn names(list: &TopicPartitionList) -> Vec<String> {
    list.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

/// First and last offset of a partition in a batch.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: i64,
    last: i64,
}

/// Per (topic, partition): offsets, records and bytes of a batch.
type Positions = BTreeMap<(Arc<str>, i32), (Span, u64, u64)>;

/// One dataset's share of a batch: its inputs by source topic, its rule set, and the rule
/// failures and schema of its records (for the epoch's assertions).
#[derive(Debug)]
struct DatasetEpoch {
    inputs: BTreeMap<Arc<str>, EpochInput>,
    ruleset: String,
    evaluated: u64,
    failures: Vec<u64>,
    schema: Option<String>,
}

/// An owned [`ObservedRecord`], kept with its batch until the transaction commits.
#[derive(Debug)]
struct Observation {
    partition: PartitionKey,
    offset: i64,
    bytes: u64,
    dataset: Option<String>,
    event_id: String,
    schema: Option<String>,
    outcome: ObservedOutcome,
}

#[derive(Debug)]
enum ObservedOutcome {
    Routed(dq_rules::Outcome),
    DeadLettered(DlqErrorKind),
}

impl Observation {
    fn outcome(&self) -> RecordOutcome<'_> {
        match &self.outcome {
            ObservedOutcome::Routed(outcome) => RecordOutcome::Routed(outcome),
            ObservedOutcome::DeadLettered(kind) => RecordOutcome::DeadLettered(*kind),
        }
    }

    fn observed(&self) -> ObservedRecord<'_> {
        ObservedRecord {
            lane: &self.partition,
            position: &self.offset,
            bytes: self.bytes,
            dataset: self.dataset.as_deref(),
            event_id: &self.event_id,
            schema: self.schema.as_deref(),
            outcome: self.outcome(),
        }
    }
}

/// The classifier's observer: keeps what it is told until the record joins its batch.
#[derive(Debug, Default)]
struct ObservationBuffer(Mutex<Vec<Observation>>);

impl ObservationBuffer {
    fn take(&self) -> Vec<Observation> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl OutcomeObserver for ObservationBuffer {
    fn observe(&self, record: &ObservedRecord<'_>) {
        let outcome = match record.outcome {
            RecordOutcome::Routed(outcome) => ObservedOutcome::Routed(outcome.clone()),
            RecordOutcome::DeadLettered(kind) => ObservedOutcome::DeadLettered(kind),
        };
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Observation {
                partition: record.lane.clone(),
                offset: *record.position,
                bytes: record.bytes,
                dataset: record.dataset.map(str::to_owned),
                event_id: record.event_id.to_owned(),
                schema: record.schema.map(str::to_owned),
                outcome,
            });
    }
}

/// Records read since the last transaction, with their outputs not yet produced.
#[derive(Debug, Default)]
struct Batch {
    started: Option<Instant>,
    revocations_at_start: u64,
    records: u64,
    bytes: u64,
    positions: Positions,
    outputs: Vec<OutboundRecord>,
    observations: Vec<Observation>,
    /// (source topic, source timestamp) of records with a mesh / quarantine / DLQ output:
    /// their ingest latency is observed at the commit (hard fails have none, as in
    /// effectively_once).
    timed: Vec<(Arc<str>, i64)>,
}

impl Batch {
    fn push(
        &mut self,
        record: Classified<PartitionKey, i64>,
        observations: Vec<Observation>,
        revocations: u64,
    ) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.revocations_at_start = revocations;
        }
        self.records += 1;
        self.bytes += record.bytes;
        self.observations.extend(observations);
        if record.outputs.iter().any(|o| o.kind != OutputKind::DqEvent) {
            self.timed
                .push((record.lane.topic.clone(), record.event_time_ms));
        }
        let (offset, bytes) = (record.position, record.bytes);
        let key = (record.lane.topic.clone(), record.lane.partition);
        let entry = self.positions.entry(key).or_insert((
            Span {
                first: offset,
                last: offset,
            },
            0,
            0,
        ));
        entry.0.first = entry.0.first.min(offset);
        entry.0.last = entry.0.last.max(offset);
        entry.1 += 1;
        entry.2 += bytes;
        // exactly_once writes every companion: a burst is bounded by the transaction size.
        self.outputs.extend(record.into_outputs());
    }

    /// The offsets to commit: one past the last record of each partition.
    fn commit_offsets(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(self.positions.len());
        for ((topic, partition), (span, _, _)) in &self.positions {
            // Only fails for invalid offset values; ours are read offsets + 1.
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(span.last + 1));
        }
        list
    }
}

/// Why a transaction did not commit.
#[derive(Debug)]
enum Failure {
    /// Abort, rewind, retry.
    Abortable(String),
    /// Stop the service.
    Fatal(TransactionError),
}

/// The running exactly_once service.
pub struct TransactionalPipeline {
    config: Arc<Config>,
    /// Told about each record through `recorder`.
    classifier: Classifier<PartitionKey, i64>,
    consumer: StreamConsumer<AssignmentTracker>,
    producer: FutureProducer,
    transactional_id: String,
    /// One lineage run per dataset, started on the first record of that dataset.
    lineage: BTreeMap<Arc<str>, LineageRun>,
    /// START events to produce in the next transaction.
    pending_lineage: Vec<summit_lineage::RunEvent>,
    next_epoch: u64,
    transactions_begun: u64,
    fail_transaction: Option<u64>,
    /// Per dataset: the rules its epochs report assertions for.
    rules: BTreeMap<Arc<str>, RuleAssertions>,
    /// Given to the classifier; drained into the batch after every record.
    recorder: Arc<ObservationBuffer>,
    /// Told about a batch's records after its transaction committed.
    observers: ObserverSet,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for TransactionalPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalPipeline")
            .field("transactional_id", &self.transactional_id)
            .field("next_epoch", &self.next_epoch)
            .finish_non_exhaustive()
    }
}

impl TransactionalPipeline {
    /// Creates the read_committed consumer and the transactional producer, and runs
    /// `init_transactions`, which fences any earlier producer with this id and aborts the
    /// transaction it left open.
    pub fn build(config: Arc<Config>, routes: RouteTable) -> Result<Self, TransactionError> {
        let fail_transaction = if config.delivery.test_fault_injection {
            match std::env::var(FAIL_TXN_AFTER_ENV) {
                Ok(value) => match value.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => return Err(TransactionError::FaultInjection(value)),
                },
                Err(_) => None,
            }
        } else {
            None
        };
        let instance = config.instance_id();
        let mut consumer_config = source_consumer_config(&config);
        // Set after the user's properties: this mode is only exactly-once when the consumer skips
        // aborted data.
        consumer_config.set("isolation.level", "read_committed");
        let consumer: StreamConsumer<AssignmentTracker> = consumer_config
            .create_with_context(AssignmentTracker::default())
            .map_err(|source| TransactionError::Client {
                client: "consumer",
                source,
            })?;

        let transactional_id = config.transactional_id();
        let mut producer_config = ClientConfig::new();
        producer_config
            .set("bootstrap.servers", config.mesh_bootstrap_servers())
            .set("client.id", format!("{instance}-producer"))
            .set("transactional.id", &transactional_id)
            .set(
                "transaction.timeout.ms",
                config.delivery.transaction_timeout.as_millis().to_string(),
            )
            .set("linger.ms", "5");
        for (key, value) in &config.mesh.producer_properties {
            producer_config.set(key, value);
        }
        let producer: FutureProducer =
            producer_config
                .create()
                .map_err(|source| TransactionError::Client {
                    client: "transactional producer",
                    source,
                })?;
        producer
            .init_transactions(TRANSACTION_CALL_TIMEOUT)
            .map_err(|source| TransactionError::Init {
                id: transactional_id.clone(),
                source,
            })?;
        tracing::info!(%transactional_id, "transactions initialised");
        let recorder: Arc<ObservationBuffer> = Arc::default();
        let settings = classify_settings(&config, Some(config.mesh_message_max_bytes()));
        let rules = routes
            .routes()
            .iter()
            .map(|route| (route.dataset.clone(), RuleAssertions::of(route)))
            .collect();
        Ok(Self {
            config,
            classifier: Classifier::new(routes, settings, Some(recorder.clone())),
            consumer,
            producer,
            transactional_id,
            lineage: BTreeMap::new(),
            pending_lineage: Vec::new(),
            next_epoch: 1,
            transactions_begun: 0,
            fail_transaction,
            rules,
            recorder,
            observers: ObserverSet::default(),
            metrics: None,
        })
    }

    /// Commit, in-flight and lag metrics (outcome metrics come with [`OutcomeMetrics`]).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        let _ = self.consumer.context().metrics.set(metrics.clone());
        self.metrics = Some(metrics);
        self
    }

    /// Flipped to connected/assigned by the consumer context.
    pub fn with_readiness(self, readiness: Readiness) -> Self {
        let _ = self.consumer.context().readiness.set(readiness);
        self
    }

    /// Adds an observer, told about every record of a batch once its transaction committed.
    pub fn with_outcome_observer(mut self, observer: Arc<dyn OutcomeObserver>) -> Self {
        self.observers.0.push(observer);
        self
    }

    /// Runs until `shutdown` resolves or the producer is fenced. On shutdown the batch being
    /// read is committed first; on an error nothing further is committed.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Shutdown, TransactionError> {
        let subscription = self.config.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|source| TransactionError::Subscribe {
                topics: subscription.clone(),
                source,
            })?;
        tracing::info!(topics = ?subscription, transactional_id = %self.transactional_id, "subscribed (exactly_once)");
        tokio::pin!(shutdown);
        let result = self.consume(&mut shutdown).await;
        let drained = result.is_ok();
        if drained {
            self.finish_runs().await;
        }
        self.close();
        result.map(|()| Shutdown { drained })
    }

    async fn consume(
        &mut self,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), TransactionError> {
        let max_records = self.config.delivery.transaction_max_records;
        let interval = self.config.delivery.transaction_interval;
        let mut backoff = self.config.delivery.retry_backoff;
        let mut batch = Batch::default();
        loop {
            let flush_at = batch
                .started
                .map(|started| tokio::time::Instant::from_std(started + interval));
            let stop = tokio::select! {
                biased;
                () = shutdown.as_mut() => true,
                () = async {
                    match flush_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => false,
                received = self.consumer.recv() => {
                    match received {
                        Ok(message) => {
                            let record = KafkaRecord {
                                message,
                                cluster: &self.config.kafka.cluster_name,
                            };
                            let classified = self.classifier.classify(&record, shutdown).await?;
                            let observations = self.recorder.take();
                            match classified {
                                Some(record) => {
                                    let revocations = self.consumer.context().count();
                                    batch.push(record, observations, revocations);
                                    self.set_in_flight(batch.records, batch.bytes);
                                }
                                // Shutdown while the registry was down: commit what is read.
                                None => {
                                    self.finish_batch(&mut batch, &mut backoff).await?;
                                    return Ok(());
                                }
                            }
                        }
                        Err(error) => tracing::warn!(%error, "consumer error"),
                    }
                    if batch.records < max_records {
                        continue;
                    }
                    false
                }
            };
            self.finish_batch(&mut batch, &mut backoff).await?;
            if stop {
                return Ok(());
            }
        }
    }

    /// Commits the batch in one transaction, or aborts and rewinds it (it is read again).
    async fn finish_batch(
        &mut self,
        batch: &mut Batch,
        backoff: &mut Duration,
    ) -> Result<(), TransactionError> {
        let batch = std::mem::take(batch);
        if batch.records == 0 {
            return Ok(());
        }
        // Whatever happens below, the batch is no longer open (a rewound one is read again).
        self.set_in_flight(0, 0);
        if batch.revocations_at_start != self.consumer.context().count() {
            tracing::info!(
                records = batch.records,
                "partitions were revoked while the batch was read; reading it again"
            );
            self.rewind(&batch.positions);
            return Ok(());
        }
        let records = batch.records;
        let result = self.transact(&batch).await;
        if let Some(metrics) = &self.metrics {
            metrics.record_commit(WriteResult::from(&result));
        }
        match result {
            Ok(()) => {
                *backoff = self.config.delivery.retry_backoff;
                tracing::debug!(records, "transaction committed");
                self.committed(&batch);
                Ok(())
            }
            Err(Failure::Fatal(error)) => Err(error),
            Err(Failure::Abortable(reason)) => {
                tracing::warn!(%reason, records, "transaction failed; aborting and re-reading the batch");
                if let Err(error) = self.blocking(|p| p.abort_transaction(TRANSACTION_CALL_TIMEOUT))
                {
                    if let Some(fatal) = self.fatal_error(&error) {
                        return Err(fatal);
                    }
                    tracing::warn!(%error, "abort_transaction failed");
                }
                self.rewind(&batch.positions);
                tokio::time::sleep(*backoff).await;
                *backoff = backoff
                    .saturating_mul(2)
                    .min(self.config.delivery.retry_backoff_max);
                Ok(())
            }
        }
    }

    /// The batch's records count from here: observers, and ingest latency (the commit is
    /// exactly_once's acknowledgement).
    fn committed(&self, batch: &Batch) {
        for observation in &batch.observations {
            self.observers.observe(&observation.observed());
        }
        if let Some(metrics) = &self.metrics {
            for (topic, event_time_ms) in &batch.timed {
                metrics.observe_ingest_latency(topic, latency_since(*event_time_ms));
            }
        }
    }

    fn set_in_flight(&self, records: u64, bytes: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.set_inflight(
                i64::try_from(records).unwrap_or(i64::MAX),
                i64::try_from(bytes).unwrap_or(i64::MAX),
            );
        }
    }

    async fn transact(&mut self, batch: &Batch) -> Result<(), Failure> {
        let lineage_events = self.epoch_events(batch);
        let offsets = batch.commit_offsets();
        self.blocking(|p| p.begin_transaction())
            .map_err(|e| self.classify_error("begin_transaction", e))?;
        self.transactions_begun += 1;
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(batch.outputs.len() + 1);
        for record in &batch.outputs {
            let mut future = FutureRecord::to(&record.topic)
                .payload(record.payload.as_slice())
                .headers(summit_kafka::owned_headers(&record.headers));
            if let Some(key) = &record.key {
                future = future.key(key.as_slice());
            }
            deliveries.push(self.enqueue(future).await?);
        }
        let lineage_payloads: Vec<(String, Vec<u8>)> = lineage_events
            .iter()
            .filter_map(|event| match serde_json::to_vec(event) {
                Ok(json) => Some((event.key(), json)),
                Err(error) => {
                    tracing::error!(%error, "lineage event not serializable; left out");
                    None
                }
            })
            .collect();
        for (key, json) in &lineage_payloads {
            let future = FutureRecord::to(topics::LINEAGE_EVENTS)
                .key(key.as_bytes())
                .payload(json.as_slice());
            deliveries.push(self.enqueue(future).await?);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(self.classify_error("produce", error)),
                Err(_) => return Err(Failure::Abortable("delivery report lost".to_owned())),
            }
        }
        let Some(group) = self.consumer.group_metadata() else {
            return Err(Failure::Abortable(
                "no consumer group metadata (not in the group)".to_owned(),
            ));
        };
        self.blocking(|p| {
            p.send_offsets_to_transaction(&offsets, &group, TRANSACTION_CALL_TIMEOUT)
        })
        .map_err(|e| self.classify_error("send_offsets_to_transaction", e))?;
        if self.fail_transaction == Some(self.transactions_begun) {
            self.fail_transaction = None;
            return Err(Failure::Abortable(format!(
                "{FAIL_TXN_AFTER_ENV}: transaction {} aborted on purpose",
                self.transactions_begun
            )));
        }
        self.blocking(|p| p.commit_transaction(TRANSACTION_CALL_TIMEOUT))
            .map_err(|e| self.classify_error("commit_transaction", e))?;
        self.pending_lineage.clear();
        self.next_epoch += 1;
        Ok(())
    }

    /// After a clean stop: the instance runs' COMPLETE events, in a transaction of their own
    /// (a transactional producer writes nothing outside one). Best effort: a failure is logged,
    /// the runs then stay open in lineage like those of a crashed instance.
    async fn finish_runs(&mut self) {
        let events: Vec<(String, Vec<u8>)> = self
            .lineage
            .values()
            .map(|run| run.finish(RunEnd::Complete))
            .filter_map(|event| Some((event.key(), serde_json::to_vec(&event).ok()?)))
            .collect();
        if events.is_empty() {
            return;
        }
        let result: Result<(), Failure> = async {
            self.blocking(|p| p.begin_transaction())
                .map_err(|e| self.classify_error("begin_transaction", e))?;
            let mut deliveries = Vec::with_capacity(events.len());
            for (key, json) in &events {
                let record = FutureRecord::to(topics::LINEAGE_EVENTS)
                    .key(key.as_bytes())
                    .payload(json.as_slice());
                deliveries.push(self.enqueue(record).await?);
            }
            for delivery in deliveries {
                if let Ok(Err((error, _))) = delivery.await {
                    return Err(self.classify_error("produce", error));
                }
            }
            self.blocking(|p| p.commit_transaction(TRANSACTION_CALL_TIMEOUT))
                .map_err(|e| self.classify_error("commit_transaction", e))
        }
        .await;
        if let Err(failure) = result {
            tracing::warn!(
                ?failure,
                "lineage COMPLETE of the instance runs not written"
            );
            let _ = self.blocking(|p| p.abort_transaction(TRANSACTION_CALL_TIMEOUT));
        }
    }

    /// Enqueues one record, waiting while librdkafka's queue is full.
    async fn enqueue<'a>(
        &self,
        mut record: FutureRecord<'a, [u8], [u8]>,
    ) -> Result<DeliveryFuture, Failure> {
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(self.classify_error("produce", error)),
            }
        }
    }

    /// The START events of new runs plus one epoch COMPLETE per dataset in the batch, with the
    /// rule assertions and schema of its records, like effectively_once's epochs.
    fn epoch_events(&mut self, batch: &Batch) -> Vec<summit_lineage::RunEvent> {
        let source_cluster = self.config.kafka.bootstrap_servers.clone();
        let mesh_cluster = self.config.mesh_bootstrap_servers().to_owned();
        let mut by_dataset: BTreeMap<Arc<str>, DatasetEpoch> = BTreeMap::new();
        for ((topic, partition), (span, records, bytes)) in &batch.positions {
            let Some((_, route)) = self.classifier.routes().resolve(topic) else {
                continue;
            };
            let epoch = by_dataset
                .entry(route.dataset.clone())
                .or_insert_with(|| DatasetEpoch {
                    inputs: BTreeMap::new(),
                    ruleset: route.ruleset.clone(),
                    evaluated: 0,
                    failures: Vec::new(),
                    schema: None,
                });
            let input = epoch
                .inputs
                .entry(topic.clone())
                .or_insert_with(|| EpochInput {
                    dataset: DatasetName::kafka(&source_cluster, topic),
                    offset_ranges: Vec::new(),
                    row_count: Some(0),
                    bytes: Some(0),
                });
            input
                .offset_ranges
                .push(OffsetRange::kafka(*partition, span.first, span.last));
            input.row_count = input.row_count.map(|n| n + records);
            input.bytes = input.bytes.map(|n| n + bytes);
        }
        for observation in &batch.observations {
            let Some(dataset) = observation.dataset.as_deref() else {
                continue;
            };
            let (Some(epoch), Some(rules)) = (by_dataset.get_mut(dataset), self.rules.get(dataset))
            else {
                continue;
            };
            if let Some(failed) = rules.failed(&observation.outcome()) {
                epoch.evaluated += 1;
                epoch.failures.resize(rules.len(), 0);
                for index in failed {
                    epoch.failures[index] += 1;
                }
            }
            if observation.schema.is_some() {
                epoch.schema.clone_from(&observation.schema);
            }
        }
        let mut events = std::mem::take(&mut self.pending_lineage);
        for (dataset, epoch) in by_dataset {
            let assertions = self
                .rules
                .get(&dataset)
                .map(|rules| rules.assertions(epoch.evaluated, &epoch.failures))
                .unwrap_or_default();
            let outputs = epoch_outputs(
                &mesh_cluster,
                &dataset,
                epoch.inputs.keys().map(|topic| &**topic),
                assertions,
            );
            let run = self.lineage.entry(dataset.clone()).or_insert_with(|| {
                let instance = self.config.instance_id();
                let (run, start) = LineageRun::start(SERVICE_NAME, &dataset, &instance);
                events.push(start);
                run
            });
            events.push(run.epoch_complete(EpochReport {
                epoch_id: self.next_epoch,
                inputs: epoch.inputs.into_values().collect(),
                outputs,
                schema:
                    epoch.schema.map(|id| {
                        schema_used(self.classifier.routes().decoder().map(Arc::as_ref), id)
                    }),
                ruleset: Some(epoch.ruleset),
            }));
        }
        // Kept until a commit: an aborted transaction's START events are sent again.
        self.pending_lineage = events
            .iter()
            .filter(|e| e.run.facets.parent.is_none())
            .cloned()
            .collect();
        events
    }

    /// Seeks every still-assigned partition of the batch back to its first offset.
    fn rewind(&self, positions: &Positions) {
        let assigned = self.consumer.assignment().ok();
        for ((topic, partition), (span, _, _)) in positions {
            let owned = assigned
                .as_ref()
                .is_some_and(|list| list.find_partition(topic, *partition).is_some());
            if !owned {
                continue;
            }
            if let Err(error) = self.consumer.seek(
                topic,
                *partition,
                Offset::Offset(span.first),
                Duration::from_secs(10),
            ) {
                // The records stay unread until the committed offset is fetched again (on the
                // next assignment); exiting here would not help more.
                tracing::error!(%error, %topic, partition, offset = span.first, "rewind failed");
            }
        }
    }

    fn blocking<T>(&self, call: impl FnOnce(&FutureProducer) -> T) -> T {
        // librdkafka's transactional calls block up to their timeout: keep the runtime's other
        // tasks (signal handling) running.
        tokio::task::block_in_place(|| call(&self.producer))
    }

    fn classify_error(&self, step: &str, error: KafkaError) -> Failure {
        match self.fatal_error(&error) {
            Some(fatal) => Failure::Fatal(fatal),
            None => Failure::Abortable(format!("{step}: {error}")),
        }
    }

    /// `Some` when the producer can no longer be used: fenced, or another fatal error.
    fn fatal_error(&self, error: &KafkaError) -> Option<TransactionError> {
        let fatal = self.producer.client().fatal_error();
        let transaction_fatal = match error {
            KafkaError::Transaction(e) => e.is_fatal(),
            _ => false,
        };
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
            TransactionError::Fenced(format!(
                "another process took transactional id `{}` (same service.instance_id?); \
                 this instance stops ({detail})",
                self.transactional_id
            ))
        } else {
            TransactionError::Fatal(detail)
        })
    }

    /// Leaves the group and closes the consumer within a bound (rust-rdkafka #509: dropping a
    /// StreamConsumer after a transactional flow can hang).
    fn close(self) {
        let Self {
            consumer, producer, ..
        } = self;
        consumer.unsubscribe();
        let (done, waited) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("consumer-close".to_owned())
            .spawn(move || {
                drop(consumer);
                drop(producer);
                let _ = done.send(());
            });
        if spawned.is_ok() && waited.recv_timeout(Duration::from_secs(5)).is_err() {
            tracing::warn!("Kafka clients did not close within 5 s; exiting anyway");
        }
    }
}

fn is_fencing(code: Option<RDKafkaErrorCode>) -> bool {
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
    use summit_mesh::PartitionKey;

    fn record(topic: &str, partition: i32, offset: i64) -> Classified<PartitionKey, i64> {
        Classified {
            lane: PartitionKey::new(topic, partition),
            position: offset,
            bytes: 10,
            event_time_ms: 0,
            outputs: Vec::new(),
            dead_letter: None,
        }
    }

    #[test]
    fn batch_commits_one_past_the_last_offset_and_rewinds_to_the_first() {
        let mut batch = Batch::default();
        for offset in [7, 8, 9] {
            batch.push(record("a", 0, offset), Vec::new(), 3);
        }
        batch.push(record("a", 1, 42), Vec::new(), 4);
        assert_eq!(batch.records, 4);
        assert_eq!(batch.revocations_at_start, 3, "taken at the first record");
        let offsets = batch.commit_offsets();
        let a0 = offsets.find_partition("a", 0).expect("a/0");
        assert_eq!(a0.offset(), Offset::Offset(10));
        let a1 = offsets.find_partition("a", 1).expect("a/1");
        assert_eq!(a1.offset(), Offset::Offset(43));
        let (span, records, bytes) = batch.positions[&(Arc::from("a"), 0)];
        assert_eq!((span.first, span.last, records, bytes), (7, 9, 3, 30));
    }

    #[test]
    fn config_accepts_exactly_once_on_one_cluster_only() {
        let yaml = |extra: &str| {
            format!(
                "kafka: {{ bootstrap_servers: \"a:9092\", group_id: g, cluster_name: c }}\n\
                 service: {{ instance_id: pod-0 }}\n\
                 delivery: {{ mode: exactly_once, transactional_id_prefix: fleet }}\n\
                 routes: [ {{ topics: [t], dataset: d, rules: r.yaml }} ]\n{extra}"
            )
        };
        let parse = |text: &str| {
            Config::from_yaml(
                text,
                std::path::Path::new("test.yaml"),
                std::path::PathBuf::from("."),
                Vec::<(String, String)>::new(),
            )
        };
        let config = parse(&yaml("")).expect("exactly_once accepted");
        assert_eq!(config.transactional_id(), "fleet-pod-0");
        let error =
            parse(&yaml("mesh: { bootstrap_servers: \"b:9092\" }\n")).expect_err("two clusters");
        assert!(
            error.to_string().contains("mesh.bootstrap_servers"),
            "{error}"
        );
    }

    #[test]
    fn fencing_codes_are_recognised() {
        assert!(is_fencing(Some(RDKafkaErrorCode::ProducerFenced)));
        assert!(is_fencing(Some(RDKafkaErrorCode::Fenced)));
        assert!(!is_fencing(Some(RDKafkaErrorCode::RequestTimedOut)));
        assert!(!is_fencing(None));
    }
}
