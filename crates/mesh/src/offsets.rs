//! The ordered per-partition finalizer: which source offset may be committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A source partition: topic and partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl PartitionKey {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingRecord {
    remaining_outputs: u32,
    bytes: u64,
}

#[derive(Debug, Default)]
struct PartitionProgress {
    /// Source offsets whose outputs are not all acknowledged yet.
    pending: BTreeMap<i64, PendingRecord>,
    /// One past the highest offset registered: the commit point once nothing is pending.
    next_offset: Option<i64>,
    /// The last offset handed out by [`OffsetTracker::take_committable`].
    committed: Option<i64>,
}

impl PartitionProgress {
    fn commit_point(&self) -> Option<i64> {
        // The first unfinished offset is the next one to read after a restart; everything
        // before it is done (like Vector's ordered finalizer, acknowledgements out of order are
        // held back until the gap before them closes).
        match self.pending.first_key_value() {
            Some((&offset, _)) => Some(offset),
            None => self.next_offset,
        }
    }
}

/// What one completed or abandoned source record gives back to the in-flight budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub records: u64,
    pub bytes: u64,
}

/// Tracks, per source partition, which offsets still wait for output acknowledgements.
///
/// Offsets are Kafka offsets: the committed value is the *next* offset to read.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<PartitionKey, PartitionProgress>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a newly assigned partition from scratch (earlier state is forgotten: the
    /// consumer resumes from the group's committed offset).
    pub fn assign(&mut self, key: PartitionKey) {
        self.partitions.insert(key, PartitionProgress::default());
    }

    /// Stops tracking a revoked partition. Its pending records are abandoned to the next owner,
    /// so their budget is released here; late acknowledgements are ignored.
    pub fn revoke(&mut self, key: &PartitionKey) -> Released {
        let Some(progress) = self.partitions.remove(key) else {
            return Released::default();
        };
        progress
            .pending
            .values()
            .fold(Released::default(), |acc, record| Released {
                records: acc.records + 1,
                bytes: acc.bytes + record.bytes,
            })
    }

    /// Records that `offset` produced `outputs` outputs still to be acknowledged. With zero
    /// outputs the offset is complete at once.
    pub fn register(&mut self, key: &PartitionKey, offset: i64, outputs: u32, bytes: u64) {
        let progress = match self.partitions.get_mut(key) {
            Some(progress) => progress,
            None => self.partitions.entry(key.clone()).or_default(),
        };
        if outputs > 0 {
            progress.pending.insert(
                offset,
                PendingRecord {
                    remaining_outputs: outputs,
                    bytes,
                },
            );
        }
        let next = offset + 1;
        if progress.next_offset.is_none_or(|current| next > current) {
            progress.next_offset = Some(next);
        }
    }

    /// One output of `offset` was acknowledged. Returns what the budget gets back when this
    /// was the record's last output.
    pub fn acknowledge(&mut self, key: &PartitionKey, offset: i64) -> Option<Released> {
        let progress = self.partitions.get_mut(key)?;
        let record = progress.pending.get_mut(&offset)?;
        record.remaining_outputs = record.remaining_outputs.saturating_sub(1);
        if record.remaining_outputs > 0 {
            return None;
        }
        let bytes = record.bytes;
        progress.pending.remove(&offset);
        Some(Released { records: 1, bytes })
    }

    /// Records still waiting for acknowledgements in `key` (all partitions when `None`).
    pub fn pending(&self, key: Option<&PartitionKey>) -> usize {
        match key {
            Some(key) => self.partitions.get(key).map_or(0, |p| p.pending.len()),
            None => self.partitions.values().map(|p| p.pending.len()).sum(),
        }
    }

    /// The commit point of `key` if it moved since the last call, marking it as handed out.
    pub fn take_committable_for(&mut self, key: &PartitionKey) -> Option<i64> {
        let progress = self.partitions.get_mut(key)?;
        let point = progress.commit_point()?;
        if progress.committed.is_some_and(|done| done >= point) {
            return None;
        }
        progress.committed = Some(point);
        Some(point)
    }

    /// Every partition's commit point that moved since the last call, sorted.
    pub fn take_committable(&mut self) -> Vec<(PartitionKey, i64)> {
        let mut moved: Vec<(PartitionKey, i64)> = Vec::new();
        for (key, progress) in &mut self.partitions {
            let Some(point) = progress.commit_point() else {
                continue;
            };
            if progress.committed.is_some_and(|done| done >= point) {
                continue;
            }
            progress.committed = Some(point);
            moved.push((key.clone(), point));
        }
        moved.sort();
        moved
    }

    /// Forgets that a commit was handed out (it failed), so the next call offers it again.
    pub fn commit_failed(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(progress) = self.partitions.get_mut(key)
            && progress.committed == Some(offset)
        {
            progress.committed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: i32) -> PartitionKey {
        PartitionKey::new("orders", partition)
    }

    #[test]
    fn commit_point_waits_for_the_earliest_unfinished_offset() {
        let mut tracker = OffsetTracker::new();
        let p = key(0);
        tracker.assign(p.clone());
        tracker.register(&p, 10, 1, 100);
        tracker.register(&p, 11, 2, 200);
        tracker.register(&p, 12, 1, 300);
        assert_eq!(tracker.take_committable_for(&p), Some(10));
        // Later offsets finishing first must not move the commit point past offset 10.
        assert_eq!(
            tracker.acknowledge(&p, 12),
            Some(Released {
                records: 1,
                bytes: 300
            })
        );
        assert_eq!(tracker.acknowledge(&p, 11), None, "one of two outputs");
        assert_eq!(tracker.take_committable_for(&p), None);
        assert!(tracker.acknowledge(&p, 11).is_some());
        assert_eq!(tracker.take_committable_for(&p), None);
        tracker.acknowledge(&p, 10);
        assert_eq!(tracker.take_committable(), vec![(p.clone(), 13)]);
        assert!(tracker.take_committable().is_empty(), "handed out once");
        assert_eq!(tracker.pending(None), 0);
    }

    #[test]
    fn zero_output_records_complete_at_once_and_partitions_are_independent() {
        let mut tracker = OffsetTracker::new();
        tracker.register(&key(0), 5, 0, 10);
        tracker.register(&key(1), 7, 1, 10);
        assert_eq!(
            tracker.take_committable(),
            vec![(key(0), 6), (key(1), 7)],
            "partition 1 waits at its unfinished offset"
        );
        tracker.acknowledge(&key(1), 7);
        assert_eq!(tracker.take_committable(), vec![(key(1), 8)]);
    }

    #[test]
    fn revoke_releases_pending_budget_and_ignores_late_acks() {
        let mut tracker = OffsetTracker::new();
        let p = key(3);
        tracker.register(&p, 1, 2, 40);
        tracker.register(&p, 2, 1, 60);
        assert_eq!(
            tracker.revoke(&p),
            Released {
                records: 2,
                bytes: 100
            }
        );
        assert_eq!(tracker.acknowledge(&p, 1), None);
        assert!(tracker.take_committable().is_empty());
    }

    #[test]
    fn failed_commit_is_offered_again() {
        let mut tracker = OffsetTracker::new();
        let p = key(0);
        tracker.register(&p, 0, 0, 0);
        assert_eq!(tracker.take_committable(), vec![(p.clone(), 1)]);
        tracker.commit_failed(&p, 1);
        assert_eq!(tracker.take_committable(), vec![(p, 1)]);
    }
}
