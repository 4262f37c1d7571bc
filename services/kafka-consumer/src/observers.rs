//! What the pipeline's seams feed: metrics per record outcome and per acknowledged output, and
//! data-quality tickets per violated rule.

use std::time::Duration;

use dq_rules::{Severity, Verdict};
use summit_envelope::now_millis;
use summit_mesh::{DeliveryObserver, DeliveryTicket, OutputKind};
use summit_telemetry::Metrics;
use summit_tickets::FailureTicketing;

use crate::pipeline::{ObservedRecord, OutcomeObserver, RecordOutcome};

/// `summit_records_total`, `summit_dlq_records_total` and `summit_hard_fail_total`.
#[derive(Debug)]
pub struct OutcomeMetrics {
    metrics: Metrics,
}

impl OutcomeMetrics {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl OutcomeObserver for OutcomeMetrics {
    fn observe(&self, record: &ObservedRecord<'_>) {
        let source = &record.partition.topic;
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

impl DeliveryObserver for LatencyMetrics {
    fn delivered(&self, ticket: &DeliveryTicket) {
        if ticket.kind == OutputKind::DqEvent {
            return;
        }
        self.metrics
            .observe_ingest_latency(&ticket.lane.topic, latency_since(ticket.event_time_ms));
    }
}

/// From a source record's timestamp to now (zero for timestamps in the future).
pub(crate) fn latency_since(event_time_ms: i64) -> Duration {
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

impl OutcomeObserver for TicketFeed {
    fn observe(&self, record: &ObservedRecord<'_>) {
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
