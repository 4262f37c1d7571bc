//! Deterministic data-quality rules shared by every stage.
//!
//! A [`RuleSet`] (YAML/JSON file or a Great Expectations suite) is parsed and validated once;
//! an [`Evaluator`] adds the current reference-set snapshots and evaluates decoded records
//! (`serde_json::Value` or `apache_avro::types::Value`, through [`RecordView`]) to an
//! [`Outcome`]. The outcome is a pure function of the record, the rule set's `name@hash` and the
//! reference snapshot version: rules run in id order, whatever their order in the file.
//!
//! ```no_run
//! # async fn example() -> Result<(), dq_rules::LoadError> {
//! let rules = dq_rules::RuleSet::from_path("orders.rules.yaml")?;
//! let evaluator = dq_rules::Evaluator::build(&rules).await?;
//! let record = serde_json::json!({"order_id": "o-1", "amount": 12.5});
//! let outcome = evaluator.evaluate(&record);
//! println!("{} {}", evaluator.version_id(), outcome.verdict.as_str());
//! # Ok(()) }
//! ```

mod batch;
mod error;
mod evaluator;
mod gx;
mod json;
mod path;
mod reference;
mod resolve;
mod ruleset;
mod timestamp;
mod uniqueness;
mod value;

pub use batch::{BatchReport, PARTIAL_LIST_LEN, RuleSummary};
pub use error::LoadError;
pub use evaluator::{Evaluator, Outcome, Verdict, Violation};
pub use json::JsonRecord;
pub use path::{FieldPath, MAX_WILDCARDS};
pub use reference::{ReferenceData, ReferenceError, ReferenceSnapshot, load_reference};
pub use ruleset::{
    Bound, PostgresSource, ReferenceSpec, RegoMode, RegoPolicy, Rule, RuleKind, RuleSet, Severity,
    ValueType,
};
pub use uniqueness::UniquenessTracker;
pub use value::{OBSERVED_MAX_CHARS, RecordView, Scalar};
