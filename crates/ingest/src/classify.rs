//! One source record → its outputs (DESIGN §4), in the steps a reader can follow:
//! route → size check → trace headers → decode → rules → outputs. Shared by every source and
//! both delivery modes, which differ only in how they send what this decides.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dq_rules::{Outcome, Verdict};
use summit_envelope::headers::DlqErrorKind;
use summit_envelope::{TraceContext, event_id, now_millis};
use summit_mesh::records::{self, Judgement, Provenance, Rejection};
use summit_mesh::{Lane, OutboundRecord, Position};
use summit_schema::{DecodedPayload, Disposition, SchemaError};
use summit_telemetry::{MessageSpan, MessagingOperation, trace_context_of};
use tracing::Instrument as _;

use crate::observe::{ObservedRecord, OutcomeObserver, RecordOutcome};
use crate::route::{Route, RouteTable};
use crate::source::{SourceRecord, record_bytes};
use crate::trace::parse_trace;

/// The `stage` of the dq.events records this classifier writes.
pub const INGEST_STAGE: &str = "ingest";

/// What the classifier needs from the service config.
#[derive(Debug, Clone)]
pub struct ClassifySettings {
    /// `limits.max_record_bytes`: larger source records are dead-lettered as `oversize`.
    pub max_record_bytes: u64,
    /// Registry retry backoff: doubles from `retry_backoff` up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Dead letters larger than this are written in chunks (the DLQ sink's record limit).
    pub dlq_max_record_bytes: Option<usize>,
}

/// One source record's outputs, decided but not yet sent.
#[derive(Debug)]
pub struct Classified<L, P> {
    pub lane: L,
    pub position: P,
    /// Key + payload bytes of the source record.
    pub bytes: u64,
    pub event_time_ms: i64,
    pub outputs: Vec<OutboundRecord>,
    /// For a dead-lettered record: its kind and its `dq.events` companion, kept apart so DLQ
    /// overload control can compact companions into summaries (DESIGN §4).
    pub dead_letter: Option<DeadLettered>,
}

/// The dead-letter side of a [`Classified`] record.
#[derive(Debug)]
pub struct DeadLettered {
    pub kind: DlqErrorKind,
    pub source_name: String,
    pub event_id: String,
    pub companion: OutboundRecord,
}

impl<L, P> Classified<L, P> {
    /// Every output, the companion last.
    pub fn into_outputs(self) -> Vec<OutboundRecord> {
        let mut outputs = self.outputs;
        outputs.extend(self.dead_letter.map(|dead| dead.companion));
        outputs
    }
}

/// Classification could not go on for any record: the service stops.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("schema registry: {0}")]
    Registry(#[source] SchemaError),
}

/// The classifier of one pipeline: its routes, limits and observers.
#[derive(Debug)]
pub struct Classifier<L: Lane, P: Position> {
    routes: RouteTable,
    settings: ClassifySettings,
    outcomes: Option<Arc<dyn OutcomeObserver<L, P>>>,
}

/// The shutdown future a classification waits on while the registry is unreachable.
pub type ShutdownRef<'a, 'f, F> = &'a mut Pin<&'f mut F>;

impl<L: Lane, P: Position> Classifier<L, P> {
    pub fn new(
        routes: RouteTable,
        settings: ClassifySettings,
        outcomes: Option<Arc<dyn OutcomeObserver<L, P>>>,
    ) -> Self {
        Self {
            routes,
            settings,
            outcomes,
        }
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// `Ok(None)`: shutdown arrived while the registry was unreachable; the record stays
    /// unfinished (it is re-read).
    pub async fn classify<R, F>(
        &self,
        record: &R,
        shutdown: ShutdownRef<'_, '_, F>,
    ) -> Result<Option<Classified<L, P>>, ClassifyError>
    where
        R: SourceRecord<Lane = L, Position = P>,
        F: Future<Output = ()>,
    {
        let facts = RecordFacts::of(record);
        let Some((interned, route)) = self.routes.resolve(record.source_name()) else {
            // Subscriptions come from the routes, so this is a source that matched a pattern
            // the source client and the regex crate read differently: dead-letter, do not guess.
            let rejected = Rejected::new(DlqErrorKind::Undecodable, "no route matches this source");
            return Ok(Some(self.reject(
                record,
                record.lane(None),
                None,
                &facts,
                None,
                rejected,
            )));
        };
        let lane = record.lane(Some(interned));
        if let Some(rejected) = self.check_size(facts.bytes) {
            return Ok(Some(self.reject(
                record,
                lane,
                Some(&route),
                &facts,
                None,
                rejected,
            )));
        }
        let carriers = record.carriers();
        let (parent, tracestate) = match parse_trace(carriers.traceparent, carriers.tracestate) {
            Ok(trace) => trace,
            Err(error) => {
                let rejected = Rejected::new(DlqErrorKind::BadHeader, error.to_string());
                return Ok(Some(self.reject(
                    record,
                    lane,
                    Some(&route),
                    &facts,
                    None,
                    rejected,
                )));
            }
        };
        let (span, context) = record_span(record, &facts.event_id, parent.as_ref());
        let traced = Traced {
            context,
            tracestate,
        };
        self.decode_and_judge(record, lane, &route, &facts, &traced, shutdown)
            .instrument(span)
            .await
    }

    fn check_size(&self, bytes: u64) -> Option<Rejected> {
        let limit = self.settings.max_record_bytes;
        (bytes > limit).then(|| {
            Rejected::new(
                DlqErrorKind::Oversize,
                format!("record is {bytes} bytes; limits.max_record_bytes is {limit}"),
            )
        })
    }

    async fn decode_and_judge<R, F>(
        &self,
        record: &R,
        lane: L,
        route: &Route,
        facts: &RecordFacts<P>,
        traced: &Traced<'_>,
        shutdown: ShutdownRef<'_, '_, F>,
    ) -> Result<Option<Classified<L, P>>, ClassifyError>
    where
        R: SourceRecord<Lane = L, Position = P>,
        F: Future<Output = ()>,
    {
        let schema_id = record.carriers().value_schema_id;
        let (schema, value) = match self
            .decode(route, record.payload(), schema_id, shutdown)
            .await
        {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return Ok(None),
            Err(DecodeFailure::Record(rejected)) => {
                return Ok(Some(self.reject(
                    record,
                    lane,
                    Some(route),
                    facts,
                    Some(traced),
                    rejected,
                )));
            }
            Err(DecodeFailure::Fatal(error)) => return Err(ClassifyError::Registry(error)),
        };
        let outcome = match &value {
            DecodedPayload::Avro(value) => route.evaluator.evaluate(value),
            DecodedPayload::Json(value) => route.evaluator.evaluate(value),
        };
        let outputs = judged_outputs(record, route, facts, traced, &schema, &outcome);
        self.observe(&ObservedRecord {
            lane: &lane,
            position: &facts.position,
            bytes: facts.bytes,
            dataset: Some(&route.dataset),
            event_id: &facts.event_id,
            schema: Some(&schema),
            outcome: RecordOutcome::Routed(&outcome),
        });
        Ok(Some(facts.classified(lane, outputs, None)))
    }

    fn observe(&self, record: &ObservedRecord<'_, L, P>) {
        if let Some(observer) = &self.outcomes {
            observer.observe(record);
        }
    }

    /// Decodes with the registry (retrying while it is unreachable) or as plain JSON.
    /// `Ok(None)`: shutdown arrived while waiting for the registry.
    async fn decode<F: Future<Output = ()>>(
        &self,
        route: &Route,
        payload: &[u8],
        schema_id: Option<&[u8]>,
        shutdown: ShutdownRef<'_, '_, F>,
    ) -> Result<Option<(String, DecodedPayload)>, DecodeFailure> {
        let Some(decoder) = self.routes.decoder().filter(|_| route.subject.is_some()) else {
            return match serde_json::from_slice(payload) {
                Ok(value) => Ok(Some((
                    UNREGISTERED_JSON.to_owned(),
                    DecodedPayload::Json(value),
                ))),
                Err(error) => Err(DecodeFailure::Record(Rejected::new(
                    DlqErrorKind::Undecodable,
                    format!("not JSON: {error}"),
                ))),
            };
        };
        let mut attempt: u32 = 0;
        loop {
            let error = match decoder.decode(payload, schema_id).await {
                Ok(decoded) => return Ok(Some((decoded.schema_header(), decoded.payload))),
                Err(error) => error,
            };
            match error.disposition() {
                Disposition::RecordLevel => {
                    return Err(DecodeFailure::Record(record_level(&error)));
                }
                Disposition::Fatal => return Err(DecodeFailure::Fatal(error)),
                Disposition::Retriable => {
                    attempt = attempt.saturating_add(1);
                    let delay = self.registry_backoff(attempt);
                    tracing::warn!(%error, attempt, "schema registry unavailable; retrying in {delay:?}");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.as_mut() => return Ok(None),
                    }
                }
            }
        }
    }

    fn registry_backoff(&self, attempt: u32) -> Duration {
        self.settings
            .retry_backoff
            .saturating_mul(1 << attempt.min(10))
            .min(self.settings.retry_backoff_max)
    }

    /// The record goes to the DLQ (whole, chunked if the DLQ needs it) with its `dq.events`
    /// companion.
    fn reject<R: SourceRecord<Lane = L, Position = P>>(
        &self,
        record: &R,
        lane: L,
        route: Option<&Route>,
        facts: &RecordFacts<P>,
        traced: Option<&Traced<'_>>,
        rejected: Rejected,
    ) -> Classified<L, P> {
        let dataset = route.map(|route| &*route.dataset);
        self.observe(&ObservedRecord {
            lane: &lane,
            position: &facts.position,
            bytes: facts.bytes,
            dataset,
            event_id: &facts.event_id,
            schema: None,
            outcome: RecordOutcome::DeadLettered(rejected.kind),
        });
        let provenance = facts.provenance(traced);
        let rejection = Rejection {
            kind: rejected.kind,
            error: &rejected.error,
            failed_at_ms: now_millis(),
        };
        let dead_letter = records::dlq_record(
            record.source_name(),
            record.key(),
            record.payload(),
            record.headers(),
            &provenance,
            &rejection,
        );
        // The whole payload is kept: a record the DLQ cannot take in one piece goes in several.
        let outputs = match self.settings.dlq_max_record_bytes {
            Some(limit) => records::chunk_dead_letter(dead_letter, limit),
            None => vec![dead_letter],
        };
        let companion = records::dlq_dq_event_record(
            record.source_name(),
            dataset,
            &provenance,
            &rejection,
            facts.event_time_ms,
        );
        let dead = DeadLettered {
            kind: rejected.kind,
            source_name: record.source_name().to_owned(),
            event_id: facts.event_id.clone(),
            companion,
        };
        facts.classified(lane, outputs, Some(dead))
    }
}

/// The `summit-schema` value of a record decoded as plain JSON (a route without a subject).
pub const UNREGISTERED_JSON: &str = "unregistered-json";

/// The mesh record, or quarantine + dq.events, or dq.events alone, by verdict.
fn judged_outputs<R: SourceRecord>(
    record: &R,
    route: &Route,
    facts: &RecordFacts<R::Position>,
    traced: &Traced<'_>,
    schema: &str,
    outcome: &Outcome,
) -> Vec<OutboundRecord> {
    let judgement = Judgement {
        verdict: outcome.verdict,
        ruleset: &route.ruleset,
        schema,
        violations: &outcome.violations,
        event_time_ms: facts.event_time_ms,
        ingest_time_ms: facts.ingest_time_ms,
    };
    let provenance = facts.provenance(Some(traced));
    let dataset = &route.dataset;
    let (key, payload) = (record.key(), record.payload());
    match outcome.verdict {
        Verdict::Pass => vec![records::mesh_record(
            dataset,
            key,
            payload,
            &provenance,
            &judgement,
        )],
        Verdict::SoftFail => vec![
            records::quarantine_record(dataset, key, payload, &provenance, &judgement),
            records::dq_event_record(dataset, INGEST_STAGE, &provenance, &judgement),
        ],
        Verdict::HardFail => vec![records::dq_event_record(
            dataset,
            INGEST_STAGE,
            &provenance,
            &judgement,
        )],
    }
}

/// What every step needs to know of the record, computed once.
struct RecordFacts<P> {
    position: P,
    source: String,
    event_id: String,
    bytes: u64,
    event_time_ms: i64,
    ingest_time_ms: i64,
}

impl<P: Clone> RecordFacts<P> {
    fn of<R: SourceRecord<Position = P>>(record: &R) -> Self {
        let ingest_time_ms = now_millis();
        let coordinates = record.coordinates();
        Self {
            position: record.position(),
            source: coordinates.to_string(),
            event_id: event_id(&coordinates).hyphenated().to_string(),
            bytes: record_bytes(record),
            event_time_ms: record.event_time_ms().unwrap_or(ingest_time_ms),
            ingest_time_ms,
        }
    }

    fn provenance<'a>(&'a self, traced: Option<&'a Traced<'a>>) -> Provenance<'a> {
        Provenance {
            event_id: &self.event_id,
            source: &self.source,
            trace: traced.map(|traced| &traced.context),
            tracestate: traced.and_then(|traced| traced.tracestate),
        }
    }

    fn classified<L>(
        &self,
        lane: L,
        outputs: Vec<OutboundRecord>,
        dead_letter: Option<DeadLettered>,
    ) -> Classified<L, P> {
        Classified {
            lane,
            position: self.position.clone(),
            bytes: self.bytes,
            event_time_ms: self.event_time_ms,
            outputs,
            dead_letter,
        }
    }
}

/// The trace context the record's outputs carry.
struct Traced<'a> {
    context: TraceContext,
    tracestate: Option<&'a str>,
}

/// Why a record is dead-lettered.
struct Rejected {
    kind: DlqErrorKind,
    error: String,
}

impl Rejected {
    fn new(kind: DlqErrorKind, error: impl Into<String>) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }
}

enum DecodeFailure {
    Record(Rejected),
    Fatal(SchemaError),
}

fn record_level(error: &SchemaError) -> Rejected {
    let kind = match error {
        SchemaError::UnknownSchemaId { .. } | SchemaError::UnknownSchemaGuid { .. } => {
            DlqErrorKind::UnknownSchema
        }
        _ => DlqErrorKind::Undecodable,
    };
    Rejected::new(kind, error.to_string())
}

/// Whether per-message spans reach an OpenTelemetry exporter, learnt from the first record's
/// span (its context is valid only when an OpenTelemetry layer recorded it). Without export the
/// span would only decorate the rare per-record log line, yet creating it (fields formatted by
/// the log layer, entered on every poll) was a visible share of the consuming thread's CPU:
/// once known to be off, records get no span and their outputs a fresh child of the source's
/// context.
static SPANS_EXPORTED: OnceLock<bool> = OnceLock::new();

/// The record's span and the context its outputs carry: the span's own with export on,
/// otherwise a fresh child of the source's context (or a new root).
fn record_span<R: SourceRecord>(
    record: &R,
    event_id: &str,
    parent: Option<&TraceContext>,
) -> (tracing::Span, TraceContext) {
    let exported = (SPANS_EXPORTED.get() != Some(&false)).then(|| {
        let fields = record.span_fields();
        let span = MessageSpan {
            system: fields.system,
            operation: MessagingOperation::Process,
            destination: record.source_name(),
            partition: Some(&fields.lane),
            offset: fields.offset,
            message_id: Some(event_id),
        }
        .start(parent);
        let context = trace_context_of(&span);
        let exported = *SPANS_EXPORTED.get_or_init(|| context.is_some());
        (span, context.filter(|_| exported))
    });
    let (span, context) = exported.unwrap_or((tracing::Span::none(), None));
    let context =
        context.unwrap_or_else(|| parent.map_or_else(TraceContext::new_root, TraceContext::child));
    (span, context)
}
