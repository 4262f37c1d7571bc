//! What both delivery modes' consumer contexts keep of the assignment: the owned partitions
//! (lag is reported for these only), readiness (connected / assigned) and the per-partition
//! `summit_consumer_lag` series, kept in step with assignments and revocations.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use rdkafka::TopicPartitionList;
use rdkafka::statistics::Statistics;
use summit_mesh::PartitionKey;
use summit_telemetry::{Metrics, Readiness};

#[derive(Debug, Default)]
pub struct AssignmentState {
    owned: Mutex<BTreeSet<PartitionKey>>,
    metrics: Option<Metrics>,
    readiness: Option<Readiness>,
}

impl AssignmentState {
    pub fn new(metrics: Option<Metrics>, readiness: Option<Readiness>) -> Self {
        Self {
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

    pub fn assigned(&self, keys: &[PartitionKey]) {
        tracing::info!(partitions = ?keys, "assigned");
        let mut owned = self.owned();
        owned.extend(keys.iter().cloned());
        if let Some(readiness) = &self.readiness {
            // A group assignment needs the coordinator: we are connected.
            readiness.set_connected(true);
            readiness.set_assigned(!owned.is_empty());
        }
    }

    pub fn revoked(&self, keys: &[PartitionKey]) {
        let mut owned = self.owned();
        for key in keys {
            owned.remove(key);
            if let Some(metrics) = &self.metrics {
                metrics.remove_partition(&key.topic, &key.partition.to_string());
            }
        }
        if let Some(readiness) = &self.readiness {
            readiness.set_assigned(!owned.is_empty());
        }
    }

    /// Readiness `connected` (a broker is up) and the lag of the owned partitions from one
    /// librdkafka statistics report: high watermark − position (the next offset to hand to the
    /// application; before the first record, the committed offset, else the low mark).
    pub fn report(&self, statistics: &Statistics) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if let Some(readiness) = &self.readiness
            && statistics
                .brokers
                .values()
                .any(|broker| broker.state == "UP")
        {
            readiness.set_connected(true);
        }
        // Held while setting, so a revoke cannot remove a series that is then set again.
        let owned = self.owned();
        for key in owned.iter() {
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
}

/// The partitions of a rebalance list.
pub fn keys_of(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|element| PartitionKey::new(element.topic(), element.partition()))
        .collect()
}
