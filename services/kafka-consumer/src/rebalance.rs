//! Rebalance handling: before revoked partitions are released, the ingest core's commit path
//! waits for their in-flight outputs, passes the commit gate (lineage) and commits what they
//! reached (cooperative-sticky, so only revoked partitions stop). Also keeps readiness and
//! per-partition lag metrics in step with the assignment.
//!
//! The commit path is built before the consumer, so this context gets everything it needs at
//! construction: no setters, no cycle between the pipeline and its consumer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use summit_ingest::CommitPath;
use summit_mesh::PartitionKey;
use summit_telemetry::{Metrics, Readiness};

use crate::source::KafkaCommitter;

/// The consumer context. Its callbacks run inside `recv()` on the consuming task, so the
/// drain wait relies on acknowledgements reaching the finalizer from the producer's thread.
#[derive(Debug)]
pub struct RebalanceHandler {
    commit: Arc<CommitPath<PartitionKey, i64>>,
    drain_timeout: Duration,
    generation: AtomicU64,
    /// Partitions this instance owns now (lag is reported for these only).
    owned: Mutex<BTreeSet<PartitionKey>>,
    metrics: Option<Metrics>,
    readiness: Option<Readiness>,
}

impl RebalanceHandler {
    pub fn new(
        commit: Arc<CommitPath<PartitionKey, i64>>,
        drain_timeout: Duration,
        metrics: Option<Metrics>,
        readiness: Option<Readiness>,
    ) -> Self {
        Self {
            commit,
            drain_timeout,
            generation: AtomicU64::new(0),
            owned: Mutex::default(),
            metrics,
            readiness,
        }
    }

    fn owned(&self) -> MutexGuard<'_, BTreeSet<PartitionKey>> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bumped after every rebalance: a paused consumer must pause newly assigned partitions.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Drains, gates and commits the revoked partitions through the commit path, blocking this
    /// (librdkafka callback) thread for at most twice the drain timeout (drain, then gate).
    fn release(
        &self,
        consumer: &BaseConsumer<Self>,
        keys: &[PartitionKey],
    ) -> Vec<(PartitionKey, i64)> {
        // The callback runs on a tokio worker (inside `recv()`), or on the thread dropping the
        // consumer; block_in_place needs the multi-threaded runtime. Anything else: release
        // uncommitted, which is safe (the next owner re-reads).
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                let committer = KafkaCommitter(consumer);
                tokio::task::block_in_place(|| {
                    handle.block_on(self.commit.release(keys, &committer, self.drain_timeout))
                })
            }
            _ => {
                tracing::warn!("no multi-threaded runtime in the revoke callback; not committing");
                self.commit.forget(keys);
                Vec::new()
            }
        }
    }
}

pub(crate) fn keys_of(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|element| PartitionKey::new(element.topic(), element.partition()))
        .collect()
}

impl ClientContext for RebalanceHandler {
    /// Lag of the partitions we own: high watermark − position (the next offset to hand to
    /// the application; before the first record, the committed offset, else the low mark).
    fn stats(&self, statistics: Statistics) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        // Held while setting, so a revoke cannot remove a series that is then set again.
        let owned = self.owned();
        report_statistics(&statistics, &owned, metrics, self.readiness.as_ref());
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
                    self.commit.finalizer().assign(key.clone());
                    owned.insert(key);
                }
                if let Some(readiness) = &self.readiness {
                    // A group assignment needs the coordinator: we are connected.
                    readiness.set_connected(true);
                    readiness.set_assigned(!owned.is_empty());
                }
            }
            Rebalance::Revoke(list) => {
                let keys = keys_of(list);
                let committed = self.release(consumer, &keys);
                tracing::info!(partitions = ?keys, committed = ?committed, "revoked");
                let mut owned = self.owned();
                for key in &keys {
                    owned.remove(key);
                    if let Some(metrics) = &self.metrics {
                        metrics.remove_partition(&key.topic, &key.partition.to_string());
                    }
                }
                if let Some(readiness) = &self.readiness {
                    readiness.set_assigned(!owned.is_empty());
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
