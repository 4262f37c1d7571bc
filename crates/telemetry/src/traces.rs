//! Logs and traces: `tracing` with an env filter and JSON or text output, plus an OpenTelemetry
//! OTLP (http/protobuf) exporter when an endpoint is configured, and spans for messages that
//! follow the OpenTelemetry messaging semantic conventions, continued from a record's
//! `traceparent`.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use summit_envelope::TraceContext;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The standard variables that turn the OTLP exporter on when the config names no endpoint.
const OTLP_ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long dropping the guard waits for buffered spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Text,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info,summit=debug`. `RUST_LOG` wins when set; without
    /// either, `info`.
    pub filter: Option<String>,
    /// OTLP/HTTP base URL (e.g. `http://collector:4318`); spans go to `<url>/v1/traces`. Without
    /// it, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` are honoured;
    /// with none of them, no spans are exported.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter alive; dropping it flushes buffered spans (bounded by a timeout).
#[derive(Debug)]
#[must_use = "dropping the guard stops span export"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Shutdown flushes the batch; a collector that is down must not hang the exit.
            if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                eprintln!("summit-telemetry: flushing spans failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber for `service_name`. Call once, early in `main`, inside the
/// tokio runtime or outside it (the exporter uses its own thread).
pub fn init_tracing(
    service_name: &str,
    config: &TracingConfig,
) -> Result<TracingGuard, TracingError> {
    let filter = match std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(directives) => directives,
        None => config.filter.clone().unwrap_or_else(|| "info".to_owned()),
    };
    let env_filter = EnvFilter::builder()
        .parse(&filter)
        .map_err(|source| TracingError::Filter { filter, source })?;

    let provider = match otlp_endpoint(config) {
        Some(endpoint) => Some(tracer_provider(service_name, endpoint)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_owned()))
    });
    let (json_layer, text_layer) = match config.log_format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            ),
            None,
        ),
        LogFormat::Text => (None, Some(tracing_subscriber::fmt::layer())),
    };
    tracing_subscriber::registry()
        .with(env_filter)
        .with(json_layer)
        .with(text_layer)
        .with(otel_layer)
        .try_init()
        .map_err(TracingError::AlreadyInstalled)?;
    Ok(TracingGuard { provider })
}

/// `Some(None)`: export with the endpoint the exporter reads from the environment.
fn otlp_endpoint(config: &TracingConfig) -> Option<Option<String>> {
    if let Some(base) = config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        return Some(Some(format!("{}/v1/traces", base.trim_end_matches('/'))));
    }
    let from_env = OTLP_ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    from_env.then_some(None)
}

fn tracer_provider(
    service_name: &str,
    endpoint: Option<String>,
) -> Result<SdkTracerProvider, TracingError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder.build().map_err(TracingError::Exporter)?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// `messaging.system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagingSystem {
    Kafka,
    /// Not in the semantic conventions' list; `aws_kinesis` follows the spelling of `aws_sqs`.
    Kinesis,
}

impl MessagingSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Kinesis => "aws_kinesis",
        }
    }
}

/// `messaging.operation.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagingOperation {
    Receive,
    Process,
    Send,
}

impl MessagingOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Process => "process",
            Self::Send => "send",
        }
    }

    fn span_kind(self) -> &'static str {
        match self {
            Self::Receive | Self::Process => "consumer",
            Self::Send => "producer",
        }
    }
}

/// The attributes of a span about one message.
#[derive(Debug, Clone, Copy)]
pub struct MessageSpan<'a> {
    pub system: MessagingSystem,
    pub operation: MessagingOperation,
    /// Topic or stream name: `messaging.destination.name`.
    pub destination: &'a str,
    /// Kafka partition or Kinesis shard id: `messaging.destination.partition.id`.
    pub partition: Option<&'a str>,
    /// Kafka offset: `messaging.kafka.offset`.
    pub offset: Option<i64>,
    /// The record's `summit-event-id`: `messaging.message.id`.
    pub message_id: Option<&'a str>,
}

impl MessageSpan<'_> {
    /// An INFO span named `<operation> <destination>`, a child of `parent` when the record
    /// carried a trace context (the producer's span is the remote parent), else a new root.
    pub fn start(&self, parent: Option<&TraceContext>) -> Span {
        let span = tracing::info_span!(
            "message",
            otel.name = %format_args!("{} {}", self.operation.as_str(), self.destination),
            otel.kind = self.operation.span_kind(),
            messaging.system = self.system.as_str(),
            messaging.operation.type = self.operation.as_str(),
            messaging.operation.name = self.operation.as_str(),
            messaging.destination.name = self.destination,
            messaging.destination.partition.id = tracing::field::Empty,
            messaging.kafka.offset = tracing::field::Empty,
            messaging.message.id = tracing::field::Empty,
        );
        if let Some(partition) = self.partition {
            span.record("messaging.destination.partition.id", partition);
        }
        if let Some(offset) = self.offset {
            span.record("messaging.kafka.offset", offset);
        }
        if let Some(message_id) = self.message_id {
            span.record("messaging.message.id", message_id);
        }
        if let Some(parent) = parent {
            // Err only when no OpenTelemetry layer is installed: nothing to link then.
            let _ = span.set_parent(remote_context(parent));
        }
        span
    }
}

/// An OpenTelemetry context whose remote parent is `trace`.
pub fn remote_context(trace: &TraceContext) -> opentelemetry::Context {
    let span_context = SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.parent_id),
        TraceFlags::new(trace.flags),
        true,
        TraceState::default(),
    );
    opentelemetry::Context::new().with_remote_span_context(span_context)
}

/// The trace context to write into an output's `traceparent`: `span`'s own ids when spans are
/// exported, so the next stage links to this span; `None` when no OpenTelemetry layer is
/// installed (then write `parent.child()` instead).
pub fn trace_context_of(span: &Span) -> Option<TraceContext> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context.is_valid().then(|| TraceContext {
        trace_id: span_context.trace_id().to_bytes(),
        parent_id: span_context.span_id().to_bytes(),
        flags: span_context.trace_flags().to_u8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_context_keeps_the_ids() {
        let trace = TraceContext::new_root();
        let context = remote_context(&trace);
        let span = context.span();
        let span_context = span.span_context();
        assert!(span_context.is_remote());
        assert_eq!(span_context.trace_id().to_bytes(), trace.trace_id);
        assert_eq!(span_context.span_id().to_bytes(), trace.parent_id);
        assert!(span_context.is_sampled());
    }

    #[test]
    fn configured_endpoint_gets_the_traces_path() {
        let config = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318/".to_owned()),
            ..TracingConfig::default()
        };
        assert_eq!(
            otlp_endpoint(&config),
            Some(Some("http://127.0.0.1:4318/v1/traces".to_owned()))
        );
    }
}
