//! The source seam: what the core needs of one record, whatever the source (a Kafka message,
//! a Kinesis record, a test record), and of the source itself (fetch, pause).

use std::future::Future;
use std::sync::Arc;

use summit_envelope::SourceCoordinates;
use summit_mesh::{Lane, Position};
use summit_telemetry::MessagingSystem;

/// The header values the core reads: trace context and the schema-id header. A Kafka source
/// takes them from record headers; a source without headers (Kinesis) from a configured JSON
/// field of the payload, or not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carriers<'a> {
    pub traceparent: Option<&'a [u8]>,
    pub tracestate: Option<&'a [u8]>,
    /// The Confluent `__value_schema_id` header (a schema id or GUID, see `summit-schema`).
    pub value_schema_id: Option<&'a [u8]>,
}

/// One record as the source delivered it.
pub trait SourceRecord {
    type Lane: Lane;
    type Position: Position;

    /// The name routes are matched against: a topic or a stream.
    fn source_name(&self) -> &str;

    /// The record's lane. `interned` is the source name as the route table holds it (one
    /// allocation per source, not per record), `None` for a record no route matches.
    fn lane(&self, interned: Option<Arc<str>>) -> Self::Lane;

    /// Where the record is in its lane; the finalizer orders by it.
    fn position(&self) -> Self::Position;

    /// The coordinates naming the record in `summit-source` (and so its event id).
    fn coordinates(&self) -> SourceCoordinates;

    fn key(&self) -> Option<&[u8]>;

    fn payload(&self) -> &[u8];

    /// The record's own time (Kafka timestamp, Kinesis arrival time), if it has one.
    fn event_time_ms(&self) -> Option<i64>;

    fn carriers(&self) -> Carriers<'_>;

    /// Every source header in order (kept in a dead letter); empty where the source has none.
    fn headers(&self) -> Vec<(&str, Option<&[u8]>)>;

    /// For the per-record span: the messaging system, the lane label (partition or shard id)
    /// and the Kafka offset where there is one.
    fn span_fields(&self) -> SpanFields;
}

/// A record's span attributes that depend on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanFields {
    pub system: MessagingSystem,
    pub lane: String,
    pub offset: Option<i64>,
}

/// Key + payload bytes of a record: what the in-flight budget and the lineage counts weigh.
pub fn record_bytes(record: &impl SourceRecord) -> u64 {
    (record.payload().len() + record.key().map_or(0, <[u8]>::len)) as u64
}

/// A source the core's run loop fetches from. `next` and `set_paused` take `&self` because the
/// record borrows the source (an rdkafka message borrows its consumer).
pub trait Source: Send + Sync {
    type Lane: Lane;
    type Position: Position;
    type Record<'a>: SourceRecord<Lane = Self::Lane, Position = Self::Position> + Send + Sync
    where
        Self: 'a;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The next record. An error is logged and fetching goes on (a transient fetch error);
    /// a source that cannot go on at all stops the run through its `fatal` future instead.
    fn next(&self) -> impl Future<Output = Result<Self::Record<'_>, Self::Error>> + Send;

    /// Stops or resumes fetching on every lane the source holds now.
    fn set_paused(&self, paused: bool);

    /// Bumped whenever the source's lanes change (a rebalance, a lease taken): a paused
    /// source must pause the new lanes too.
    fn generation(&self) -> u64 {
        0
    }

    /// How many lanes a pause covers now (the `summit_partitions_paused` gauge).
    fn lanes(&self) -> usize;
}
