//! An in-memory source, sink and checkpointer: the core's pipeline invariants are tested
//! against these (fast, no broker), and an adapter can unit-test its wiring with them. Lanes
//! and positions are Kafka-shaped (`PartitionKey`, `i64`) so records look like a real topic's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use summit_envelope::SourceCoordinates;
use summit_mesh::{DeliveryTicket, Finalizer, OutboundRecord, PartitionKey, RecordSink};
use summit_schema::wire::VALUE_SCHEMA_ID_HEADER;
use summit_telemetry::MessagingSystem;
use tokio::sync::Notify;

use crate::commit::{BoxFuture, CheckpointError, Checkpointer};
use crate::source::{Carriers, Source, SourceRecord, SpanFields};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One record of the in-memory source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
}

impl MemoryRecord {
    pub fn new(topic: &str, partition: i32, offset: i64, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            offset,
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    pub fn with_header(mut self, key: &str, value: &[u8]) -> Self {
        self.headers.push((key.to_owned(), Some(value.to_vec())));
        self
    }

    fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// The cluster name in a memory record's `summit-source`.
pub const MEMORY_CLUSTER: &str = "memory";

impl SourceRecord for MemoryRecord {
    type Lane = PartitionKey;
    type Position = i64;

    fn source_name(&self) -> &str {
        &self.topic
    }

    fn lane(&self, interned: Option<Arc<str>>) -> PartitionKey {
        PartitionKey {
            topic: interned.unwrap_or_else(|| self.topic.as_str().into()),
            partition: self.partition,
        }
    }

    fn position(&self) -> i64 {
        self.offset
    }

    fn coordinates(&self) -> SourceCoordinates {
        SourceCoordinates::Kafka {
            cluster: MEMORY_CLUSTER.to_owned(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn event_time_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    fn carriers(&self) -> Carriers<'_> {
        Carriers {
            traceparent: self.header(summit_envelope::headers::TRACEPARENT),
            tracestate: self.header(summit_envelope::headers::TRACESTATE),
            value_schema_id: self.header(VALUE_SCHEMA_ID_HEADER),
        }
    }

    fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
            .collect()
    }

    fn span_fields(&self) -> SpanFields {
        SpanFields {
            system: MessagingSystem::Kafka,
            lane: self.partition.to_string(),
            offset: Some(self.offset),
        }
    }
}

/// A queue of records; while paused it hands out nothing (as a paused Kafka partition).
#[derive(Debug, Default)]
pub struct MemorySource {
    queue: Mutex<VecDeque<MemoryRecord>>,
    arrived: Notify,
    paused: AtomicBool,
    pauses: AtomicU64,
    /// Records handed out while paused (must stay 0).
    fetched_while_paused: AtomicU64,
}

impl MemorySource {
    pub fn push(&self, records: impl IntoIterator<Item = MemoryRecord>) {
        lock(&self.queue).extend(records);
        self.arrived.notify_one();
    }

    pub fn remaining(&self) -> usize {
        lock(&self.queue).len()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// How many times fetching was paused.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Acquire)
    }

    pub fn fetched_while_paused(&self) -> u64 {
        self.fetched_while_paused.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("in-memory source error")]
pub struct MemorySourceError;

impl Source for MemorySource {
    type Lane = PartitionKey;
    type Position = i64;
    type Record<'a> = MemoryRecord;
    type Error = MemorySourceError;

    async fn next(&self) -> Result<MemoryRecord, MemorySourceError> {
        loop {
            let arrived = self.arrived.notified();
            if !self.is_paused()
                && let Some(record) = lock(&self.queue).pop_front()
            {
                if self.is_paused() {
                    self.fetched_while_paused.fetch_add(1, Ordering::AcqRel);
                }
                return Ok(record);
            }
            arrived.await;
        }
    }

    fn set_paused(&self, paused: bool) {
        if paused && !self.paused.swap(true, Ordering::AcqRel) {
            self.pauses.fetch_add(1, Ordering::AcqRel);
        }
        if !paused {
            self.paused.store(false, Ordering::Release);
            self.arrived.notify_one();
        }
    }

    fn lanes(&self) -> usize {
        let queue = lock(&self.queue);
        queue
            .iter()
            .map(|record| record.partition)
            .collect::<BTreeSet<_>>()
            .len()
            .max(1)
    }
}

/// An output the sink took, with its ticket.
pub type SentOutput = (OutboundRecord, DeliveryTicket<PartitionKey, i64>);

/// Acknowledges into the finalizer at once, or holds acknowledgements of chosen topics until
/// [`MemorySink::release`] (a slow or failing destination).
#[derive(Debug)]
pub struct MemorySink {
    finalizer: Arc<Finalizer>,
    sent: Mutex<Vec<SentOutput>>,
    held_topics: Mutex<BTreeSet<String>>,
    held: Mutex<Vec<DeliveryTicket<PartitionKey, i64>>>,
}

impl MemorySink {
    pub fn new(finalizer: Arc<Finalizer>) -> Self {
        Self {
            finalizer,
            sent: Mutex::default(),
            held_topics: Mutex::default(),
            held: Mutex::default(),
        }
    }

    /// Outputs to topics starting with `prefix` are written but not acknowledged until
    /// [`Self::release`].
    pub fn hold(&self, prefix: &str) {
        lock(&self.held_topics).insert(prefix.to_owned());
    }

    /// Stops holding and acknowledges everything held.
    pub fn release(&self) {
        lock(&self.held_topics).clear();
        for ticket in std::mem::take(&mut *lock(&self.held)) {
            self.finalizer.acknowledge(&ticket.lane, &ticket.position);
        }
    }

    pub fn held(&self) -> usize {
        lock(&self.held).len()
    }

    pub fn sent(&self) -> Vec<SentOutput> {
        lock(&self.sent).clone()
    }
}

impl RecordSink for MemorySink {
    async fn send(&self, record: OutboundRecord, ticket: DeliveryTicket<PartitionKey, i64>) {
        let held = lock(&self.held_topics)
            .iter()
            .any(|prefix| record.topic.starts_with(prefix.as_str()));
        lock(&self.sent).push((record, ticket.clone()));
        if held {
            lock(&self.held).push(ticket);
        } else {
            self.finalizer.acknowledge(&ticket.lane, &ticket.position);
        }
    }
}

/// Keeps every checkpoint it is given; can be told to fail.
#[derive(Debug, Default)]
pub struct MemoryCheckpointer {
    checkpoints: Mutex<Vec<Vec<(PartitionKey, i64)>>>,
    failing: AtomicBool,
}

impl MemoryCheckpointer {
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }

    /// Every checkpoint call that succeeded, in order.
    pub fn checkpoints(&self) -> Vec<Vec<(PartitionKey, i64)>> {
        lock(&self.checkpoints).clone()
    }

    /// The latest checkpointed position of each lane.
    pub fn committed(&self) -> BTreeMap<PartitionKey, i64> {
        let mut latest = BTreeMap::new();
        for checkpoint in lock(&self.checkpoints).iter() {
            for (lane, position) in checkpoint {
                latest.insert(lane.clone(), *position);
            }
        }
        latest
    }
}

#[derive(Debug, thiserror::Error)]
#[error("checkpoint store unavailable (test)")]
struct Unavailable;

impl Checkpointer<PartitionKey, i64> for MemoryCheckpointer {
    fn checkpoint<'a>(
        &'a self,
        finished: &'a [(PartitionKey, i64)],
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            if self.failing.load(Ordering::Acquire) {
                return Err(CheckpointError(Box::new(Unavailable)));
            }
            lock(&self.checkpoints).push(finished.to_vec());
            Ok(())
        })
    }
}
