//! Batch evaluation with a Great-Expectations-style summary per rule, so a result can be held
//! against GX's on the same rows.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::evaluator::{Evaluator, Outcome, UniqueMode};
use crate::path::Located;
use crate::uniqueness::unique_key;
use crate::value::{RecordView, Scalar};

/// How many unexpected values a summary lists (GX's `partial_unexpected_list` also keeps 20).
pub const PARTIAL_LIST_LEN: usize = 20;

/// GX's `result` block for one rule over one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSummary {
    pub rule_id: String,
    pub field: String,
    /// `mostly` satisfied: the share of non-missing values (all values for `required`) that
    /// passed is at least `mostly` (1.0 when not given).
    pub success: bool,
    pub element_count: usize,
    pub missing_count: usize,
    pub unexpected_count: usize,
    /// Of non-missing values, or of all values for `required` (as GX does); None with no values.
    pub unexpected_percent: Option<f64>,
    pub partial_unexpected_list: Vec<String>,
    /// Every failing record's position in the batch (0-based).
    pub unexpected_index_list: Vec<usize>,
}

/// Per-record outcomes and per-rule summaries of one batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub rule_set: String,
    pub outcomes: Vec<Outcome>,
    pub rules: Vec<RuleSummary>,
}

impl Evaluator {
    /// Evaluates a batch. `unique` rules use GX semantics: every occurrence of a value that
    /// occurs more than once in the batch is unexpected (pandas `duplicated(keep=False)`).
    pub fn evaluate_batch<V: RecordView>(&self, records: &[V]) -> BatchReport {
        let rule_count = self.rule_ids().count();
        let duplicates: Vec<Option<FxHashSet<String>>> = (0..rule_count)
            .map(|index| {
                self.is_unique_rule(index)
                    .then(|| self.duplicated_keys(index, records))
            })
            .collect();
        let outcomes: Vec<Outcome> = records
            .iter()
            .map(|record| self.evaluate_in(record, &mut UniqueMode::Batch(&duplicates)))
            .collect();

        let rule_set = self.rule_set();
        let rules = rule_set
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let field = self.rule_field(index);
                let mut summary = RuleSummary {
                    rule_id: rule.id.clone(),
                    field: field.as_str().to_owned(),
                    success: true,
                    element_count: records.len(),
                    missing_count: 0,
                    unexpected_count: 0,
                    unexpected_percent: None,
                    partial_unexpected_list: Vec::new(),
                    unexpected_index_list: Vec::new(),
                };
                for (position, (record, outcome)) in records.iter().zip(&outcomes).enumerate() {
                    let mut missing = false;
                    field.visit(record, &mut |located, _| {
                        missing |= match located {
                            Located::Missing => true,
                            Located::Found(v) => v.scalar() == Scalar::Null,
                            Located::NotAnArray(_) => false,
                        };
                    });
                    summary.missing_count += usize::from(missing);
                    if let Some(violation) =
                        outcome.violations.iter().find(|v| v.rule_id == rule.id)
                    {
                        summary.unexpected_count += 1;
                        summary.unexpected_index_list.push(position);
                        if summary.partial_unexpected_list.len() < PARTIAL_LIST_LEN {
                            summary
                                .partial_unexpected_list
                                .push(violation.observed.clone().unwrap_or_else(|| "null".into()));
                        }
                    }
                }
                let counted = if matches!(rule.kind, crate::RuleKind::Required) {
                    summary.element_count
                } else {
                    summary.element_count - summary.missing_count
                };
                #[allow(clippy::cast_precision_loss)]
                if counted > 0 {
                    let percent = summary.unexpected_count as f64 * 100.0 / counted as f64;
                    summary.unexpected_percent = Some(percent);
                    summary.success = 1.0 - percent / 100.0 >= rule.mostly.unwrap_or(1.0) - 1e-12;
                }
                summary
            })
            .collect();
        BatchReport {
            rule_set: self.version_id().to_owned(),
            outcomes,
            rules,
        }
    }

    fn duplicated_keys<V: RecordView>(&self, index: usize, records: &[V]) -> FxHashSet<String> {
        let mut counts: FxHashMap<String, usize> = FxHashMap::default();
        for record in records {
            self.rule_field(index).visit(record, &mut |located, _| {
                if let Located::Found(value) = located
                    && let Some(key) = unique_key(value)
                {
                    *counts.entry(key).or_default() += 1;
                }
            });
        }
        counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect()
    }
}
