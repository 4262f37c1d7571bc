//! OpenLineage for Summit (DESIGN §6): the RunEvent model with the facets Summit writes,
//! job and dataset naming, [`LineageRun`] (an instance run with a child run per checkpoint
//! epoch), [`LineageSink`] (the port events are written through, with a retry budget; the Kafka
//! one is `summit-kafka`'s), and
//! [`SpecValidator`] (checks events against the embedded 2-0-2 JSON schemas).

pub mod event;
mod ledger;
mod naming;
mod run;
mod sink;
mod spec;

pub use event::{Assertion, EventType, OffsetRange, RunEvent, SchemaField};
pub use ledger::{EpochAggregate, EpochLedger, RecordNote};
pub use naming::{DatasetName, JOB_NAMESPACE, job};
pub use run::{EpochInput, EpochOutput, EpochReport, LineageRun, RunEnd, SchemaUsed};
pub use sink::{Delivered, EmitError, EmitFuture, LineageSink, RetryBudget, SinkCause};
pub use spec::{SpecError, SpecValidator};
