//! Telemetry shared by every Summit service (DESIGN §7): the Prometheus metrics, defined once in
//! [`Metrics`]; the admin HTTP server ([`serve`]: `/healthz`, `/readyz`, `/metrics`); and
//! [`init_tracing`], which sets up logs and, when configured, OpenTelemetry OTLP span export,
//! with [`MessageSpan`] for per-message spans that continue a record's `traceparent`.

mod admin;
mod metrics;
mod traces;

pub use admin::{AdminError, AdminServer, Readiness, ReadinessReport, router, serve};
pub use metrics::{
    LATENCY_BUCKETS_SECONDS, Metrics, MetricsError, RecordOutcome, TicketResult, WriteResult,
    text_content_type,
};
pub use traces::{
    LogFormat, MessageSpan, MessagingOperation, MessagingSystem, TracingConfig, TracingError,
    TracingGuard, init_tracing, remote_context, trace_context_of,
};
