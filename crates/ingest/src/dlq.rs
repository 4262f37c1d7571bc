//! DLQ overload control (DESIGN §4): a poison burst must neither flood the DLQ nor `dq.events`.
//!
//! - [`DlqBudget`]: dead letters per source may use at most `records_per_second` and
//!   `bytes_per_second` (token buckets holding one second's worth). Past it the pipeline pauses
//!   the source until the bucket has refilled; nothing is dropped, and `summit_dlq_throttled`
//!   is 1 meanwhile.
//! - [`CompanionCompactor`]: every DLQ record keeps its payload, but after the first
//!   `companions_per_window` `dq.events` companions of a (source, lane, error kind) in a window,
//!   the rest are folded into one summary record per window (count, first and last event id).
//!
//! A summary is keyed by lane as well as source because it must be acknowledged before the
//! positions it covers are committed: the latest folded record of the lane holds one extra
//! pending output that the summary's delivery acknowledges (earlier folded records release
//! theirs when a later one takes over). One summary spanning lanes would need one delivery to
//! acknowledge positions in several lanes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use summit_envelope::headers::{self, DlqErrorKind};
use summit_envelope::{now_millis, topics};
use summit_mesh::{DeliveryTicket, Lane, OutboundRecord, OutputKind, Position, RecordHeaders};

/// Dead-letter rate limits of one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DlqLimits {
    pub records_per_second: f64,
    pub bytes_per_second: f64,
}

#[derive(Debug)]
struct Bucket {
    records: f64,
    bytes: f64,
    refilled_at: Instant,
}

/// Seconds' worth of budget a paused source waits to get back before it resumes.
const RESUME_RESERVE: f64 = 0.1;

/// Token buckets per source name.
#[derive(Debug)]
pub struct DlqBudget {
    limits: DlqLimits,
    buckets: HashMap<String, Bucket>,
}

impl DlqBudget {
    pub fn new(limits: DlqLimits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
        }
    }

    /// Charges one dead letter of `bytes` to `source`. `Some(wait)`: the source is over budget
    /// and should pause that long (until both buckets are back to zero).
    pub fn charge(&mut self, source: &str, bytes: u64, now: Instant) -> Option<Duration> {
        let limits = self.limits;
        let bucket = self
            .buckets
            .entry(source.to_owned())
            .or_insert_with(|| Bucket {
                records: limits.records_per_second,
                bytes: limits.bytes_per_second,
                refilled_at: now,
            });
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.records =
            (bucket.records + elapsed * limits.records_per_second).min(limits.records_per_second);
        bucket.bytes =
            (bucket.bytes + elapsed * limits.bytes_per_second).min(limits.bytes_per_second);
        bucket.refilled_at = now;
        bucket.records -= 1.0;
        bucket.bytes -= bytes as f64;
        if bucket.records >= 0.0 && bucket.bytes >= 0.0 {
            return None;
        }
        // Over budget: pause until the bucket holds a tenth of a second's worth again, so a
        // throttled source is paused in spans of at least 100 ms instead of flickering between
        // pause and resume on every record.
        let wait = ((RESUME_RESERVE - bucket.records / limits.records_per_second).max(0.0))
            .max((RESUME_RESERVE - bucket.bytes / limits.bytes_per_second).max(0.0));
        Some(Duration::from_secs_f64(wait))
    }
}

/// When companions are folded into summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Companions written one by one per (source, lane, kind) and window before folding.
    pub companions_per_window: u32,
    pub window: Duration,
}

#[derive(Debug)]
struct Window<P> {
    started: Instant,
    started_ms: i64,
    written: u32,
    folded: u64,
    first_event_id: Option<String>,
    last_event_id: String,
    /// The position holding the summary's pending output.
    holder: Option<P>,
}

/// What to do with one dead letter's companion.
#[derive(Debug, PartialEq, Eq)]
pub enum CompanionFate<P> {
    /// Write it as usual.
    Write,
    /// Folded: register the record with one more pending output (the summary's), and
    /// acknowledge the previous holder's (`release`), whose summary this one took over.
    Folded { release: Option<P> },
}

/// A summary ready to send, with the ticket that acknowledges its holder.
#[derive(Debug)]
pub struct Summary<L, P> {
    pub record: OutboundRecord,
    pub ticket: DeliveryTicket<L, P>,
    pub source: String,
    pub kind: DlqErrorKind,
    pub folded: u64,
}

type WindowKey<L> = (String, L, DlqErrorKind);

/// Companion folding per (source, lane, kind) and window.
#[derive(Debug)]
pub struct CompanionCompactor<L, P> {
    policy: CompactionPolicy,
    windows: HashMap<WindowKey<L>, Window<P>>,
}

impl<L: Lane, P: Position> CompanionCompactor<L, P> {
    pub fn new(policy: CompactionPolicy) -> Self {
        Self {
            policy,
            windows: HashMap::new(),
        }
    }

    /// Decides the companion of the dead letter at (`lane`, `position`); a window that ran out
    /// is closed first and its summary returned for sending.
    pub fn admit(
        &mut self,
        key: (&str, &L, DlqErrorKind),
        position: &P,
        event_id: &str,
        now: Instant,
    ) -> (CompanionFate<P>, Option<Summary<L, P>>) {
        let (source, lane, kind) = key;
        let owned_key = (source.to_owned(), lane.clone(), kind);
        let mut closed = None;
        if self
            .windows
            .get(&owned_key)
            .is_some_and(|window| now.duration_since(window.started) >= self.policy.window)
        {
            closed = self.close(&owned_key);
        }
        let window = self.windows.entry(owned_key).or_insert_with(|| Window {
            started: now,
            started_ms: now_millis(),
            written: 0,
            folded: 0,
            first_event_id: None,
            last_event_id: String::new(),
            holder: None,
        });
        if window.written < self.policy.companions_per_window {
            window.written += 1;
            return (CompanionFate::Write, closed);
        }
        window.folded += 1;
        window
            .first_event_id
            .get_or_insert_with(|| event_id.to_owned());
        event_id.clone_into(&mut window.last_event_id);
        let release = window.holder.replace(position.clone());
        (CompanionFate::Folded { release }, closed)
    }

    /// Summaries of every window that ran out by `now` (call on the commit tick).
    pub fn expired(&mut self, now: Instant) -> Vec<Summary<L, P>> {
        let due: Vec<_> = self
            .windows
            .iter()
            .filter(|(_, window)| now.duration_since(window.started) >= self.policy.window)
            .map(|(key, _)| key.clone())
            .collect();
        due.iter().filter_map(|key| self.close(key)).collect()
    }

    /// Summaries of every open window (at shutdown, before the final drain).
    pub fn close_all(&mut self) -> Vec<Summary<L, P>> {
        let keys: Vec<_> = self.windows.keys().cloned().collect();
        keys.iter().filter_map(|key| self.close(key)).collect()
    }

    /// Forgets released lanes' windows: their folded records are re-read by the next owner.
    pub fn forget(&mut self, lanes: &[L]) {
        self.windows.retain(|(_, lane, _), _| !lanes.contains(lane));
    }

    fn close(&mut self, key: &WindowKey<L>) -> Option<Summary<L, P>> {
        let window = self.windows.remove(key)?;
        let holder = window.holder.clone()?;
        let (source, lane, kind) = key.clone();
        let record = summary_record(&source, kind, &window);
        let ticket = DeliveryTicket {
            lane,
            position: holder,
            kind: OutputKind::DqEvent,
            event_time_ms: window.started_ms,
            attempt: 0,
        };
        Some(Summary {
            record,
            ticket,
            source,
            kind,
            folded: window.folded,
        })
    }
}

/// The `dq.events` body of a burst summary.
#[derive(Debug, Serialize)]
struct DlqSummaryEvent<'a> {
    summary: &'static str,
    source: &'a str,
    stage: &'static str,
    outcome: &'static str,
    error_kind: &'a str,
    dlq_topic: &'a str,
    count: u64,
    first_event_id: &'a str,
    last_event_id: &'a str,
    window_start: i64,
    window_end: i64,
}

/// The `summary` value that tells a burst summary from a per-record `dq.events` record.
pub const DLQ_BURST_SUMMARY: &str = "dlq_burst";

/// The header naming how many companions a summary stands for.
pub const SUMMARY_COUNT_HEADER: &str = "summit-dlq-summary-count";

fn summary_record<P>(source: &str, kind: DlqErrorKind, window: &Window<P>) -> OutboundRecord {
    let first = window.first_event_id.as_deref().unwrap_or_default();
    let dlq_topic = topics::dlq(source);
    let body = DlqSummaryEvent {
        summary: DLQ_BURST_SUMMARY,
        source,
        stage: crate::classify::INGEST_STAGE,
        outcome: "dlq",
        error_kind: kind.as_str(),
        dlq_topic: &dlq_topic,
        count: window.folded,
        first_event_id: first,
        last_event_id: &window.last_event_id,
        window_start: window.started_ms,
        window_end: now_millis(),
    };
    let mut out = RecordHeaders::with_capacity(4, 96);
    out.put(headers::ERROR_KIND, kind.as_str());
    out.put(SUMMARY_COUNT_HEADER, &window.folded.to_string());
    out.put("content-type", "application/json");
    OutboundRecord {
        kind: OutputKind::DqEvent,
        topic: topics::DQ_EVENTS.to_owned(),
        key: Some(format!("{source}/{}/{first}", kind.as_str()).into_bytes()),
        payload: serde_json::to_vec(&body).unwrap_or_default(),
        headers: out,
    }
}

#[cfg(test)]
mod tests {
    use summit_mesh::PartitionKey;

    use super::*;

    fn lane() -> PartitionKey {
        PartitionKey::new("t", 0)
    }

    #[test]
    fn the_budget_allows_one_second_then_asks_for_the_deficit() {
        let limits = DlqLimits {
            records_per_second: 10.0,
            bytes_per_second: 1e9,
        };
        let mut budget = DlqBudget::new(limits);
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(budget.charge("t", 1, start), None);
        }
        let wait = budget.charge("t", 1, start).expect("over budget");
        // The deficit of one record (100 ms) plus the 100 ms reserve.
        assert_eq!(wait, Duration::from_millis(200));
        // Half a second later five tokens came back; the deficit of one is gone.
        assert_eq!(
            budget.charge("t", 1, start + Duration::from_millis(600)),
            None
        );
        // Another source has its own bucket.
        assert_eq!(budget.charge("u", 1, start), None);
    }

    #[test]
    fn bytes_alone_can_exhaust_the_budget() {
        let mut budget = DlqBudget::new(DlqLimits {
            records_per_second: 1e6,
            bytes_per_second: 1000.0,
        });
        let now = Instant::now();
        assert_eq!(budget.charge("t", 600, now), None);
        // 500 bytes short at 1000 bytes/s, plus the 100 ms reserve.
        assert_eq!(
            budget.charge("t", 900, now),
            Some(Duration::from_millis(600))
        );
    }

    #[test]
    fn companions_past_the_first_n_fold_into_one_summary_per_window() {
        let policy = CompactionPolicy {
            companions_per_window: 2,
            window: Duration::from_secs(10),
        };
        let mut compactor: CompanionCompactor<PartitionKey, i64> = CompanionCompactor::new(policy);
        let now = Instant::now();
        let kind = DlqErrorKind::Undecodable;
        let mut fates = Vec::new();
        for position in 0..5 {
            let (fate, closed) = compactor.admit(
                ("t", &lane(), kind),
                &position,
                &format!("e{position}"),
                now,
            );
            assert!(closed.is_none());
            fates.push(fate);
        }
        assert_eq!(fates[0], CompanionFate::Write);
        assert_eq!(fates[1], CompanionFate::Write);
        assert_eq!(fates[2], CompanionFate::Folded { release: None });
        assert_eq!(fates[3], CompanionFate::Folded { release: Some(2) });
        assert_eq!(fates[4], CompanionFate::Folded { release: Some(3) });
        assert!(compactor.expired(now + Duration::from_secs(9)).is_empty());
        let summaries = compactor.expired(now + Duration::from_secs(10));
        assert_eq!(summaries.len(), 1);
        let summary = &summaries[0];
        assert_eq!((summary.folded, summary.ticket.position), (3, 4));
        let body: serde_json::Value =
            serde_json::from_slice(&summary.record.payload).expect("json");
        assert_eq!(body["count"], 3);
        assert_eq!(body["first_event_id"], "e2");
        assert_eq!(body["last_event_id"], "e4");
        assert_eq!(body["dlq_topic"], "dlq.t");
        // A new window starts over with companions written one by one.
        let (fate, _) = compactor.admit(
            ("t", &lane(), kind),
            &5,
            "e5",
            now + Duration::from_secs(11),
        );
        assert_eq!(fate, CompanionFate::Write);
    }

    #[test]
    fn a_window_with_nothing_folded_has_no_summary() {
        let mut compactor: CompanionCompactor<PartitionKey, i64> =
            CompanionCompactor::new(CompactionPolicy {
                companions_per_window: 5,
                window: Duration::from_secs(1),
            });
        let now = Instant::now();
        compactor.admit(("t", &lane(), DlqErrorKind::Oversize), &0, "e0", now);
        assert!(compactor.close_all().is_empty());
    }
}
