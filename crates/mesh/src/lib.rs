//! Writing to the Summit event mesh (DESIGN §3, §4, §8).
//!
//! - [`records`]: the outputs derived from one source record — mesh, quarantine, DLQ and
//!   `dq.events` records — with their headers, so every service spells them the same way.
//! - [`MeshProducer`]: an idempotent, `acks=all` producer whose acknowledgements go straight into
//!   a [`Finalizer`], with failed deliveries handed back for a retry (never dropped).
//! - [`OffsetTracker`] / [`Finalizer`]: a source offset becomes committable only when every
//!   output derived from it, and from every earlier offset of its partition, is acknowledged.
//! - [`InFlightBudget`]: bounded in-flight records and bytes; the service pauses fetching above
//!   the limit and resumes below half of it.

mod budget;
mod finalizer;
mod offsets;
mod producer;
pub mod records;

pub use budget::InFlightBudget;
pub use finalizer::Finalizer;
pub use offsets::{OffsetTracker, PartitionKey, Released};
pub use producer::{
    DeliveryFailure, DeliveryObserver, DeliveryTicket, MeshError, MeshProducer, OutputKind,
    ProducerSettings,
};
pub use records::OutboundRecord;
