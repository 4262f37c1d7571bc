//! Rebalance handling: before revoked partitions are released, wait for their in-flight
//! outputs, pass the commit gate (lineage) and commit what they reached (cooperative-sticky, so
//! only revoked partitions stop). Also keeps readiness and per-partition lag metrics in step
//! with the assignment.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use summit_mesh::{Finalizer, PartitionKey};
use summit_telemetry::{Metrics, Readiness, WriteResult};

use crate::pipeline::CommitGate;

/// The consumer context. Its callbacks run inside `recv()` on the consuming task, so the
/// drain wait relies on acknowledgements reaching the [`Finalizer`] from the producer's thread.
#[derive(Debug)]
pub struct RebalanceHandler {
    finalizer: Arc<Finalizer>,
    drain_timeout: Duration,
    generation: AtomicU64,
    /// Partitions this instance owns now (lag is reported for these only).
    owned: Mutex<BTreeSet<PartitionKey>>,
    commit_gate: OnceLock<Arc<dyn CommitGate>>,
    metrics: OnceLock<Metrics>,
    readiness: OnceLock<Readiness>,
}

impl RebalanceHandler {
    pub fn new(finalizer: Arc<Finalizer>, drain_timeout: Duration) -> Self {
        Self {
            finalizer,
            drain_timeout,
            generation: AtomicU64::new(0),
            owned: Mutex::default(),
            commit_gate: OnceLock::new(),
            metrics: OnceLock::new(),
            readiness: OnceLock::new(),
        }
    }

    /// Set once, before the consumer subscribes.
    pub fn set_commit_gate(&self, gate: Arc<dyn CommitGate>) {
        let _ = self.commit_gate.set(gate);
    }

    pub fn set_metrics(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    pub fn set_readiness(&self, readiness: Readiness) {
        let _ = self.readiness.set(readiness);
    }

    fn owned(&self) -> MutexGuard<'_, BTreeSet<PartitionKey>> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the commit gate for the revoked partitions' offsets, blocking this (librdkafka
    /// callback) thread for at most the drain timeout. `false`: do not commit.
    fn pass_gate(&self, offsets: &[(PartitionKey, i64)]) -> bool {
        let Some(gate) = self.commit_gate.get() else {
            return true;
        };
        // The callback runs on a tokio worker (inside `recv()`), or on the thread dropping the
        // consumer; block_in_place needs the multi-threaded runtime. Anything else: skip the
        // commit, which is safe (the next owner re-reads).
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                handle
            }
            _ => {
                tracing::warn!("no multi-threaded runtime in the revoke callback; not committing");
                return false;
            }
        };
        let timeout = self.drain_timeout;
        let outcome = tokio::task::block_in_place(|| {
            handle.block_on(tokio::time::timeout(timeout, gate.before_commit(offsets)))
        });
        match outcome {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "revoked partitions' commit held back by the commit gate");
                false
            }
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "commit gate did not answer in time for the revoke"
                );
                false
            }
        }
    }

    /// Bumped after every rebalance: a paused consumer must pause newly assigned partitions.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

pub(crate) fn keys_of(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|element| PartitionKey::new(element.topic(), element.partition()))
        .collect()
}

/// The commits of `finished` positions: the finalizer hands out the last offset whose outputs
/// are all acknowledged (DESIGN §8, inclusive); Kafka commits the next offset to read.
pub(crate) fn commit_offsets(finished: Vec<(PartitionKey, i64)>) -> Vec<(PartitionKey, i64)> {
    finished
        .into_iter()
        .map(|(key, last)| (key, last + 1))
        .collect()
}

/// A commit of `next_offset` failed: offer its finished position again.
pub(crate) fn offer_again(finalizer: &Finalizer, key: &PartitionKey, next_offset: i64) {
    finalizer.commit_failed(key, &(next_offset - 1));
}

pub(crate) fn offsets_list(offsets: &[(PartitionKey, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (key, offset) in offsets {
        // Only fails for an invalid offset value; ours are next-to-read offsets (>= 0).
        let _ = list.add_partition_offset(&key.topic, key.partition, Offset::Offset(*offset));
    }
    list
}

impl ClientContext for RebalanceHandler {
    /// Lag of the partitions we own: high watermark − position (the next offset to hand to
    /// the application; before the first record, the committed offset, else the low mark).
    fn stats(&self, statistics: Statistics) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        // Held while setting, so a revoke cannot remove a series that is then set again.
        let owned = self.owned();
        report_statistics(&statistics, &owned, metrics, self.readiness.get());
    }
}

/// Readiness `connected` (a broker is up) and `summit_consumer_lag` of the `owned` partitions
/// from one librdkafka statistics report; shared by both delivery modes' consumer contexts.
pub(crate) fn report_statistics(
    statistics: &Statistics,
    owned: &BTreeSet<PartitionKey>,
    metrics: &Metrics,
    readiness: Option<&Readiness>,
) {
    if let Some(readiness) = readiness
        && statistics
            .brokers
            .values()
            .any(|broker| broker.state == "UP")
    {
        readiness.set_connected(true);
    }
    for key in owned {
        let Some(partition) = statistics
            .topics
            .get(&*key.topic)
            .and_then(|topic| topic.partitions.get(&key.partition))
        else {
            continue;
        };
        let position = [
            partition.app_offset,
            partition.committed_offset,
            partition.lo_offset,
        ]
        .into_iter()
        .find(|offset| *offset >= 0);
        if let Some(position) = position
            && partition.hi_offset >= 0
        {
            metrics.set_consumer_lag(
                &key.topic,
                &key.partition.to_string(),
                (partition.hi_offset - position).max(0),
            );
        }
    }
}

impl ConsumerContext for RebalanceHandler {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let keys = keys_of(list);
                tracing::info!(partitions = ?keys, "assigned");
                let mut owned = self.owned();
                for key in keys {
                    self.finalizer.assign(key.clone());
                    owned.insert(key);
                }
                if let Some(readiness) = self.readiness.get() {
                    // A group assignment needs the coordinator: we are connected.
                    readiness.set_connected(true);
                    readiness.set_assigned(!owned.is_empty());
                }
            }
            Rebalance::Revoke(list) => {
                let keys = keys_of(list);
                let drained = self.finalizer.wait_drained(&keys, self.drain_timeout);
                let offsets = commit_offsets(self.finalizer.take_committable_for(&keys));
                if !offsets.is_empty() {
                    if !self.pass_gate(&offsets) {
                        tracing::warn!(partitions = ?keys, "revoked partitions released uncommitted; the next owner re-reads them");
                    } else {
                        let result = consumer.commit(&offsets_list(&offsets), CommitMode::Sync);
                        if let Some(metrics) = self.metrics.get() {
                            metrics.record_commit(WriteResult::from(&result));
                        }
                        if let Err(error) = result {
                            tracing::warn!(%error, "commit of revoked partitions failed; the next owner re-reads them");
                        }
                    }
                }
                if !drained {
                    tracing::warn!(
                        partitions = ?keys,
                        timeout = ?self.drain_timeout,
                        "revoked partitions still had unacknowledged outputs; released uncommitted"
                    );
                }
                tracing::info!(partitions = ?keys, committed = ?offsets, "revoked");
                for key in &keys {
                    self.finalizer.revoke(key);
                }
                if let Some(gate) = self.commit_gate.get() {
                    gate.released(&keys);
                }
                let mut owned = self.owned();
                for key in &keys {
                    owned.remove(key);
                    if let Some(metrics) = self.metrics.get() {
                        metrics.remove_partition(&key.topic, &key.partition.to_string());
                    }
                }
                if let Some(readiness) = self.readiness.get() {
                    readiness.set_assigned(!owned.is_empty());
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Commits are synchronous and counted where they are made; this only re-offers offsets
        // of a commit that failed after all.
        if let Err(error) = result {
            tracing::warn!(%error, "offset commit failed; offering the offsets again");
            for element in offsets.elements() {
                if let Offset::Offset(offset) = element.offset() {
                    offer_again(
                        &self.finalizer,
                        &PartitionKey::new(element.topic(), element.partition()),
                        offset,
                    );
                }
            }
        }
    }
}
