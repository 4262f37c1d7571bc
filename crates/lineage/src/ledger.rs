//! The epoch ledger (DESIGN §6, §8): what lineage keeps of each source record until the
//! checkpoint that covers it, and the epochs a checkpoint seals. One ledger for every source
//! and both delivery modes: effectively_once seals at each commit (after every output of the
//! covered records is acknowledged), exactly_once at each transaction.
//!
//! Lanes and positions are the mesh's ([`Lane`], [`Position`]): a Kafka partition and offset,
//! a Kinesis shard and sequence number. An epoch's offset ranges are written the way
//! [`Position`]'s `Display` writes them (decimal strings).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use summit_mesh::{Lane, Position};

use crate::event::OffsetRange;
use crate::naming::DatasetName;
use crate::run::EpochInput;

/// What the ledger keeps of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordNote<P> {
    pub position: P,
    /// Key + payload bytes.
    pub bytes: u64,
    /// `None`: dead-lettered (not judged by the rules). Otherwise the indexes of the rules it
    /// violated (into the dataset's rule list).
    pub failed_rules: Option<Vec<usize>>,
    /// The `summit-schema` it was decoded with.
    pub schema: Option<Arc<str>>,
}

#[derive(Debug)]
struct LaneLedger<P> {
    dataset: Arc<str>,
    notes: VecDeque<RecordNote<P>>,
    /// The last schema seen, shared by the notes that carry it (one allocation per change).
    last_schema: Option<Arc<str>>,
}

/// The sums of one epoch of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochAggregate<L, P> {
    /// Lane → first and last position, both included.
    pub ranges: BTreeMap<L, (P, P)>,
    /// Source (topic or stream) → (records, bytes).
    pub read: BTreeMap<Arc<str>, (u64, u64)>,
    /// Records judged by the rules (not dead-lettered).
    pub evaluated: u64,
    /// `failures[i]`: records that violated rule `i`.
    pub failures: Vec<u64>,
    pub schema: Option<Arc<str>>,
}

impl<L, P> Default for EpochAggregate<L, P> {
    fn default() -> Self {
        Self {
            ranges: BTreeMap::new(),
            read: BTreeMap::new(),
            evaluated: 0,
            failures: Vec::new(),
            schema: None,
        }
    }
}

impl<L: Lane, P: Position> EpochAggregate<L, P> {
    fn add(&mut self, lane: &L, note: RecordNote<P>) {
        let range = self
            .ranges
            .entry(lane.clone())
            .or_insert_with(|| (note.position.clone(), note.position.clone()));
        if note.position < range.0 {
            range.0 = note.position.clone();
        }
        if note.position > range.1 {
            range.1 = note.position.clone();
        }
        let read = self.read.entry(lane.source().clone()).or_default();
        read.0 += 1;
        read.1 += note.bytes;
        if let Some(failed) = note.failed_rules {
            self.evaluated += 1;
            for index in failed {
                if self.failures.len() <= index {
                    self.failures.resize(index + 1, 0);
                }
                self.failures[index] += 1;
            }
        }
        if note.schema.is_some() {
            self.schema = note.schema;
        }
    }

    /// Folds a later epoch of the same dataset into this one (epochs that waited behind a
    /// failed emission and were never tried are merged).
    pub fn merge(&mut self, other: Self) {
        for (lane, (first, last)) in other.ranges {
            self.ranges
                .entry(lane)
                .and_modify(|range| {
                    if first < range.0 {
                        range.0 = first.clone();
                    }
                    if last > range.1 {
                        range.1 = last.clone();
                    }
                })
                .or_insert((first, last));
        }
        for (source, (records, bytes)) in other.read {
            let entry = self.read.entry(source).or_default();
            entry.0 += records;
            entry.1 += bytes;
        }
        self.evaluated += other.evaluated;
        if self.failures.len() < other.failures.len() {
            self.failures.resize(other.failures.len(), 0);
        }
        for (index, count) in other.failures.into_iter().enumerate() {
            self.failures[index] += count;
        }
        if other.schema.is_some() {
            self.schema = other.schema;
        }
    }

    /// The epoch's inputs, one per source, named by `naming` (e.g. `DatasetName::kafka` with
    /// the source cluster), with their offset ranges, row counts and bytes.
    pub fn inputs(&self, naming: impl Fn(&str) -> DatasetName) -> Vec<EpochInput> {
        let mut ranges: BTreeMap<&Arc<str>, Vec<OffsetRange>> = BTreeMap::new();
        for (lane, (first, last)) in &self.ranges {
            ranges.entry(lane.source()).or_default().push(OffsetRange {
                partition: lane.lane_id(),
                first: first.to_string(),
                last: last.to_string(),
            });
        }
        ranges
            .into_iter()
            .map(|(source, offset_ranges)| {
                let (rows, bytes) = self.read.get(source).copied().unwrap_or_default();
                EpochInput {
                    dataset: naming(source),
                    offset_ranges,
                    row_count: Some(rows),
                    bytes: Some(bytes),
                }
            })
            .collect()
    }
}

/// Per lane, the records not yet in a sealed epoch.
#[derive(Debug)]
pub struct EpochLedger<L, P> {
    lanes: HashMap<L, LaneLedger<P>>,
}

impl<L, P> Default for EpochLedger<L, P> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
        }
    }
}

impl<L: Lane, P: Position> EpochLedger<L, P> {
    /// Keeps `note` for `lane`, whose records belong to `dataset`. Positions of a lane arrive
    /// in order.
    pub fn note(
        &mut self,
        lane: &L,
        dataset: &Arc<str>,
        schema: Option<&str>,
        mut note: RecordNote<P>,
    ) {
        let ledger = self
            .lanes
            .entry(lane.clone())
            .or_insert_with(|| LaneLedger {
                dataset: dataset.clone(),
                notes: VecDeque::new(),
                last_schema: None,
            });
        note.schema = schema.map(|schema| match &ledger.last_schema {
            Some(last) if **last == *schema => last.clone(),
            _ => {
                let fresh: Arc<str> = schema.into();
                ledger.last_schema = Some(fresh.clone());
                fresh
            }
        });
        ledger.notes.push_back(note);
    }

    /// Seals, per lane, the records up to the finished position (inclusive) into one epoch
    /// per dataset. Lanes with nothing new give nothing.
    pub fn seal(&mut self, finished: &[(L, P)]) -> BTreeMap<Arc<str>, EpochAggregate<L, P>> {
        let mut sealed: BTreeMap<Arc<str>, EpochAggregate<L, P>> = BTreeMap::new();
        for (lane, last) in finished {
            let Some(ledger) = self.lanes.get_mut(lane) else {
                continue;
            };
            while ledger
                .notes
                .front()
                .is_some_and(|note| note.position <= *last)
            {
                let Some(note) = ledger.notes.pop_front() else {
                    break;
                };
                sealed
                    .entry(ledger.dataset.clone())
                    .or_default()
                    .add(lane, note);
            }
        }
        sealed
    }

    /// The lanes were released: their unsealed records are the next owner's to account for
    /// (it re-reads them).
    pub fn forget(&mut self, lanes: &[L]) {
        for lane in lanes {
            self.lanes.remove(lane);
        }
    }
}

#[cfg(test)]
mod tests {
    use summit_mesh::PartitionKey;

    use super::*;

    fn note(position: i64, failed: Option<Vec<usize>>) -> RecordNote<i64> {
        RecordNote {
            position,
            bytes: 10,
            failed_rules: failed,
            schema: None,
        }
    }

    #[test]
    fn seals_tile_the_positions_and_sum_rule_failures_per_dataset() {
        let dataset: Arc<str> = "orders".into();
        let (p0, p1) = (
            PartitionKey::new("orders", 0),
            PartitionKey::new("orders", 1),
        );
        let mut ledger = EpochLedger::default();
        ledger.note(&p0, &dataset, Some("orders/1"), note(10, Some(vec![])));
        ledger.note(&p0, &dataset, Some("orders/1"), note(11, Some(vec![1])));
        ledger.note(&p0, &dataset, None, note(12, None));
        ledger.note(&p1, &dataset, Some("orders/2"), note(0, Some(vec![0, 1])));
        let first = ledger.seal(&[(p0.clone(), 11)]);
        let epoch = &first[&dataset];
        assert_eq!(epoch.ranges, BTreeMap::from([(p0.clone(), (10, 11))]));
        assert_eq!((epoch.evaluated, epoch.failures.clone()), (2, vec![0, 1]));
        assert_eq!(epoch.schema.as_deref(), Some("orders/1"));
        let second = ledger.seal(&[(p0.clone(), 12), (p1.clone(), 0)]);
        let epoch = &second[&dataset];
        assert_eq!(
            epoch.ranges,
            BTreeMap::from([(p0.clone(), (12, 12)), (p1.clone(), (0, 0))])
        );
        assert_eq!(epoch.read[&Arc::<str>::from("orders")], (2, 20));
        assert_eq!((epoch.evaluated, epoch.failures.clone()), (1, vec![1, 1]));
        let inputs = epoch.inputs(|topic| DatasetName::kafka("b:9092", topic));
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].offset_ranges.len(), 2);
        assert_eq!(inputs[0].offset_ranges[0].first, "12");
        assert_eq!(inputs[0].row_count, Some(2));
        assert!(ledger.seal(&[(p0.clone(), 12)]).is_empty(), "nothing new");
        let mut merged = first[&dataset].clone();
        merged.merge(second[&dataset].clone());
        assert_eq!(merged.ranges[&p0], (10, 12));
        assert_eq!((merged.evaluated, merged.failures), (3, vec![1, 2]));
        ledger.note(&p1, &dataset, None, note(1, Some(vec![])));
        ledger.forget(std::slice::from_ref(&p1));
        assert!(
            ledger.seal(&[(p1, 1)]).is_empty(),
            "a released lane's notes are gone"
        );
    }
}
