//! Header names of DESIGN §3 (mesh records) and §4 (quarantine, DLQ). Values are UTF-8 strings.

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// Deterministic per source record: replays carry the same id (see [`crate::event_id`]).
pub const EVENT_ID: &str = "summit-event-id";
/// `kafka://<cluster>/<topic>/<partition>/<offset>` or
/// `kinesis://<region>/<stream>/<shard-id>/<sequence-number>`.
pub const SOURCE: &str = "summit-source";
/// `<subject>/<version>` or the registry id used to decode.
pub const SCHEMA: &str = "summit-schema";
/// `pass` | `soft_fail` | `hard_fail`.
pub const DQ: &str = "summit-dq";
/// `<name>@<hash>` of the rule set that judged the record.
pub const DQ_RULESET: &str = "summit-dq-ruleset";
/// JSON list of violations, on quarantine records.
pub const DQ_VIOLATIONS: &str = "summit-dq-violations";
pub const EVENT_TIME: &str = "summit-event-time";
pub const INGEST_TIME: &str = "summit-ingest-time";
/// DLQ: a short machine-readable kind (see [`DlqErrorKind`]).
pub const ERROR_KIND: &str = "summit-error-kind";
/// DLQ: the human-readable reason.
pub const ERROR: &str = "summit-error";
/// DLQ: epoch milliseconds when the record was rejected.
pub const FAILED_AT: &str = "summit-failed-at";
/// DLQ, on a dead letter too large for its queue and written in pieces: `<index>/<count>`,
/// the index counting from 0. Every piece carries the record's other headers unchanged.
pub const CHUNK: &str = "summit-chunk";
/// DLQ chunks: `sha256:<hex>` of the whole payload, so a tool can check the reassembly.
pub const CHUNK_DIGEST: &str = "summit-chunk-digest";

/// Why a record went to the dead-letter queue, as written in `summit-error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqErrorKind {
    /// The payload could not be decoded with its schema (bad framing, bad body).
    Undecodable,
    /// The payload names a schema id the registry does not know.
    UnknownSchema,
    /// The record is larger than the configured maximum.
    Oversize,
    /// A header the pipeline relies on is malformed (e.g. a non-UTF-8 traceparent).
    BadHeader,
}

impl DlqErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::UnknownSchema => "unknown_schema",
            Self::Oversize => "oversize",
            Self::BadHeader => "bad_header",
        }
    }
}

impl std::fmt::Display for DlqErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
