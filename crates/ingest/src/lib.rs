//! The ingest core (DESIGN §2): what every ingest service runs whatever its source, so the
//! pipeline is written once and a source service is an adapter.
//!
//! - [`source`]: the seam to a source ([`Source`], [`SourceRecord`]).
//! - [`route`]: a source (topic or stream) to its route — dataset, decoder, rule set — prepared
//!   and checked at start-up from [`route::RouteSpec`]s, errors naming the config key.
//! - [`classify`]: one record → its outputs (size and header checks, decode, rules, routing).
//! - [`commit`]: the commit path (finalizer → commit gate → checkpointer → metrics) used by
//!   the run loop, a revoke or lease loss, and shutdown.
//! - [`config`]: the config loader (`SUMMIT_` overrides, errors naming the key) and the
//!   sections every service shares.
//! - [`epochs`]: what lineage epochs report (rule assertions, outputs, schema), for both
//!   delivery modes and every source.
//! - [`dlq`]: DLQ overload control (budget, companion compaction).
//! - [`pipeline`]: the run loop with backpressure, commit tick and drain.
//! - [`observe`]: the observer seam ([`OutcomeObserver`]) and the observers every service has.
//! - [`rule_counts`]: the periodic per-rule counts in `dq.events`, behind a writer port.
//! - [`operations`]: metrics, readiness, the admin server, tickets and per-rule counts.
//! - [`memory`]: an in-memory source, sink and checkpointer, for the core's own pipeline tests
//!   and for adapters' unit tests.
//!
//! No Kafka or AWS client is in this crate's dependencies (`cargo tree -p summit-ingest`).

pub mod classify;
pub mod commit;
pub mod config;
pub mod dlq;
pub mod epochs;
pub mod memory;
pub mod observe;
pub mod operations;
pub mod pipeline;
pub mod route;
pub mod rule_counts;
pub mod source;
pub mod trace;

pub use classify::{Classified, Classifier, ClassifyError, ClassifySettings, DeadLettered};
pub use commit::{
    Backoff, CheckpointError, Checkpointer, CommitGate, CommitPath, CommitStopped, GateError,
};
pub use dlq::{CompactionPolicy, DlqLimits};
pub use observe::{
    LatencyMetrics, ObservedRecord, ObserverSet, OutcomeMetrics, OutcomeObserver, RecordOutcome,
    TicketFeed, latency_since,
};
pub use pipeline::{IngestPipeline, PipelineSettings, RunError, Shutdown};
pub use route::{Route, RouteError, RouteSpec, RouteTable};
pub use source::{Carriers, Source, SourceRecord, SpanFields};
