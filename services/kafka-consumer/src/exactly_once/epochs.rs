//! The lineage of one exactly_once batch: the START events of new runs and one epoch COMPLETE
//! per dataset, produced inside the batch's transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use summit_lineage::{DatasetName, EpochInput, EpochReport, LineageRun, OffsetRange};

use super::TransactionalPipeline;
use super::batch::Batch;
use crate::lineage::{epoch_outputs, schema_used};
use crate::service::SERVICE_NAME;

/// One dataset's share of a batch: its inputs by source topic, its rule set, and the rule
/// failures and schema of its records (for the epoch's assertions).
#[derive(Debug)]
struct DatasetEpoch {
    inputs: BTreeMap<Arc<str>, EpochInput>,
    ruleset: String,
    evaluated: u64,
    failures: Vec<u64>,
    schema: Option<String>,
}

impl TransactionalPipeline {
    /// The START events of new runs plus one epoch COMPLETE per dataset in the batch, with the
    /// rule assertions and schema of its records, like effectively_once's epochs.
    pub(super) fn epoch_events(&mut self, batch: &Batch) -> Vec<summit_lineage::RunEvent> {
        let source_cluster = self.config.kafka.bootstrap_servers.clone();
        let mesh_cluster = self.config.mesh_bootstrap_servers().to_owned();
        let mut by_dataset: BTreeMap<Arc<str>, DatasetEpoch> = BTreeMap::new();
        for ((topic, partition), (span, records, bytes)) in &batch.positions {
            let Some((_, route)) = self.classifier.routes().resolve(topic) else {
                continue;
            };
            let epoch = by_dataset
                .entry(route.dataset.clone())
                .or_insert_with(|| DatasetEpoch {
                    inputs: BTreeMap::new(),
                    ruleset: route.ruleset.clone(),
                    evaluated: 0,
                    failures: Vec::new(),
                    schema: None,
                });
            let input = epoch
                .inputs
                .entry(topic.clone())
                .or_insert_with(|| EpochInput {
                    dataset: DatasetName::kafka(&source_cluster, topic),
                    offset_ranges: Vec::new(),
                    row_count: Some(0),
                    bytes: Some(0),
                });
            input
                .offset_ranges
                .push(OffsetRange::kafka(*partition, span.first, span.last));
            input.row_count = input.row_count.map(|n| n + records);
            input.bytes = input.bytes.map(|n| n + bytes);
        }
        for observation in &batch.observations {
            let Some(dataset) = observation.dataset.as_deref() else {
                continue;
            };
            let (Some(epoch), Some(rules)) = (by_dataset.get_mut(dataset), self.rules.get(dataset))
            else {
                continue;
            };
            if let Some(failed) = rules.failed(&observation.outcome()) {
                epoch.evaluated += 1;
                epoch.failures.resize(rules.len(), 0);
                for index in failed {
                    epoch.failures[index] += 1;
                }
            }
            if observation.schema.is_some() {
                epoch.schema.clone_from(&observation.schema);
            }
        }
        let mut events = std::mem::take(&mut self.pending_lineage);
        for (dataset, epoch) in by_dataset {
            let assertions = self
                .rules
                .get(&dataset)
                .map(|rules| rules.assertions(epoch.evaluated, &epoch.failures))
                .unwrap_or_default();
            let outputs = epoch_outputs(
                &mesh_cluster,
                &dataset,
                epoch.inputs.keys().map(|topic| &**topic),
                assertions,
            );
            let run = self.lineage.entry(dataset.clone()).or_insert_with(|| {
                let instance = self.config.instance_id();
                let (run, start) = LineageRun::start(SERVICE_NAME, &dataset, &instance);
                events.push(start);
                run
            });
            events.push(run.epoch_complete(EpochReport {
                epoch_id: self.next_epoch,
                inputs: epoch.inputs.into_values().collect(),
                outputs,
                schema:
                    epoch.schema.map(|id| {
                        schema_used(self.classifier.routes().decoder().map(Arc::as_ref), id)
                    }),
                ruleset: Some(epoch.ruleset),
            }));
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
