//! The port every output leaves through: the mesh producer, a dead-letter queue, a test sink.

use std::fmt::Debug;
use std::future::Future;

use crate::{DeliveryTicket, OutboundRecord, PartitionKey};

/// A destination for outputs. The sink acknowledges each output it has durably written into
/// the pipeline's [`crate::Finalizer`] (`acknowledge(&ticket.lane, &ticket.position)`), retries
/// what failed transiently, and reports a permanent failure instead of retrying it forever.
pub trait RecordSink<L = PartitionKey, P = i64>: Send + Sync + Debug {
    /// Enqueues `record`; waits while the sink's queue is full (that wait is backpressure).
    fn send(
        &self,
        record: OutboundRecord,
        ticket: DeliveryTicket<L, P>,
    ) -> impl Future<Output = ()> + Send;

    /// The largest record (key, value and headers) the sink accepts, if it has a limit: larger
    /// dead letters are written in chunks (see [`crate::records::chunk_dead_letter`]).
    fn max_record_bytes(&self) -> Option<usize> {
        None
    }
}
