//! Every metric a Summit service exports, with its labels, defined once (DESIGN §7).
//!
//! A service builds one [`Metrics`] with its own name; the `service` label is a constant label
//! fixed at construction, so call sites only pass what varies. Each `Metrics` owns its registry
//! (never the process-global default one), so tests and several services in one process do not
//! see each other's series.

use std::time::Duration;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use summit_envelope::headers::DlqErrorKind;

/// What happened to one source record: the `outcome` label of `summit_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordOutcome {
    Pass,
    SoftFail,
    HardFail,
    /// Could not be decoded or delivered; written to the dead-letter queue.
    Dlq,
}

impl RecordOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::SoftFail => "soft_fail",
            Self::HardFail => "hard_fail",
            Self::Dlq => "dlq",
        }
    }
}

/// Whether a write (lineage event, offset commit) succeeded: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteResult {
    Ok,
    Error,
}

impl WriteResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

impl<T, E> From<&Result<T, E>> for WriteResult {
    fn from(result: &Result<T, E>) -> Self {
        if result.is_ok() {
            Self::Ok
        } else {
            Self::Error
        }
    }
}

/// What became of a data-quality ticket: the `result` label of `summit_tickets_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketResult {
    /// The webhook accepted it.
    Sent,
    /// The webhook refused it or the retries ran out.
    Failed,
    /// The ticket queue was full; dropped so ingestion is never blocked by the webhook.
    Dropped,
}

impl TicketResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

/// Latency buckets from 0.5 ms to 10 s in 1-1.5-2-3-5-7 steps per decade: no bound is more than
/// 5/3 of the previous one, so a p50 or p99 between 1 ms and 1 s reads to within one step.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1,
    0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be defined or registered (a bad name or a duplicate): a programming
    /// error, fatal at start-up.
    #[error("cannot register metric: {0}")]
    Register(#[source] prometheus::Error),
    #[error("cannot encode metrics: {0}")]
    Encode(#[source] prometheus::Error),
}

/// The metrics of one service. Cheap to clone: clones share the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    service: String,
    registry: Registry,
    records: IntCounterVec,
    ingest_latency: HistogramVec,
    consumer_lag: IntGaugeVec,
    dlq_records: IntCounterVec,
    lineage_events: IntCounterVec,
    lineage_blocked: IntGauge,
    hard_fail: IntCounterVec,
    tickets: IntCounterVec,
    inflight_records: IntGauge,
    inflight_bytes: IntGauge,
    partitions_paused: IntGauge,
    commits: IntCounterVec,
    dlq_throttled: IntGaugeVec,
    dlq_throttle_pauses: IntCounterVec,
    dlq_companions_compacted: IntCounterVec,
    dlq_summaries: IntCounterVec,
}

impl Metrics {
    /// Defines every metric with `service` as a constant label, in a registry of its own.
    pub fn new(service: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("service", service);
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(opts(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::with_opts(opts(name, help))?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let build = || -> Result<Self, prometheus::Error> {
            let ingest_latency = HistogramVec::new(
                HistogramOpts::new(
                    "summit_ingest_latency_seconds",
                    "Time from the source append to the mesh acknowledgement.",
                )
                .const_label("service", service)
                .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
                &["source"],
            )?;
            registry.register(Box::new(ingest_latency.clone()))?;
            let consumer_lag = IntGaugeVec::new(
                opts(
                    "summit_consumer_lag",
                    "Records between the committed position and the end, per owned partition or shard.",
                ),
                &["source", "partition"],
            )?;
            registry.register(Box::new(consumer_lag.clone()))?;
            let dlq_throttled = IntGaugeVec::new(
                opts(
                    "summit_dlq_throttled",
                    "1 while a source is paused because its dead letters exceed the DLQ budget (alert on this).",
                ),
                &["source"],
            )?;
            registry.register(Box::new(dlq_throttled.clone()))?;
            Ok(Self {
                service: service.to_owned(),
                records: counter(
                    "summit_records_total",
                    "Source records by data-quality outcome (pass, soft_fail, hard_fail, dlq).",
                    &["source", "outcome"],
                )?,
                ingest_latency,
                consumer_lag,
                dlq_records: counter(
                    "summit_dlq_records_total",
                    "Records written to a dead-letter queue, by error kind.",
                    &["source", "kind"],
                )?,
                lineage_events: counter(
                    "summit_lineage_events_total",
                    "OpenLineage events written to lineage.events, by result.",
                    &["result"],
                )?,
                lineage_blocked: gauge(
                    "summit_lineage_blocked",
                    "1 while lineage cannot be written and source offsets are held back.",
                )?,
                hard_fail: counter(
                    "summit_hard_fail_total",
                    "Records dropped by a hard_fail rule, per dataset and rule (alert on this).",
                    &["dataset", "rule"],
                )?,
                tickets: counter(
                    "summit_tickets_total",
                    "Data-quality tickets, by dataset, rule and result (sent, failed, dropped).",
                    &["dataset", "rule", "result"],
                )?,
                inflight_records: gauge(
                    "summit_inflight_records",
                    "Records fetched but not yet acknowledged downstream.",
                )?,
                inflight_bytes: gauge(
                    "summit_inflight_bytes",
                    "Payload bytes fetched but not yet acknowledged downstream.",
                )?,
                partitions_paused: gauge(
                    "summit_partitions_paused",
                    "Source partitions or shards paused by backpressure.",
                )?,
                commits: counter(
                    "summit_commit_total",
                    "Source position commits, by result.",
                    &["result"],
                )?,
                dlq_throttled,
                dlq_throttle_pauses: counter(
                    "summit_dlq_throttle_pauses_total",
                    "Times a source was paused for exceeding its DLQ budget (records/s or bytes/s).",
                    &["source"],
                )?,
                dlq_companions_compacted: counter(
                    "summit_dlq_companions_compacted_total",
                    "dq.events companions of dead letters folded into a burst summary instead of written one by one.",
                    &["source", "kind"],
                )?,
                dlq_summaries: counter(
                    "summit_dlq_summaries_total",
                    "Burst summary records written to dq.events, by source and error kind.",
                    &["source", "kind"],
                )?,
                registry: registry.clone(),
            })
        };
        build().map_err(MetricsError::Register)
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The registry, for a service that wants to add a metric of its own (prefer adding it here).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn record_outcome(&self, source: &str, outcome: RecordOutcome) {
        self.records
            .with_label_values(&[source, outcome.as_str()])
            .inc();
    }

    /// Source append time to mesh acknowledgement for one record.
    pub fn observe_ingest_latency(&self, source: &str, latency: Duration) {
        self.ingest_latency
            .with_label_values(&[source])
            .observe(latency.as_secs_f64());
    }

    /// Lag of a partition (or shard) this instance owns.
    pub fn set_consumer_lag(&self, source: &str, partition: &str, lag: i64) {
        self.consumer_lag
            .with_label_values(&[source, partition])
            .set(lag);
    }

    /// Forgets a partition's lag series when the partition is revoked, so a dashboard summing lag
    /// over instances does not count a partition twice after a rebalance.
    pub fn remove_partition(&self, source: &str, partition: &str) {
        // Absent already (never reported) is fine: the series is gone either way.
        let _ = self.consumer_lag.remove_label_values(&[source, partition]);
    }

    pub fn record_dlq(&self, source: &str, kind: DlqErrorKind) {
        self.dlq_records
            .with_label_values(&[source, kind.as_str()])
            .inc();
    }

    pub fn record_lineage_event(&self, result: WriteResult) {
        self.lineage_events
            .with_label_values(&[result.as_str()])
            .inc();
    }

    pub fn set_lineage_blocked(&self, blocked: bool) {
        self.lineage_blocked.set(i64::from(blocked));
    }

    pub fn record_hard_fail(&self, dataset: &str, rule: &str) {
        self.hard_fail.with_label_values(&[dataset, rule]).inc();
    }

    pub fn record_ticket(&self, dataset: &str, rule: &str, result: TicketResult) {
        self.tickets
            .with_label_values(&[dataset, rule, result.as_str()])
            .inc();
    }

    pub fn set_inflight(&self, records: i64, bytes: i64) {
        self.inflight_records.set(records);
        self.inflight_bytes.set(bytes);
    }

    pub fn set_partitions_paused(&self, paused: i64) {
        self.partitions_paused.set(paused);
    }

    /// `summit_dlq_throttled{source}` to 1 (paused over the DLQ budget) or 0; a pause also
    /// counts in `summit_dlq_throttle_pauses_total`.
    pub fn set_dlq_throttled(&self, source: &str, throttled: bool) {
        self.dlq_throttled
            .with_label_values(&[source])
            .set(i64::from(throttled));
        if throttled {
            self.dlq_throttle_pauses.with_label_values(&[source]).inc();
        }
    }

    /// One dead letter's `dq.events` companion folded into a burst summary.
    pub fn record_dlq_companion_compacted(&self, source: &str, kind: DlqErrorKind) {
        self.dlq_companions_compacted
            .with_label_values(&[source, kind.as_str()])
            .inc();
    }

    /// A burst summary written to `dq.events`.
    pub fn record_dlq_summary(&self, source: &str, kind: DlqErrorKind) {
        self.dlq_summaries
            .with_label_values(&[source, kind.as_str()])
            .inc();
    }

    pub fn record_commit(&self, result: WriteResult) {
        self.commits.with_label_values(&[result.as_str()]).inc();
    }

    /// Every series in the Prometheus text exposition format (version 0.0.4).
    pub fn encode_text(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut text)
            .map_err(MetricsError::Encode)?;
        Ok(text)
    }
}

/// The content type of [`Metrics::encode_text`].
pub fn text_content_type() -> String {
    TextEncoder::new().format_type().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn outcomes_are_counted_per_source_with_the_service_label() {
        let metrics = Metrics::new("kafka-consumer").expect("metrics");
        metrics.record_outcome("orders", RecordOutcome::Pass);
        metrics.record_outcome("orders", RecordOutcome::Pass);
        metrics.record_outcome("orders", RecordOutcome::Dlq);
        let text = metrics.encode_text().expect("encode");
        assert_eq!(
            line_value(
                &text,
                r#"summit_records_total{outcome="pass",service="kafka-consumer",source="orders"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"summit_records_total{outcome="dlq",service="kafka-consumer",source="orders"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn revoked_partition_lag_disappears() {
        let metrics = Metrics::new("svc").expect("metrics");
        metrics.set_consumer_lag("orders", "0", 10);
        metrics.set_consumer_lag("orders", "1", 20);
        metrics.remove_partition("orders", "0");
        // Removing twice (a revoke after a lost partition) must not panic.
        metrics.remove_partition("orders", "0");
        let text = metrics.encode_text().expect("encode");
        assert!(!text.contains(r#"partition="0""#), "{text}");
        assert_eq!(
            line_value(
                &text,
                r#"summit_consumer_lag{partition="1",service="svc",source="orders"}"#
            ),
            Some(20.0)
        );
    }

    #[test]
    fn two_services_in_one_process_do_not_share_series() {
        let a = Metrics::new("a").expect("a");
        let b = Metrics::new("b").expect("b");
        a.set_lineage_blocked(true);
        assert!(
            a.encode_text()
                .expect("a")
                .contains("summit_lineage_blocked{service=\"a\"} 1")
        );
        assert!(!b.encode_text().expect("b").contains("service=\"a\""));
    }

    #[test]
    fn latency_lands_in_a_bucket_within_a_step_of_its_value() {
        let metrics = Metrics::new("svc").expect("metrics");
        metrics.observe_ingest_latency("orders", Duration::from_millis(4));
        let text = metrics.encode_text().expect("encode");
        let bucket = |le: &str| {
            line_value(
                &text,
                &format!(
                    r#"summit_ingest_latency_seconds_bucket{{service="svc",source="orders",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.003"), Some(0.0));
        assert_eq!(bucket("0.005"), Some(1.0));
    }

    #[test]
    fn buckets_rise_by_at_most_five_thirds() {
        for pair in LATENCY_BUCKETS_SECONDS.windows(2) {
            assert!(pair[1] > pair[0], "{pair:?}");
            if pair[0] >= 0.001 {
                assert!(pair[1] / pair[0] <= 5.0 / 3.0 + 1e-9, "{pair:?}");
            }
        }
    }

    #[test]
    fn write_result_follows_a_result() {
        let ok: Result<(), ()> = Ok(());
        let err: Result<(), ()> = Err(());
        assert_eq!(WriteResult::from(&ok), WriteResult::Ok);
        assert_eq!(WriteResult::from(&err), WriteResult::Error);
    }
}
