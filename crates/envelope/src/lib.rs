//! The contract of a record on the Summit event mesh (DESIGN §3 and §4): header names, the
//! deterministic `summit-event-id`, `summit-source` coordinates, W3C trace context, and the names
//! of the topics every stage writes to. Services and libraries use these instead of spelling the
//! strings themselves, so a contract change is one edit.

pub mod headers;
mod source;
pub mod topics;
mod trace;

pub use source::{SourceCoordinates, SourceParseError, event_id};
pub use trace::{TraceContext, TraceParseError};

/// Epoch milliseconds now: the format of `summit-ingest-time` and `summit-failed-at`.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
