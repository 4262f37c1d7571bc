//! The lineage of one exactly_once batch: the START events of new runs and one epoch COMPLETE
//! per dataset, produced inside the batch's transaction. Epochs come from the same ledger as
//! effectively_once's (`summit_lineage::EpochLedger`), sealed at the batch's last positions.

use summit_envelope::topics;
use summit_ingest::epochs::note_of;
use summit_kafka::TransactionRecord;
use summit_lineage::{EpochLedger, LineageRun, RunEvent};
use summit_mesh::PartitionKey;

use super::TransactionalPipeline;
use super::batch::Batch;
use crate::service::SERVICE_NAME;

impl TransactionalPipeline {
    /// The START events of new runs (and of runs whose START an aborted transaction lost), then
    /// one epoch COMPLETE per dataset in the batch.
    pub(super) fn epoch_events(&mut self, batch: &Batch) -> Vec<RunEvent> {
        let mut ledger: EpochLedger<PartitionKey, i64> = EpochLedger::default();
        for observation in &batch.observations {
            let observed = observation.observed();
            let Some((dataset, rules)) = observed
                .dataset
                .and_then(|dataset| self.rules.get_key_value(dataset))
            else {
                continue;
            };
            ledger.note(
                observed.lane,
                dataset,
                observed.schema,
                note_of(&observed, rules),
            );
        }
        let finished: Vec<(PartitionKey, i64)> = batch
            .positions
            .iter()
            .map(|((topic, partition), (span, _, _))| {
                (PartitionKey::new(topic.clone(), *partition), span.last)
            })
            .collect();
        let mut events = std::mem::take(&mut self.pending_lineage);
        for (dataset, aggregate) in ledger.seal(&finished) {
            let Some(rules) = self.rules.get(&dataset) else {
                continue;
            };
            let ruleset = self.rulesets.get(&dataset).cloned().unwrap_or_default();
            let report = self
                .epochs
                .report(self.next_epoch, &dataset, &aggregate, rules, &ruleset);
            let run = self.lineage.entry(dataset.clone()).or_insert_with(|| {
                let (run, start) =
                    LineageRun::start(SERVICE_NAME, &dataset, &self.config.instance_id());
                events.push(start);
                run
            });
            events.push(run.epoch_complete(report));
        }
        // Kept until a commit: an aborted transaction's START events are sent again.
        self.pending_lineage = events
            .iter()
            .filter(|e| e.run.facets.parent.is_none())
            .cloned()
            .collect();
        events
    }
}

/// Lineage events as (key, JSON) for `lineage.events`; an event that cannot be serialized is
/// left out with an error log (it would be refused by every reader too).
pub(super) fn lineage_payloads(events: &[summit_lineage::RunEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .filter_map(|event| match serde_json::to_vec(event) {
            Ok(json) => Some((event.key(), json)),
            Err(error) => {
                tracing::error!(%error, "lineage event not serializable; left out");
                None
            }
        })
        .collect()
}

pub(super) fn lineage_records(
    payloads: &[(String, Vec<u8>)],
) -> impl Iterator<Item = TransactionRecord<'_>> {
    payloads.iter().map(|(key, json)| TransactionRecord {
        topic: topics::LINEAGE_EVENTS,
        key: Some(key.as_bytes()),
        payload: json,
        headers: None,
    })
}
