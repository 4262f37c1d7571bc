//! Rebalance handling: before revoked partitions are released, wait for their in-flight
//! outputs and commit what they reached (cooperative-sticky, so only revoked partitions stop).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use summit_mesh::{Finalizer, PartitionKey};

/// The consumer context. Its callbacks run inside `recv()` on the consuming task, so the
/// drain wait relies on acknowledgements reaching the [`Finalizer`] from the producer's thread.
#[derive(Debug)]
pub struct RebalanceHandler {
    finalizer: Arc<Finalizer>,
    drain_timeout: Duration,
    generation: AtomicU64,
}

impl RebalanceHandler {
    pub fn new(finalizer: Arc<Finalizer>, drain_timeout: Duration) -> Self {
        Self {
            finalizer,
            drain_timeout,
            generation: AtomicU64::new(0),
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

pub(crate) fn offsets_list(offsets: &[(PartitionKey, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (key, offset) in offsets {
        // Only fails for an invalid offset value; ours are next-to-read offsets (>= 0).
        let _ = list.add_partition_offset(&key.topic, key.partition, Offset::Offset(*offset));
    }
    list
}

impl ClientContext for RebalanceHandler {}

impl ConsumerContext for RebalanceHandler {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let keys = keys_of(list);
                tracing::info!(partitions = ?keys, "assigned");
                for key in keys {
                    self.finalizer.assign(key);
                }
            }
            Rebalance::Revoke(list) => {
                let keys = keys_of(list);
                let drained = self.finalizer.wait_drained(&keys, self.drain_timeout);
                let offsets = self.finalizer.take_committable_for(&keys);
                if !offsets.is_empty()
                    && let Err(error) = consumer.commit(&offsets_list(&offsets), CommitMode::Sync)
                {
                    tracing::warn!(%error, "commit of revoked partitions failed; the next owner re-reads them");
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
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, "offset commit failed; offering the offsets again");
            for element in offsets.elements() {
                if let Offset::Offset(offset) = element.offset() {
                    self.finalizer.commit_failed(
                        &PartitionKey::new(element.topic(), element.partition()),
                        offset,
                    );
                }
            }
        }
    }
}
