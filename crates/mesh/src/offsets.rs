//! The ordered per-lane finalizer: which source position may be committed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{Debug, Display};
use std::hash::Hash;
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

/// A lane of a source: the unit whose positions are ordered and committed together (a Kafka
/// partition, a Kinesis shard).
pub trait Lane: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static {
    /// The topic or stream the lane belongs to (routing, metric labels, lineage inputs).
    fn source(&self) -> &Arc<str>;
    /// The partition number or shard id, as lineage offset ranges and metric labels write it.
    fn lane_id(&self) -> String;
}

/// A position within a lane, ordered as the source orders it. `Display` is how lineage writes
/// it (decimal for offsets and sequence numbers).
pub trait Position: Clone + Ord + Debug + Display + Send + Sync + 'static {}

impl<T: Clone + Ord + Debug + Display + Send + Sync + 'static> Position for T {}

impl Lane for PartitionKey {
    fn source(&self) -> &Arc<str> {
        &self.topic
    }

    fn lane_id(&self) -> String {
        self.partition.to_string()
    }
}

#[derive(Debug, Clone, Copy)]
struct TrackedRecord {
    remaining_outputs: u32,
    bytes: u64,
}

#[derive(Debug)]
struct LaneProgress<P> {
    /// Registered positions from the first unfinished one on (finished ones after a gap stay
    /// until the gap closes: like Vector's ordered finalizer, out-of-order acknowledgements
    /// are held back).
    records: BTreeMap<P, TrackedRecord>,
    /// Records of `records` still waiting for an acknowledgement.
    awaiting: usize,
    /// The last position of the finished prefix: the commit point (DESIGN §8, inclusive).
    done_to: Option<P>,
    /// The last position handed out by [`OffsetTracker::take_committable`].
    handed_out: Option<P>,
}

impl<P> Default for LaneProgress<P> {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            awaiting: 0,
            done_to: None,
            handed_out: None,
        }
    }
}

impl<P: Position> LaneProgress<P> {
    /// Moves `done_to` over the finished records at the front.
    fn settle(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if entry.get().remaining_outputs > 0 {
                break;
            }
            self.done_to = Some(entry.remove_entry().0);
        }
    }

    fn take(&mut self) -> Option<P> {
        let point = self.done_to.as_ref()?;
        if self.handed_out.as_ref().is_some_and(|done| done >= point) {
            return None;
        }
        self.handed_out = Some(point.clone());
        Some(point.clone())
    }
}

/// What one completed or abandoned source record gives back to the in-flight budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub records: u64,
    pub bytes: u64,
}

/// Tracks, per lane, which positions still wait for output acknowledgements, and hands out
/// the last position whose outputs, and those of every earlier position of its lane, are all
/// acknowledged (inclusive: a Kafka adapter commits it + 1, a Kinesis adapter checkpoints it).
#[derive(Debug)]
pub struct OffsetTracker<L = PartitionKey, P = i64> {
    lanes: HashMap<L, LaneProgress<P>>,
}

impl<L, P> Default for OffsetTracker<L, P> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
        }
    }
}

impl<L: Lane, P: Position> OffsetTracker<L, P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a newly assigned lane from scratch (earlier state is forgotten: the
    /// source resumes from its checkpoint).
    pub fn assign(&mut self, key: L) {
        self.lanes.insert(key, LaneProgress::default());
    }

    /// Stops tracking a revoked lane. Its unfinished records are abandoned to the next owner,
    /// so their budget is released here; late acknowledgements are ignored.
    pub fn revoke(&mut self, key: &L) -> Released {
        let Some(progress) = self.lanes.remove(key) else {
            return Released::default();
        };
        progress
            .records
            .values()
            .filter(|record| record.remaining_outputs > 0)
            .fold(Released::default(), |acc, record| Released {
                records: acc.records + 1,
                bytes: acc.bytes + record.bytes,
            })
    }

    /// Records that `position` produced `outputs` outputs still to be acknowledged. With zero
    /// outputs the position is finished at once. Positions of a lane arrive in order.
    pub fn register(&mut self, key: &L, position: P, outputs: u32, bytes: u64) {
        let progress = match self.lanes.get_mut(key) {
            Some(progress) => progress,
            None => self.lanes.entry(key.clone()).or_default(),
        };
        let record = TrackedRecord {
            remaining_outputs: outputs,
            bytes,
        };
        if let Some(replaced) = progress.records.insert(position, record)
            && replaced.remaining_outputs > 0
        {
            // The same position registered twice (a source re-delivered it): count it once.
            progress.awaiting -= 1;
        }
        if outputs > 0 {
            progress.awaiting += 1;
        }
        progress.settle();
    }

    /// One output of `position` was acknowledged. Returns what the budget gets back when this
    /// was the record's last output.
    pub fn acknowledge(&mut self, key: &L, position: &P) -> Option<Released> {
        let progress = self.lanes.get_mut(key)?;
        let record = progress.records.get_mut(position)?;
        if record.remaining_outputs == 0 {
            return None;
        }
        record.remaining_outputs -= 1;
        if record.remaining_outputs > 0 {
            return None;
        }
        let bytes = record.bytes;
        progress.awaiting -= 1;
        progress.settle();
        Some(Released { records: 1, bytes })
    }

    /// Records still waiting for acknowledgements in `key` (all lanes when `None`).
    pub fn pending(&self, key: Option<&L>) -> usize {
        match key {
            Some(key) => self.lanes.get(key).map_or(0, |p| p.awaiting),
            None => self.lanes.values().map(|p| p.awaiting).sum(),
        }
    }

    /// The commit point of `key` if it moved since the last call, marking it as handed out.
    pub fn take_committable_for(&mut self, key: &L) -> Option<P> {
        self.lanes.get_mut(key)?.take()
    }

    /// Every lane's commit point that moved since the last call, sorted.
    pub fn take_committable(&mut self) -> Vec<(L, P)> {
        let mut moved: Vec<(L, P)> = self
            .lanes
            .iter_mut()
            .filter_map(|(key, progress)| progress.take().map(|point| (key.clone(), point)))
            .collect();
        moved.sort();
        moved
    }

    /// Forgets that a commit was handed out (it failed), so the next call offers it again.
    pub fn commit_failed(&mut self, key: &L, position: &P) {
        if let Some(progress) = self.lanes.get_mut(key)
            && progress.handed_out.as_ref() == Some(position)
        {
            progress.handed_out = None;
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
    fn commit_point_is_the_last_position_before_the_earliest_unfinished_one() {
        let mut tracker = OffsetTracker::new();
        let p = key(0);
        tracker.assign(p.clone());
        tracker.register(&p, 10, 1, 100);
        tracker.register(&p, 11, 2, 200);
        tracker.register(&p, 12, 1, 300);
        assert_eq!(tracker.take_committable_for(&p), None, "nothing finished");
        // Later positions finishing first must not move the commit point.
        assert_eq!(
            tracker.acknowledge(&p, &12),
            Some(Released {
                records: 1,
                bytes: 300
            })
        );
        assert_eq!(tracker.acknowledge(&p, &11), None, "one of two outputs");
        assert_eq!(tracker.take_committable_for(&p), None);
        assert!(tracker.acknowledge(&p, &11).is_some());
        assert_eq!(tracker.take_committable_for(&p), None);
        assert_eq!(tracker.pending(None), 1);
        tracker.acknowledge(&p, &10);
        assert_eq!(tracker.take_committable(), vec![(p.clone(), 12)]);
        assert!(tracker.take_committable().is_empty(), "handed out once");
        assert_eq!(tracker.pending(None), 0);
        assert_eq!(tracker.acknowledge(&p, &12), None, "a late duplicate ack");
    }

    #[test]
    fn zero_output_records_finish_at_once_and_lanes_are_independent() {
        let mut tracker = OffsetTracker::new();
        tracker.register(&key(0), 5, 0, 10);
        tracker.register(&key(1), 6, 0, 10);
        tracker.register(&key(1), 7, 1, 10);
        assert_eq!(
            tracker.take_committable(),
            vec![(key(0), 5), (key(1), 6)],
            "lane 1 waits before its unfinished position"
        );
        tracker.acknowledge(&key(1), &7);
        assert_eq!(tracker.take_committable(), vec![(key(1), 7)]);
    }

    #[test]
    fn revoke_releases_pending_budget_and_ignores_late_acks() {
        let mut tracker = OffsetTracker::new();
        let p = key(3);
        tracker.register(&p, 1, 2, 40);
        tracker.register(&p, 2, 1, 60);
        tracker.register(&p, 3, 0, 5);
        assert_eq!(
            tracker.revoke(&p),
            Released {
                records: 2,
                bytes: 100
            }
        );
        assert_eq!(tracker.acknowledge(&p, &1), None);
        assert!(tracker.take_committable().is_empty());
    }

    #[test]
    fn failed_commit_is_offered_again() {
        let mut tracker = OffsetTracker::new();
        let p = key(0);
        tracker.register(&p, 0, 0, 0);
        assert_eq!(tracker.take_committable(), vec![(p.clone(), 0)]);
        tracker.commit_failed(&p, &0);
        assert_eq!(tracker.take_committable(), vec![(p, 0)]);
    }

    /// A position type that is not an `i64`: a sequence number past 64 bits with a
    /// sub-sequence, ordered numerically.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Sequence(u128, u32);

    impl Display for Sequence {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}/{}", self.0, self.1)
        }
    }

    #[test]
    fn positions_can_be_any_ordered_type() {
        let mut tracker: OffsetTracker<PartitionKey, Sequence> = OffsetTracker::new();
        let shard = key(0);
        let big = u128::MAX - 5;
        tracker.register(&shard, Sequence(big, 0), 1, 1);
        tracker.register(&shard, Sequence(big, 1), 1, 1);
        tracker.register(&shard, Sequence(big + 1, 0), 1, 1);
        tracker.acknowledge(&shard, &Sequence(big, 1));
        tracker.acknowledge(&shard, &Sequence(big, 0));
        assert_eq!(
            tracker.take_committable(),
            vec![(shard.clone(), Sequence(big, 1))]
        );
        assert_eq!(tracker.pending(Some(&shard)), 1);
    }
}
