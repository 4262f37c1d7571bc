//! The bench's reader of the output topics: what each side wrote, counted and timed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use summit_envelope::{headers, now_millis, topics};
use summit_test_support::unique_name;

use crate::data::{Kind, SentTimes, WARMUP_KEY, kind_of, record_index};

/// What the reader saw on the output topics.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) first: Option<Instant>,
    pub(crate) last: Option<Instant>,
    /// Smallest and largest CreateTime of the counted outputs: when the pipe or the service
    /// handed its first and last output to librdkafka. Independent of the reader's own lag.
    pub(crate) first_created_ms: Option<i64>,
    pub(crate) last_created_ms: Option<i64>,
    pub(crate) accounted: u64,
    pub(crate) mesh: u64,
    pub(crate) quarantine: u64,
    pub(crate) dlq: u64,
    pub(crate) hard: u64,
    /// Reader-seen time minus the source record's timestamp, for the data records (mesh and
    /// quarantine; the raw pipe's copies of the same records) of the paced phase.
    pub(crate) latency_seen_ms: Vec<i64>,
    /// Output record's CreateTime (set when the side handed it to librdkafka) minus the source
    /// record's timestamp.
    pub(crate) latency_produced_ms: Vec<i64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Count {
    /// Every record of the topics counts once (warm-up gates).
    Records,
    /// Distinct bench records (by the index in the value, warm-up ones apart) on the raw pipe's
    /// copy topic. With `sent`: latency of the paced copies of the records the service puts on
    /// mesh or quarantine (good and soft_fail), the ones whose latency is measured there.
    Copies { sent: Option<Arc<SentTimes>> },
    /// Distinct `summit-event-id`s on mesh / quarantine / DLQ / dq.events (hard_fail only);
    /// latency of mesh and quarantine records whose source timestamp is `latency_from_ms` or
    /// later (`i64::MAX`: none).
    EventIds { latency_from_ms: i64 },
}

impl Count {
    fn measures_latency(&self) -> bool {
        match self {
            Count::Records => false,
            Count::Copies { sent } => sent.is_some(),
            Count::EventIds { latency_from_ms } => *latency_from_ms != i64::MAX,
        }
    }
}

fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Reads `topics` from the beginning on its own thread until `expected` are accounted for or
/// `timeout` passes.
pub(crate) fn spawn_reader(
    bootstrap: String,
    topics_to_read: Vec<String>,
    expected: u64,
    count: Count,
    timeout: Duration,
) -> std::thread::JoinHandle<Result<Seen>> {
    // Measuring latency, the reader answers as soon as anything is there (5 ms fetch wait).
    // Measuring throughput (rates come from output CreateTime, not from when the reader sees
    // them) it waits longer: a 5 ms reader of 16 partitions cost the shared broker ~4 µs per
    // event, charged to whichever side was running.
    let fetch_wait = if count.measures_latency() {
        "5".to_owned()
    } else {
        std::env::var("BENCH_READER_WAIT_MS").unwrap_or_else(|_| "100".to_owned())
    };
    std::thread::spawn(move || {
        let consumer = open(&bootstrap, &topics_to_read, &fetch_wait)?;
        let mut tally = Tally::new(count);
        let deadline = Instant::now() + timeout;
        while tally.seen.accounted < expected && Instant::now() < deadline {
            let Some(received) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            tally.add(&received?, Instant::now());
        }
        Ok(tally.seen)
    })
}

/// A consumer assigned every partition of `topics` from the beginning.
fn open(bootstrap: &str, topics: &[String], fetch_wait: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("bench-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait)
        .create()?;
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                list.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

struct Tally {
    count: Count,
    mesh_prefix: String,
    quarantine_prefix: String,
    dlq_prefix: String,
    ids: HashSet<String>,
    copies: HashSet<u64>,
    seen: Seen,
}

impl Tally {
    fn new(count: Count) -> Self {
        Self {
            count,
            mesh_prefix: topics::mesh(""),
            quarantine_prefix: topics::quarantine(""),
            dlq_prefix: topics::dlq(""),
            ids: HashSet::new(),
            copies: HashSet::new(),
            seen: Seen::default(),
        }
    }

    fn add(&mut self, message: &BorrowedMessage<'_>, now: Instant) {
        let created = message.timestamp().to_millis();
        let counted = match self.count {
            Count::Records => {
                self.seen.accounted += 1;
                true
            }
            Count::Copies { .. } => self.copy(message, created),
            Count::EventIds { latency_from_ms } => self.output(message, created, latency_from_ms),
        };
        if !counted {
            return;
        }
        let seen = &mut self.seen;
        seen.first.get_or_insert(now);
        seen.last = Some(now);
        if let Some(created) = created {
            seen.first_created_ms = Some(seen.first_created_ms.map_or(created, |f| f.min(created)));
            seen.last_created_ms = Some(seen.last_created_ms.map_or(created, |l| l.max(created)));
        }
    }

    /// A raw pipe copy: counted when its record was not seen before.
    fn copy(&mut self, message: &BorrowedMessage<'_>, created: Option<i64>) -> bool {
        let payload = message.payload().unwrap_or_default();
        let Some(index) = record_index(payload) else {
            return false;
        };
        let warmup = message.key() == Some(WARMUP_KEY);
        if !self.copies.insert(index | (u64::from(warmup) << 63)) {
            return false;
        }
        self.seen.accounted += 1;
        if let Count::Copies { sent: Some(sent) } = &self.count
            && !warmup
            && matches!(kind_of(index), Kind::Good | Kind::Soft)
            && let Some(source_ms) = sent.get(index)
        {
            self.seen.latency_seen_ms.push(now_millis() - source_ms);
            if let Some(produced) = created {
                self.seen.latency_produced_ms.push(produced - source_ms);
            }
        }
        true
    }

    /// A service output: counted once per event id; soft_fail `dq.events` records are not
    /// outputs of their own (the event is on the mesh).
    fn output(
        &mut self,
        message: &BorrowedMessage<'_>,
        created: Option<i64>,
        latency_from_ms: i64,
    ) -> bool {
        let topic = message.topic();
        let data = if topic.starts_with(&self.mesh_prefix) {
            self.seen.mesh += 1;
            true
        } else if topic.starts_with(&self.quarantine_prefix) {
            self.seen.quarantine += 1;
            true
        } else if topic.starts_with(&self.dlq_prefix) {
            self.seen.dlq += 1;
            false
        } else if header(message, headers::DQ) == Some("hard_fail") {
            self.seen.hard += 1;
            false
        } else {
            return false;
        };
        if let Some(id) = header(message, headers::EVENT_ID)
            && self.ids.insert(id.to_owned())
        {
            self.seen.accounted += 1;
        }
        let event_time = header(message, headers::EVENT_TIME).and_then(|v| v.parse::<i64>().ok());
        if data
            && let Some(event_time) = event_time
            && event_time >= latency_from_ms
        {
            self.seen.latency_seen_ms.push(now_millis() - event_time);
            if let Some(produced) = created {
                self.seen.latency_produced_ms.push(produced - event_time);
            }
        }
        true
    }
}

pub(crate) fn join_reader(handle: std::thread::JoinHandle<Result<Seen>>) -> Result<Seen> {
    match handle.join() {
        Ok(seen) => seen,
        Err(_) => bail!("reader thread panicked"),
    }
}

/// Events/s from the first to the last output the reader saw.
pub(crate) fn rate_seen(count: u64, seen: &Seen) -> f64 {
    match (seen.first, seen.last) {
        (Some(first), Some(last)) if last > first => count as f64 / (last - first).as_secs_f64(),
        _ => f64::NAN,
    }
}

/// Events/s from the first to the last output's CreateTime.
pub(crate) fn rate_created(count: u64, seen: &Seen) -> f64 {
    match (seen.first_created_ms, seen.last_created_ms) {
        (Some(first), Some(last)) if last > first => count as f64 * 1000.0 / (last - first) as f64,
        _ => f64::NAN,
    }
}

pub(crate) fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
