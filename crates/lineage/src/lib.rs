//! OpenLineage for Summit (DESIGN §6): the RunEvent model with the facets Summit writes,
//! job and dataset naming, [`LineageRun`] (an instance run with a child run per checkpoint
//! epoch), [`LineageEmitter`] (writes events to `lineage.events` with a retry budget), and
//! [`SpecValidator`] (checks events against the embedded 2-0-2 JSON schemas).

mod emitter;
pub mod event;
mod naming;
mod run;
mod spec;

pub use emitter::{Delivered, EmitError, LineageEmitter, RetryBudget};
pub use event::{Assertion, EventType, OffsetRange, RunEvent, SchemaField};
pub use naming::{DatasetName, JOB_NAMESPACE, job};
pub use run::{EpochInput, EpochOutput, EpochReport, LineageRun, RunEnd, SchemaUsed};
pub use spec::{SpecError, SpecValidator};
