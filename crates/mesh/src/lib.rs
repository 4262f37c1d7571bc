//! Writing to the Summit event mesh (DESIGN §3, §4, §8).
//!
//! - [`records`]: the outputs derived from one source record — mesh, quarantine, DLQ and
//!   `dq.events` records — with their headers, so every service spells them the same way.
//! - [`RecordSink`]: the port outputs leave through; a sink acknowledges into a [`Finalizer`].
//!   The Kafka producer is `summit-kafka`'s; this crate has no Kafka client in it.
//! - [`OffsetTracker`] / [`Finalizer`]: over any [`Lane`] (partition, shard) and [`Position`]
//!   (offset, sequence number), a source position becomes committable only when every output
//!   derived from it, and from every earlier position of its lane, is acknowledged.
//! - [`InFlightBudget`]: bounded in-flight records and bytes; the service pauses fetching above
//!   the limit and resumes below half of it.

mod budget;
mod finalizer;
mod headers;
mod offsets;
pub mod records;
mod sink;
mod ticket;

pub use budget::InFlightBudget;
pub use finalizer::Finalizer;
pub use headers::RecordHeaders;
pub use offsets::{Lane, OffsetTracker, PartitionKey, Position, Released};
pub use records::OutboundRecord;
pub use sink::RecordSink;
pub use ticket::{DeliveryObserver, DeliveryTicket, OutputKind};
