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
//!   [`FatalTransaction::Fenced`](summit_kafka::FatalTransaction): another process owns the id, and retrying would fence it back.
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

mod batch;
mod epochs;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use summit_ingest::{
    Classifier, ClassifyError, ObserverSet, OutcomeMetrics, OutcomeObserver, RouteTable,
    TicketFeed, latency_since,
};
use summit_kafka::{
    FatalTransaction, TransactionFailure, TransactionRecord, TransactionSetupError,
    TransactionalProducer, TransactionalSettings,
};
use summit_lineage::{LineageRun, RunEnd};
use summit_mesh::PartitionKey;
use summit_telemetry::{Metrics, Readiness, WriteResult};

use self::batch::{Batch, ObservationBuffer, Positions};
use self::epochs::{lineage_payloads, lineage_records};
use crate::assignment::{AssignmentState, keys_of};
use crate::config::Config;
use crate::lineage::epoch_context;
use crate::pipeline::{Shutdown, classify_settings};
use crate::service::{ServiceError, start_operations};
use crate::source::{KafkaRecord, source_consumer_config};
use summit_ingest::epochs::{EpochContext, RuleAssertions};

/// Variable read (only with `delivery.test_fault_injection`) to abort the n-th transaction.
pub const FAIL_TXN_AFTER_ENV: &str = "SUMMIT_TEST_FAIL_TXN_AFTER";

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
    #[error(transparent)]
    Setup(#[from] TransactionSetupError),
    /// Fenced by another producer with the same transactional id (a newer process with this
    /// `service.instance_id`), or another fatal producer error.
    #[error(transparent)]
    Producer(#[from] FatalTransaction),
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
    let mut operations = start_operations(&config, &routes).await?;
    let mut observers: Vec<Arc<dyn OutcomeObserver>> =
        vec![Arc::new(OutcomeMetrics::new(operations.metrics.clone()))];
    if let Some(ticketing) = operations.ticketing.take() {
        observers.push(Arc::new(TicketFeed::new(ticketing)));
    }
    if let Some(counts) = &operations.rule_counts {
        observers.push(counts.clone());
    }
    let wiring = TransactionalWiring {
        metrics: operations.metrics.clone(),
        readiness: operations.readiness.clone(),
        observers,
    };
    let pipeline = TransactionalPipeline::build(config, routes, wiring)?;
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

/// Consumer context: counts revocations so a batch that spans one is discarded, and keeps the
/// assignment state (readiness, lag) like effectively_once's context.
#[derive(Debug, Default)]
pub struct AssignmentTracker {
    revocations: AtomicU64,
    assignment: AssignmentState,
}

impl AssignmentTracker {
    fn count(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }
}

impl ClientContext for AssignmentTracker {
    fn stats(&self, statistics: Statistics) {
        self.assignment.report(&statistics);
    }
}

impl ConsumerContext for AssignmentTracker {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.assignment.assigned(&keys_of(list)),
            Rebalance::Revoke(list) => {
                // Nothing to drain: no transaction is open while recv() runs this callback.
                let keys = keys_of(list);
                tracing::info!(partitions = ?keys, "revoked");
                self.revocations.fetch_add(1, Ordering::AcqRel);
                self.assignment.revoked(&keys);
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

/// What the exactly_once service plugs in, known before the pipeline is built.
#[derive(Debug)]
pub struct TransactionalWiring {
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Told about a batch's records after its transaction committed, in this order.
    pub observers: Vec<Arc<dyn OutcomeObserver>>,
}

/// The running exactly_once service.
pub struct TransactionalPipeline {
    config: Arc<Config>,
    /// Told about each record through `recorder`.
    classifier: Classifier<PartitionKey, i64>,
    consumer: StreamConsumer<AssignmentTracker>,
    producer: TransactionalProducer,
    /// One lineage run per dataset, started on the first record of that dataset.
    lineage: BTreeMap<Arc<str>, LineageRun>,
    /// START events to produce in the next transaction.
    pending_lineage: Vec<summit_lineage::RunEvent>,
    next_epoch: u64,
    transactions_begun: u64,
    fail_transaction: Option<u64>,
    /// Per dataset: the rules its epochs report assertions for, and its rule set.
    rules: BTreeMap<Arc<str>, RuleAssertions>,
    rulesets: BTreeMap<Arc<str>, String>,
    /// Naming and schema lookup of the epochs.
    epochs: EpochContext,
    /// Given to the classifier; drained into the batch after every record.
    recorder: Arc<ObservationBuffer>,
    /// Told about a batch's records after its transaction committed.
    observers: ObserverSet,
    metrics: Metrics,
}

impl std::fmt::Debug for TransactionalPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalPipeline")
            .field("producer", &self.producer)
            .field("next_epoch", &self.next_epoch)
            .finish_non_exhaustive()
    }
}

impl TransactionalPipeline {
    /// Creates the read_committed consumer and the transactional producer, and runs
    /// `init_transactions`, which fences any earlier producer with this id and aborts the
    /// transaction it left open.
    pub fn build(
        config: Arc<Config>,
        routes: RouteTable,
        wiring: TransactionalWiring,
    ) -> Result<Self, TransactionError> {
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
        let mut consumer_config = source_consumer_config(&config);
        // Set after the user's properties: this mode is only exactly-once when the consumer skips
        // aborted data.
        consumer_config.set("isolation.level", "read_committed");
        let consumer: StreamConsumer<AssignmentTracker> = consumer_config
            .create_with_context(AssignmentTracker {
                revocations: AtomicU64::new(0),
                assignment: AssignmentState::new(
                    Some(wiring.metrics.clone()),
                    Some(wiring.readiness),
                ),
            })
            .map_err(|source| TransactionError::Client {
                client: "consumer",
                source,
            })?;

        let mesh = config.mesh_producer_settings("producer");
        let producer = TransactionalProducer::new(&TransactionalSettings {
            bootstrap_servers: mesh.bootstrap_servers,
            client_id: mesh.client_id,
            transactional_id: config.transactional_id(),
            transaction_timeout: config.delivery.transaction_timeout,
            properties: mesh.properties,
        })?;
        tracing::info!(transactional_id = %producer.transactional_id(), "transactions initialised");
        let recorder: Arc<ObservationBuffer> = Arc::default();
        let settings = classify_settings(&config, Some(config.mesh_message_max_bytes()));
        let rules = routes
            .routes()
            .iter()
            .map(|route| (route.dataset.clone(), RuleAssertions::of(route)))
            .collect();
        let rulesets = routes
            .routes()
            .iter()
            .map(|route| (route.dataset.clone(), route.ruleset.clone()))
            .collect();
        let epochs = epoch_context(&config, &routes);
        Ok(Self {
            config,
            classifier: Classifier::new(routes, settings, Some(recorder.clone())),
            consumer,
            producer,
            lineage: BTreeMap::new(),
            pending_lineage: Vec::new(),
            next_epoch: 1,
            transactions_begun: 0,
            fail_transaction,
            rules,
            rulesets,
            epochs,
            recorder,
            observers: ObserverSet(wiring.observers),
            metrics: wiring.metrics,
        })
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
        tracing::info!(topics = ?subscription, transactional_id = %self.producer.transactional_id(), "subscribed (exactly_once)");
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
        self.metrics.record_commit(WriteResult::from(&result));
        match result {
            Ok(()) => {
                *backoff = self.config.delivery.retry_backoff;
                tracing::debug!(records, "transaction committed");
                self.committed(&batch);
                Ok(())
            }
            Err(TransactionFailure::Fatal(error)) => Err(error.into()),
            Err(TransactionFailure::Abortable(reason)) => {
                tracing::warn!(%reason, records, "transaction failed; aborting and re-reading the batch");
                match self.producer.abort() {
                    Ok(()) => {}
                    Err(TransactionFailure::Fatal(error)) => return Err(error.into()),
                    Err(error) => tracing::warn!(%error, "abort_transaction failed"),
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
        for (topic, event_time_ms) in &batch.timed {
            self.metrics
                .observe_ingest_latency(topic, latency_since(*event_time_ms));
        }
    }

    fn set_in_flight(&self, records: u64, bytes: u64) {
        self.metrics.set_inflight(
            i64::try_from(records).unwrap_or(i64::MAX),
            i64::try_from(bytes).unwrap_or(i64::MAX),
        );
    }

    async fn transact(&mut self, batch: &Batch) -> Result<(), TransactionFailure> {
        let lineage = lineage_payloads(&self.epoch_events(batch));
        let offsets = batch.commit_offsets();
        self.producer.begin()?;
        self.transactions_begun += 1;
        let outputs = batch.outputs.iter().map(|record| TransactionRecord {
            topic: &record.topic,
            key: record.key.as_deref(),
            payload: &record.payload,
            headers: Some(&record.headers),
        });
        self.producer
            .send_all(outputs.chain(lineage_records(&lineage)))
            .await?;
        let Some(group) = self.consumer.group_metadata() else {
            return Err(TransactionFailure::Abortable(
                "no consumer group metadata (not in the group)".to_owned(),
            ));
        };
        self.producer.send_offsets(&offsets, &group)?;
        if self.fail_transaction == Some(self.transactions_begun) {
            self.fail_transaction = None;
            return Err(TransactionFailure::Abortable(format!(
                "{FAIL_TXN_AFTER_ENV}: transaction {} aborted on purpose",
                self.transactions_begun
            )));
        }
        self.producer.commit()?;
        self.pending_lineage.clear();
        self.next_epoch += 1;
        Ok(())
    }

    /// After a clean stop: the instance runs' COMPLETE events, in a transaction of their own
    /// (a transactional producer writes nothing outside one). Best effort: a failure is logged,
    /// the runs then stay open in lineage like those of a crashed instance.
    async fn finish_runs(&mut self) {
        let events: Vec<_> = self
            .lineage
            .values()
            .map(|run| run.finish(RunEnd::Complete))
            .collect();
        if events.is_empty() {
            return;
        }
        let payloads = lineage_payloads(&events);
        let result = async {
            self.producer.begin()?;
            self.producer.send_all(lineage_records(&payloads)).await?;
            self.producer.commit()
        }
        .await;
        if let Err(failure) = result {
            tracing::warn!(%failure, "lineage COMPLETE of the instance runs not written");
            let _ = self.producer.abort();
        }
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
                drop(producer.into_inner());
                let _ = done.send(());
            });
        if spawned.is_ok() && waited.recv_timeout(Duration::from_secs(5)).is_err() {
            tracing::warn!("Kafka clients did not close within 5 s; exiting anyway");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
