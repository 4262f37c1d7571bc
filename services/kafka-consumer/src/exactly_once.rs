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
//! Test-only fault injection: with `delivery.test_fault_injection: true`, the variable
//! `SUMMIT_TEST_FAIL_TXN_AFTER=<n>` makes the n-th transaction (counting from 1) abort instead
//! of committing, once. Without the flag the variable is ignored.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use summit_envelope::topics;
use summit_lineage::{
    DatasetName, EpochInput, EpochOutput, EpochReport, LineageRun, OffsetRange, RunEnd,
};
use summit_mesh::OutboundRecord;

use crate::config::Config;
use crate::pipeline::{ClassifiedRecord, PipelineError, RecordClassifier, Shutdown};
use crate::routing::RouteTable;

/// Variable read (only with `delivery.test_fault_injection`) to abort the n-th transaction.
pub const FAIL_TXN_AFTER_ENV: &str = "SUMMIT_TEST_FAIL_TXN_AFTER";

/// Name of the service in lineage job names.
const SERVICE: &str = "kafka-consumer";

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
    Pipeline(#[from] PipelineError),
}

/// Consumer context: counts revocations so a batch that spans one is discarded, and logs.
#[derive(Debug, Default)]
pub struct RevocationCounter {
    revocations: AtomicU64,
}

impl RevocationCounter {
    fn count(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }
}

impl ClientContext for RevocationCounter {}

impl ConsumerContext for RevocationCounter {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(partitions = ?names(list), "assigned"),
            Rebalance::Revoke(list) => {
                // Nothing to drain: no transaction is open while recv() runs this callback.
                tracing::info!(partitions = ?names(list), "revoked");
                self.revocations.fetch_add(1, Ordering::AcqRel);
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

/// One dataset's share of a batch: its inputs by source topic, and its rule set.
type DatasetEpoch = (BTreeMap<Arc<str>, EpochInput>, String);

/// Records read since the last transaction, with their outputs not yet produced.
#[derive(Debug, Default)]
struct Batch {
    started: Option<Instant>,
    revocations_at_start: u64,
    records: u64,
    positions: Positions,
    outputs: Vec<OutboundRecord>,
}

impl Batch {
    fn push(&mut self, record: ClassifiedRecord, revocations: u64) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.revocations_at_start = revocations;
        }
        self.records += 1;
        let key = (record.partition_key.topic, record.partition_key.partition);
        let entry = self.positions.entry(key).or_insert((
            Span {
                first: record.offset,
                last: record.offset,
            },
            0,
            0,
        ));
        entry.0.first = entry.0.first.min(record.offset);
        entry.0.last = entry.0.last.max(record.offset);
        entry.1 += 1;
        entry.2 += record.bytes;
        self.outputs.extend(record.outputs);
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
    routes: RouteTable,
    consumer: StreamConsumer<RevocationCounter>,
    producer: FutureProducer,
    transactional_id: String,
    /// One lineage run per dataset, started on the first record of that dataset.
    lineage: BTreeMap<Arc<str>, LineageRun>,
    /// START events to produce in the next transaction.
    pending_lineage: Vec<summit_lineage::RunEvent>,
    next_epoch: u64,
    transactions_begun: u64,
    fail_transaction: Option<u64>,
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
        let mut consumer_config = ClientConfig::new();
        consumer_config
            .set("bootstrap.servers", &config.kafka.bootstrap_servers)
            .set("group.id", &config.kafka.group_id)
            .set("client.id", &instance)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("isolation.level", "read_committed")
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
            );
        for (key, value) in &config.kafka.consumer_properties {
            consumer_config.set(key, value);
        }
        let consumer: StreamConsumer<RevocationCounter> = consumer_config
            .create_with_context(RevocationCounter::default())
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
        Ok(Self {
            config,
            routes,
            consumer,
            producer,
            transactional_id,
            lineage: BTreeMap::new(),
            pending_lineage: Vec::new(),
            next_epoch: 1,
            transactions_begun: 0,
            fail_transaction,
        })
    }

    /// Runs until `shutdown` resolves or the producer is fenced. On shutdown the batch being
    /// read is committed first; on an error nothing further is committed.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Shutdown, TransactionError> {
        let subscription = RouteTable::subscription(&self.config);
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
                            let classifier = RecordClassifier {
                                config: &self.config,
                                routes: &self.routes,
                                outcomes: None,
                            };
                            match classifier.classify(&message, shutdown).await? {
                                Some(record) => {
                                    let revocations = self.consumer.context().count();
                                    batch.push(record, revocations);
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
        if batch.revocations_at_start != self.consumer.context().count() {
            tracing::info!(
                records = batch.records,
                "partitions were revoked while the batch was read; reading it again"
            );
            self.rewind(&batch.positions);
            return Ok(());
        }
        let records = batch.records;
        let positions = batch.positions.clone();
        match self.transact(batch).await {
            Ok(()) => {
                *backoff = self.config.delivery.retry_backoff;
                tracing::debug!(records, "transaction committed");
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
                self.rewind(&positions);
                tokio::time::sleep(*backoff).await;
                *backoff = backoff
                    .saturating_mul(2)
                    .min(self.config.delivery.retry_backoff_max);
                Ok(())
            }
        }
    }

    async fn transact(&mut self, batch: Batch) -> Result<(), Failure> {
        let lineage_events = self.epoch_events(&batch);
        let offsets = batch.commit_offsets();
        self.blocking(|p| p.begin_transaction())
            .map_err(|e| self.classify_error("begin_transaction", e))?;
        self.transactions_begun += 1;
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(batch.outputs.len() + 1);
        for record in &batch.outputs {
            let mut future = FutureRecord::to(&record.topic)
                .payload(record.payload.as_slice())
                .headers(record.headers.clone());
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

    /// The START events of new runs plus one epoch COMPLETE per dataset in the batch.
    fn epoch_events(&mut self, batch: &Batch) -> Vec<summit_lineage::RunEvent> {
        let source_cluster = self.config.kafka.bootstrap_servers.clone();
        let mesh_cluster = self.config.mesh_bootstrap_servers().to_owned();
        let mut by_dataset: BTreeMap<Arc<str>, DatasetEpoch> = BTreeMap::new();
        for ((topic, partition), (span, records, bytes)) in &batch.positions {
            let Some((_, route)) = self.routes.resolve(topic) else {
                continue;
            };
            let (inputs, _) = by_dataset
                .entry(route.dataset.clone())
                .or_insert_with(|| (BTreeMap::new(), route.ruleset.clone()));
            let input = inputs.entry(topic.clone()).or_insert_with(|| EpochInput {
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
        let mut events = std::mem::take(&mut self.pending_lineage);
        for (dataset, (inputs, ruleset)) in by_dataset {
            let outputs = [
                topics::mesh(&dataset),
                topics::quarantine(&dataset),
                topics::DQ_EVENTS.to_owned(),
            ]
            .into_iter()
            .filter(|topic| batch.outputs.iter().any(|o| &o.topic == topic))
            .map(|topic| EpochOutput {
                dataset: DatasetName::kafka(&mesh_cluster, &topic),
                assertions: Vec::new(),
            })
            .collect();
            let run = self.lineage.entry(dataset.clone()).or_insert_with(|| {
                let instance = self.config.instance_id();
                let (run, start) = LineageRun::start(SERVICE, &dataset, &instance);
                events.push(start);
                run
            });
            events.push(run.epoch_complete(EpochReport {
                epoch_id: self.next_epoch,
                inputs: inputs.into_values().collect(),
                outputs,
                schema: None,
                ruleset: Some(ruleset),
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

    fn record(topic: &str, partition: i32, offset: i64) -> ClassifiedRecord {
        ClassifiedRecord {
            partition_key: PartitionKey::new(topic, partition),
            offset,
            bytes: 10,
            event_time_ms: 0,
            outputs: Vec::new(),
        }
    }

    #[test]
    fn batch_commits_one_past_the_last_offset_and_rewinds_to_the_first() {
        let mut batch = Batch::default();
        for offset in [7, 8, 9] {
            batch.push(record("a", 0, offset), 3);
        }
        batch.push(record("a", 1, 42), 4);
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
