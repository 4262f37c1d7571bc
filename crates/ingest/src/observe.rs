//! The observer seam: every routed or dead-lettered source record is told to each observer
//! (metrics, lineage, tickets, per-rule counts) on the consuming task, before its outputs are
//! sent. Observers are source-agnostic: a record is named by its lane and position.

use std::sync::Arc;
use std::time::Duration;

use dq_rules::{Outcome, Severity, Verdict};
use summit_envelope::headers::DlqErrorKind;
use summit_envelope::now_millis;
use summit_mesh::{DeliveryObserver, DeliveryTicket, Lane, OutputKind, PartitionKey, Position};
use summit_telemetry::Metrics;
use summit_tickets::FailureTicketing;

/// What happened to one source record, for metrics and auto-ticketing.
#[derive(Debug, Clone, Copy)]
pub enum RecordOutcome<'a> {
    Routed(&'a Outcome),
    DeadLettered(DlqErrorKind),
}

/// One source record as the observers see it.
#[derive(Debug, Clone, Copy)]
pub struct ObservedRecord<'a, L = PartitionKey, P = i64> {
    pub lane: &'a L,
    pub position: &'a P,
    /// Key + value bytes.
    pub bytes: u64,
    /// `None` when no route matched the source.
    pub dataset: Option<&'a str>,
    pub event_id: &'a str,
    /// The `summit-schema` value, when the record was decoded.
    pub schema: Option<&'a str>,
    pub outcome: RecordOutcome<'a>,
}

/// Told about every routed or dead-lettered record.
pub trait OutcomeObserver<L = PartitionKey, P = i64>: Send + Sync + std::fmt::Debug {
    fn observe(&self, record: &ObservedRecord<'_, L, P>);
}

/// Several observers behind one, each told in turn.
#[derive(Debug)]
pub struct ObserverSet<L = PartitionKey, P = i64>(pub Vec<Arc<dyn OutcomeObserver<L, P>>>);

impl<L, P> Default for ObserverSet<L, P> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<L: Lane, P: Position> OutcomeObserver<L, P> for ObserverSet<L, P> {
    fn observe(&self, record: &ObservedRecord<'_, L, P>) {
        for observer in &self.0 {
            observer.observe(record);
        }
    }
}

/// `summit_records_total`, `summit_dlq_records_total` and `summit_hard_fail_total`, labelled by
/// the record's source (topic or stream).
#[derive(Debug)]
pub struct OutcomeMetrics {
    metrics: Metrics,
}

impl OutcomeMetrics {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<L: Lane, P: Position> OutcomeObserver<L, P> for OutcomeMetrics {
    fn observe(&self, record: &ObservedRecord<'_, L, P>) {
        let source = record.lane.source();
        match record.outcome {
            RecordOutcome::Routed(outcome) => {
                let label = match outcome.verdict {
                    Verdict::Pass => summit_telemetry::RecordOutcome::Pass,
                    Verdict::SoftFail => summit_telemetry::RecordOutcome::SoftFail,
                    Verdict::HardFail => summit_telemetry::RecordOutcome::HardFail,
                };
                self.metrics.record_outcome(source, label);
                if outcome.verdict == Verdict::HardFail {
                    let dataset = record.dataset.unwrap_or_default();
                    for violation in &outcome.violations {
                        if violation.severity == Severity::Hard {
                            self.metrics.record_hard_fail(dataset, &violation.rule_id);
                        }
                    }
                }
            }
            RecordOutcome::DeadLettered(kind) => {
                self.metrics
                    .record_outcome(source, summit_telemetry::RecordOutcome::Dlq);
                self.metrics.record_dlq(source, kind);
            }
        }
    }
}

/// `summit_ingest_latency_seconds`: source record timestamp to the acknowledgement of its data
/// output (mesh, quarantine or DLQ record: exactly one per source record; `dq.events` records
/// are not counted).
#[derive(Debug)]
pub struct LatencyMetrics {
    metrics: Metrics,
}

impl LatencyMetrics {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<L: Lane, P: Position> DeliveryObserver<L, P> for LatencyMetrics {
    fn delivered(&self, ticket: &DeliveryTicket<L, P>) {
        if ticket.kind == OutputKind::DqEvent {
            return;
        }
        self.metrics
            .observe_ingest_latency(ticket.lane.source(), latency_since(ticket.event_time_ms));
    }
}

/// From a source record's timestamp to now (zero for timestamps in the future).
pub fn latency_since(event_time_ms: i64) -> Duration {
    let millis = now_millis().saturating_sub(event_time_ms).max(0);
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// Counts every violated rule of a soft or hard failure towards its ticket window.
#[derive(Debug)]
pub struct TicketFeed {
    ticketing: FailureTicketing,
}

impl TicketFeed {
    pub fn new(ticketing: FailureTicketing) -> Self {
        Self { ticketing }
    }
}

impl<L: Lane, P: Position> OutcomeObserver<L, P> for TicketFeed {
    fn observe(&self, record: &ObservedRecord<'_, L, P>) {
        let (RecordOutcome::Routed(outcome), Some(dataset)) = (record.outcome, record.dataset)
        else {
            return;
        };
        // A rule can fail on several paths of one record: count the record once per rule.
        let mut last_rule: Option<&str> = None;
        for violation in &outcome.violations {
            if last_rule == Some(violation.rule_id.as_str()) {
                continue;
            }
            last_rule = Some(&violation.rule_id);
            self.ticketing
                .record_failure(dataset, &violation.rule_id, record.event_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what it was told, as (source, lane, position, outcome).
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(String, String, String, &'static str)>>);

    impl<L: Lane, P: Position> OutcomeObserver<L, P> for Recorder {
        fn observe(&self, record: &ObservedRecord<'_, L, P>) {
            let outcome = match record.outcome {
                RecordOutcome::Routed(outcome) => outcome.verdict.as_str(),
                RecordOutcome::DeadLettered(kind) => kind.as_str(),
            };
            self.0.lock().expect("lock").push((
                record.lane.source().to_string(),
                record.lane.lane_id(),
                record.position.to_string(),
                outcome,
            ));
        }
    }

    #[test]
    fn a_set_tells_every_observer_in_order() {
        let first = Arc::new(Recorder::default());
        let second = Arc::new(Recorder::default());
        let set: ObserverSet = ObserverSet(vec![first.clone(), second.clone()]);
        let pass = Outcome {
            verdict: Verdict::Pass,
            violations: Vec::new(),
            reference_version: None,
        };
        let lane = PartitionKey::new("orders", 3);
        for (position, outcome) in [
            (7, RecordOutcome::Routed(&pass)),
            (8, RecordOutcome::DeadLettered(DlqErrorKind::Oversize)),
        ] {
            set.observe(&ObservedRecord {
                lane: &lane,
                position: &position,
                bytes: 1,
                dataset: Some("d"),
                event_id: "e",
                schema: None,
                outcome,
            });
        }
        let expected = vec![
            ("orders".to_owned(), "3".to_owned(), "7".to_owned(), "pass"),
            (
                "orders".to_owned(),
                "3".to_owned(),
                "8".to_owned(),
                "oversize",
            ),
        ];
        assert_eq!(*first.0.lock().expect("lock"), expected);
        assert_eq!(*second.0.lock().expect("lock"), expected);
    }

    #[test]
    fn latency_is_never_negative() {
        assert_eq!(latency_since(now_millis() + 60_000), Duration::ZERO);
        assert!(latency_since(now_millis() - 1_500) >= Duration::from_millis(1_500));
    }
}
