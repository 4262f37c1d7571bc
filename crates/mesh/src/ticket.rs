//! What travels with each output to its sink and comes back with the acknowledgement.

use std::fmt::Debug;

use crate::PartitionKey;

/// Which kind of output a delivery belongs to (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    Mesh,
    Quarantine,
    DeadLetter,
    DqEvent,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::Quarantine => "quarantine",
            Self::DeadLetter => "dlq",
            Self::DqEvent => "dq_event",
        }
    }
}

/// Travels with each output and comes back with its acknowledgement: which source position
/// the output settles.
#[derive(Debug, Clone)]
pub struct DeliveryTicket<L = PartitionKey, P = i64> {
    pub lane: L,
    pub position: P,
    pub kind: OutputKind,
    /// Source record timestamp (epoch ms), for the ingest-latency histogram.
    pub event_time_ms: i64,
    /// Earlier failed attempts of this output.
    pub attempt: u32,
}

/// Hooks for metrics: called on the sink's delivery thread, so they must be quick.
pub trait DeliveryObserver<L = PartitionKey, P = i64>: Send + Sync + Debug {
    fn delivered(&self, _ticket: &DeliveryTicket<L, P>) {}
    fn failed(&self, _ticket: &DeliveryTicket<L, P>, _error: &dyn std::error::Error) {}
}
