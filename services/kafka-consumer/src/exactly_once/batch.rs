//! An exactly_once batch: records read since the last transaction, their outputs not yet
//! produced, and what the observers are told once the transaction commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::{Offset, TopicPartitionList};
use summit_envelope::headers::DlqErrorKind;
use summit_ingest::{Classified, ObservedRecord, OutcomeObserver, RecordOutcome};
use summit_mesh::{OutboundRecord, OutputKind, PartitionKey};

/// First and last offset of a partition in a batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) first: i64,
    pub(super) last: i64,
}

/// Per (topic, partition): offsets, records and bytes of a batch.
pub(super) type Positions = BTreeMap<(Arc<str>, i32), (Span, u64, u64)>;

/// An owned [`ObservedRecord`], kept with its batch until the transaction commits.
#[derive(Debug)]
pub(super) struct Observation {
    pub(super) partition: PartitionKey,
    pub(super) offset: i64,
    pub(super) bytes: u64,
    pub(super) dataset: Option<String>,
    pub(super) event_id: String,
    pub(super) schema: Option<String>,
    pub(super) outcome: ObservedOutcome,
}

#[derive(Debug)]
pub(super) enum ObservedOutcome {
    Routed(dq_rules::Outcome),
    DeadLettered(DlqErrorKind),
}

impl Observation {
    pub(super) fn outcome(&self) -> RecordOutcome<'_> {
        match &self.outcome {
            ObservedOutcome::Routed(outcome) => RecordOutcome::Routed(outcome),
            ObservedOutcome::DeadLettered(kind) => RecordOutcome::DeadLettered(*kind),
        }
    }

    pub(super) fn observed(&self) -> ObservedRecord<'_> {
        ObservedRecord {
            lane: &self.partition,
            position: &self.offset,
            bytes: self.bytes,
            dataset: self.dataset.as_deref(),
            event_id: &self.event_id,
            schema: self.schema.as_deref(),
            outcome: self.outcome(),
        }
    }
}

/// The classifier's observer: keeps what it is told until the record joins its batch.
#[derive(Debug, Default)]
pub(super) struct ObservationBuffer(Mutex<Vec<Observation>>);

impl ObservationBuffer {
    pub(super) fn take(&self) -> Vec<Observation> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl OutcomeObserver for ObservationBuffer {
    fn observe(&self, record: &ObservedRecord<'_>) {
        let outcome = match record.outcome {
            RecordOutcome::Routed(outcome) => ObservedOutcome::Routed(outcome.clone()),
            RecordOutcome::DeadLettered(kind) => ObservedOutcome::DeadLettered(kind),
        };
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Observation {
                partition: record.lane.clone(),
                offset: *record.position,
                bytes: record.bytes,
                dataset: record.dataset.map(str::to_owned),
                event_id: record.event_id.to_owned(),
                schema: record.schema.map(str::to_owned),
                outcome,
            });
    }
}

/// Records read since the last transaction, with their outputs not yet produced.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) started: Option<Instant>,
    pub(super) revocations_at_start: u64,
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) positions: Positions,
    pub(super) outputs: Vec<OutboundRecord>,
    pub(super) observations: Vec<Observation>,
    /// (source topic, source timestamp) of records with a mesh / quarantine / DLQ output:
    /// their ingest latency is observed at the commit (hard fails have none, as in
    /// effectively_once).
    pub(super) timed: Vec<(Arc<str>, i64)>,
}

impl Batch {
    pub(super) fn push(
        &mut self,
        record: Classified<PartitionKey, i64>,
        observations: Vec<Observation>,
        revocations: u64,
    ) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.revocations_at_start = revocations;
        }
        self.records += 1;
        self.bytes += record.bytes;
        self.observations.extend(observations);
        if record.outputs.iter().any(|o| o.kind != OutputKind::DqEvent) {
            self.timed
                .push((record.lane.topic.clone(), record.event_time_ms));
        }
        let (offset, bytes) = (record.position, record.bytes);
        let key = (record.lane.topic.clone(), record.lane.partition);
        let entry = self.positions.entry(key).or_insert((
            Span {
                first: offset,
                last: offset,
            },
            0,
            0,
        ));
        entry.0.first = entry.0.first.min(offset);
        entry.0.last = entry.0.last.max(offset);
        entry.1 += 1;
        entry.2 += bytes;
        // exactly_once writes every companion: a burst is bounded by the transaction size.
        self.outputs.extend(record.into_outputs());
    }

    /// The offsets to commit: one past the last record of each partition.
    pub(super) fn commit_offsets(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(self.positions.len());
        for ((topic, partition), (span, _, _)) in &self.positions {
            // Only fails for invalid offset values; ours are read offsets + 1.
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(span.last + 1));
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, offset: i64) -> Classified<PartitionKey, i64> {
        Classified {
            lane: PartitionKey::new(topic, partition),
            position: offset,
            bytes: 10,
            event_time_ms: 0,
            outputs: Vec::new(),
            dead_letter: None,
        }
    }

    #[test]
    fn batch_commits_one_past_the_last_offset_and_rewinds_to_the_first() {
        let mut batch = Batch::default();
        for offset in [7, 8, 9] {
            batch.push(record("a", 0, offset), Vec::new(), 3);
        }
        batch.push(record("a", 1, 42), Vec::new(), 4);
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
}
