//! Kafka for the Summit fleet: what every Kafka-facing service shares, so no service has its
//! own copy of a producer or a header conversion.
//!
//! - [`MeshProducer`]: an idempotent, `acks=all` producer and the mesh's [`summit_mesh::RecordSink`];
//!   acknowledgements settle source positions in a [`summit_mesh::Finalizer`], transient
//!   failures are retried, permanent ones raised in a [`PermanentFailure`].
//! - [`LineageEmitter`] / [`RenewingLineageEmitter`]: the Kafka [`summit_lineage::LineageSink`]
//!   (`lineage.events`, keyed by run id, within a retry budget).
//! - [`TransactionalProducer`]: begin / send / send offsets / commit / abort for
//!   consume-transform-produce, with fencing told apart from abortable failures.
//! - [`DqEventsWriter`]: the per-rule counts' writer to `dq.events`.
//! - [`owned_headers`] / [`record_headers`]: between [`summit_mesh::RecordHeaders`] and
//!   librdkafka's header lists.

mod dq_events;
mod headers;
mod lineage_emitter;
mod producer;
mod transactions;

pub use dq_events::DqEventsWriter;
pub use headers::{owned_headers, record_headers};
pub use lineage_emitter::{LineageEmitter, RenewingLineageEmitter};
pub use producer::{
    DeliveryFailure, MeshError, MeshProducer, PermanentFailure, ProducerSettings, Redeliveries,
    is_permanent, message_max_bytes,
};
pub use transactions::{
    FatalTransaction, TRANSACTION_CALL_TIMEOUT, TransactionFailure, TransactionRecord,
    TransactionSetupError, TransactionalProducer, TransactionalSettings, is_fencing,
};
