//! Rebalance handling: before revoked partitions are released, the ingest core's commit path
//! waits for their in-flight outputs, passes the commit gate (lineage) and commits what they
//! reached (cooperative-sticky, so only revoked partitions stop). Also keeps readiness and
//! per-partition lag metrics in step with the assignment.
//!
//! The commit path is built before the consumer, so this context gets everything it needs at
//! construction: no setters, no cycle between the pipeline and its consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use summit_ingest::CommitPath;
use summit_mesh::PartitionKey;

use crate::assignment::{AssignmentState, keys_of};
use crate::source::KafkaCommitter;

/// The consumer context. Its callbacks run inside `recv()` on the consuming task, so the
/// drain wait relies on acknowledgements reaching the finalizer from the producer's thread.
#[derive(Debug)]
pub struct RebalanceHandler {
    commit: Arc<CommitPath<PartitionKey, i64>>,
    drain_timeout: Duration,
    generation: AtomicU64,
    assignment: AssignmentState,
}

impl RebalanceHandler {
    pub fn new(
        commit: Arc<CommitPath<PartitionKey, i64>>,
        drain_timeout: Duration,
        assignment: AssignmentState,
    ) -> Self {
        Self {
            commit,
            drain_timeout,
            generation: AtomicU64::new(0),
            assignment,
        }
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

impl ClientContext for RebalanceHandler {
    fn stats(&self, statistics: Statistics) {
        self.assignment.report(&statistics);
    }
}

impl ConsumerContext for RebalanceHandler {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let keys = keys_of(list);
                for key in &keys {
                    self.commit.finalizer().assign(key.clone());
                }
                self.assignment.assigned(&keys);
            }
            Rebalance::Revoke(list) => {
                let keys = keys_of(list);
                let committed = self.release(consumer, &keys);
                tracing::info!(partitions = ?keys, committed = ?committed, "revoked");
                self.assignment.revoked(&keys);
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
