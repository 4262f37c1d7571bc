//! What lineage epochs report about a dataset, shared by every source and both delivery
//! modes: the rules as `dataQualityAssertions` ([`RuleAssertions`], also the basis of the
//! `dq.events` per-rule counts), the outputs an epoch writes ([`epoch_outputs`]), the schema
//! facet ([`schema_used`]), and the epoch report built from a sealed [`EpochAggregate`]
//! ([`EpochContext::report`]). The ledger that seals epochs is `summit_lineage::EpochLedger`;
//! [`note_of`] turns an observed record into its note.

use std::collections::HashMap;
use std::sync::Arc;

use dq_rules::{Severity, Verdict};
use summit_envelope::topics;
use summit_lineage::{
    Assertion, DatasetName, EpochAggregate, EpochOutput, EpochReport, RecordNote, SchemaField,
    SchemaUsed,
};
use summit_mesh::{Lane, Position};
use summit_schema::{Decoder, FieldSummary};

use crate::observe::{ObservedRecord, RecordOutcome};
use crate::route::Route;

/// One rule of a route's rule set.
#[derive(Debug)]
pub struct RuleInfo {
    pub id: String,
    pub column: String,
    pub severity: Severity,
}

/// A route's rules as epochs report them: one `dataQualityAssertions` entry per rule with
/// `actual` = `failures/evaluated`. Shared with exactly_once's epochs and the `dq.events`
/// per-rule counts.
#[derive(Debug)]
pub struct RuleAssertions {
    rules: Vec<RuleInfo>,
    index: HashMap<String, usize>,
}

impl RuleAssertions {
    pub fn of(route: &Route) -> Self {
        Self::from_rules(
            route
                .evaluator
                .rule_set()
                .rules
                .iter()
                .map(|rule| RuleInfo {
                    id: rule.id.clone(),
                    column: rule.field.as_str().to_owned(),
                    severity: rule.severity,
                })
                .collect(),
        )
    }

    pub fn from_rules(rules: Vec<RuleInfo>) -> Self {
        let index = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.id.clone(), index))
            .collect();
        Self { rules, index }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in rule-set order (the order of `failures` slices).
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    pub fn index_of(&self, rule_id: &str) -> Option<usize> {
        self.index.get(rule_id).copied()
    }

    /// `None`: not evaluated (dead-lettered). Otherwise the indexes of the violated rules,
    /// each once.
    pub fn failed(&self, outcome: &RecordOutcome<'_>) -> Option<Vec<usize>> {
        match outcome {
            RecordOutcome::Routed(outcome) if outcome.verdict != Verdict::Pass => {
                let mut failed: Vec<usize> = outcome
                    .violations
                    .iter()
                    .filter_map(|violation| self.index.get(&violation.rule_id).copied())
                    .collect();
                failed.dedup();
                Some(failed)
            }
            RecordOutcome::Routed(_) => Some(Vec::new()),
            RecordOutcome::DeadLettered(_) => None,
        }
    }

    /// `failures[i]`: records of the epoch that violated rule `i`, out of `evaluated`.
    pub fn assertions(&self, evaluated: u64, failures: &[u64]) -> Vec<Assertion> {
        self.rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let failures = failures.get(index).copied().unwrap_or(0);
                Assertion {
                    assertion: rule.id.clone(),
                    success: failures == 0,
                    column: Some(rule.column.clone()),
                    severity: Some(
                        match rule.severity {
                            Severity::Hard => "error",
                            Severity::Soft => "warn",
                        }
                        .to_owned(),
                    ),
                    actual: Some(format!("{failures}/{evaluated}")),
                }
            })
            .collect()
    }
}

/// An epoch's outputs: `mesh.<dataset>` (carrying the rule assertions), its quarantine, the
/// DLQ of every source topic read and `dq.events`.
pub fn epoch_outputs<'a>(
    mesh_bootstrap: &str,
    dataset: &str,
    source_topics: impl IntoIterator<Item = &'a str>,
    assertions: Vec<Assertion>,
) -> Vec<EpochOutput> {
    let mut outputs = vec![
        EpochOutput {
            dataset: DatasetName::kafka(mesh_bootstrap, &topics::mesh(dataset)),
            assertions,
        },
        EpochOutput {
            dataset: DatasetName::kafka(mesh_bootstrap, &topics::quarantine(dataset)),
            assertions: Vec::new(),
        },
    ];
    for topic in source_topics {
        outputs.push(EpochOutput {
            dataset: DatasetName::kafka(mesh_bootstrap, &topics::dlq(topic)),
            assertions: Vec::new(),
        });
    }
    outputs.push(EpochOutput {
        dataset: DatasetName::kafka(mesh_bootstrap, topics::DQ_EVENTS),
        assertions: Vec::new(),
    });
    outputs
}

/// The schema facet of an epoch: the `summit-schema` value and, when the decoder has that
/// schema cached (it decoded the epoch's records with it), its fields.
pub fn schema_used(decoder: Option<&Decoder>, id: String) -> SchemaUsed {
    let fields = decoder
        .and_then(|decoder| decoder.cached(&id))
        .map(|compiled| compiled.fields().iter().map(schema_field).collect())
        .unwrap_or_default();
    SchemaUsed { id, fields }
}

fn schema_field(field: &FieldSummary) -> SchemaField {
    SchemaField {
        fields: field.fields.iter().map(schema_field).collect(),
        ..SchemaField::new(field.name.clone(), field.type_name.clone())
    }
}

/// The ledger note of an observed record, with the rules of its dataset.
pub fn note_of<L, P: Clone>(
    record: &ObservedRecord<'_, L, P>,
    rules: &RuleAssertions,
) -> RecordNote<P> {
    RecordNote {
        position: record.position.clone(),
        bytes: record.bytes,
        failed_rules: rules.failed(&record.outcome),
        schema: None,
    }
}

/// Naming and schema lookup for the epochs of one service instance.
pub struct EpochContext {
    /// Names a source (topic or stream) as a lineage dataset.
    pub source_naming: Box<dyn Fn(&str) -> DatasetName + Send + Sync>,
    /// The mesh cluster the outputs are written to.
    pub mesh_bootstrap: String,
    /// Names the fields of the schemas records were decoded with (its cache; no registry call).
    pub decoder: Option<Arc<Decoder>>,
}

impl std::fmt::Debug for EpochContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochContext")
            .field("mesh_bootstrap", &self.mesh_bootstrap)
            .finish_non_exhaustive()
    }
}

impl EpochContext {
    /// The report of one sealed epoch of `dataset`: inputs with their ranges and counts, the
    /// outputs with the rules' assertions, the schema and the rule set.
    pub fn report<L: Lane, P: Position>(
        &self,
        epoch_id: u64,
        dataset: &str,
        aggregate: &EpochAggregate<L, P>,
        rules: &RuleAssertions,
        ruleset: &str,
    ) -> EpochReport {
        let assertions = rules.assertions(aggregate.evaluated, &aggregate.failures);
        EpochReport {
            epoch_id,
            inputs: aggregate.inputs(&self.source_naming),
            outputs: epoch_outputs(
                &self.mesh_bootstrap,
                dataset,
                aggregate.read.keys().map(|source| &**source),
                assertions,
            ),
            schema: aggregate
                .schema
                .as_ref()
                .map(|id| schema_used(self.decoder.as_deref(), id.to_string())),
            ruleset: Some(ruleset.to_owned()),
        }
    }
}
