//! The outputs derived from one source record, with the headers of DESIGN §3 and §4.
//!
//! Every output carries the source record's `summit-event-id` and `summit-source` (DESIGN §4:
//! any source record can be accounted for from the outputs alone). Values are the payload bytes
//! as received: nothing is re-encoded.

use dq_rules::{Verdict, Violation};
use serde::Serialize;
use sha2::{Digest, Sha256};
use summit_envelope::headers::DlqErrorKind;
use summit_envelope::{TraceContext, headers, topics};

use crate::{OutputKind, RecordHeaders};

/// A record ready to be produced. It is owned so that a failed delivery can be sent again.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    pub kind: OutputKind,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: RecordHeaders,
}

/// Who a derived record descends from: the same on every output of one source record.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// Hyphenated UUID from [`summit_envelope::event_id`].
    pub event_id: &'a str,
    /// The `summit-source` URI.
    pub source: &'a str,
    /// The context this stage writes: the source's continued (child) or a new root.
    pub trace: Option<&'a TraceContext>,
    /// Passed through unchanged from the source when present.
    pub tracestate: Option<&'a str>,
}

/// How a decoded record was judged.
#[derive(Debug, Clone, Copy)]
pub struct Judgement<'a> {
    pub verdict: Verdict,
    /// `<name>@<hash>` of the rule set.
    pub ruleset: &'a str,
    /// The `summit-schema` value: `<subject>/<version>` or the registry id.
    pub schema: &'a str,
    pub violations: &'a [Violation],
    /// Epoch milliseconds of the source record's timestamp.
    pub event_time_ms: i64,
    pub ingest_time_ms: i64,
}

fn put(mut headers: RecordHeaders, key: &str, value: &str) -> RecordHeaders {
    headers.put(key, value);
    headers
}

/// `trace`'s W3C `traceparent` text (`00-<trace id>-<parent id>-<flags>`, lower-case hex),
/// written into a stack buffer: `TraceContext`'s `Display` allocates per byte, and this runs
/// for every output. A unit test pins it to that `Display`.
fn traceparent<'b>(trace: &TraceContext, out: &'b mut [u8; 55]) -> &'b str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let fields: [&[u8]; 3] = [&trace.trace_id, &trace.parent_id, &[trace.flags]];
    out[..2].copy_from_slice(b"00");
    let mut at = 2;
    for field in fields {
        out[at] = b'-';
        at += 1;
        for byte in field {
            out[at] = HEX[usize::from(byte >> 4)];
            out[at + 1] = HEX[usize::from(byte & 0x0f)];
            at += 2;
        }
    }
    // Only ASCII hex digits and dashes were written.
    std::str::from_utf8(&out[..at]).unwrap_or_default()
}

/// `value` in decimal, written into a stack buffer (header values are formatted per output).
fn decimal(value: i64, out: &mut [u8; 20]) -> &str {
    let mut at = out.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        // `rest % 10` is a single digit.
        out[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        out[at] = b'-';
    }
    // Only ASCII digits and a sign were written.
    std::str::from_utf8(&out[at..]).unwrap_or_default()
}

fn put_decimal(headers: RecordHeaders, key: &str, value: i64) -> RecordHeaders {
    put(headers, key, decimal(value, &mut [0; 20]))
}

fn provenance_headers(capacity: usize, provenance: &Provenance<'_>) -> RecordHeaders {
    // About 40 bytes a header on average (the traceparent alone is 66).
    let mut out = RecordHeaders::with_capacity(capacity, capacity * 40);
    if let Some(trace) = provenance.trace {
        out = put(out, headers::TRACEPARENT, traceparent(trace, &mut [0; 55]));
    }
    if let Some(state) = provenance.tracestate {
        out = put(out, headers::TRACESTATE, state);
    }
    out = put(out, headers::EVENT_ID, provenance.event_id);
    put(out, headers::SOURCE, provenance.source)
}

fn judgement_headers(mut out: RecordHeaders, judgement: &Judgement<'_>) -> RecordHeaders {
    out = put(out, headers::SCHEMA, judgement.schema);
    out = put(out, headers::DQ, judgement.verdict.as_str());
    out = put(out, headers::DQ_RULESET, judgement.ruleset);
    out = put_decimal(out, headers::EVENT_TIME, judgement.event_time_ms);
    put_decimal(out, headers::INGEST_TIME, judgement.ingest_time_ms)
}

/// A `pass` record for `mesh.<dataset>`.
pub fn mesh_record(
    dataset: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    provenance: &Provenance<'_>,
    judgement: &Judgement<'_>,
) -> OutboundRecord {
    let headers = judgement_headers(provenance_headers(10, provenance), judgement);
    OutboundRecord {
        kind: OutputKind::Mesh,
        topic: topics::mesh(dataset),
        key: key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers,
    }
}

/// A `soft_fail` record for `dq.quarantine.<dataset>`, with `summit-dq-violations`.
pub fn quarantine_record(
    dataset: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    provenance: &Provenance<'_>,
    judgement: &Judgement<'_>,
) -> OutboundRecord {
    let mut headers = judgement_headers(provenance_headers(11, provenance), judgement);
    headers = put(
        headers,
        headers::DQ_VIOLATIONS,
        &violations_json(judgement.violations),
    );
    OutboundRecord {
        kind: OutputKind::Quarantine,
        topic: topics::quarantine(dataset),
        key: key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers,
    }
}

fn violations_json(violations: &[Violation]) -> String {
    // Serializing plain strings and enums into a String cannot fail; the fallback only keeps
    // the header well-formed if that ever changes.
    serde_json::to_string(violations).unwrap_or_else(|_| "[]".to_owned())
}

/// Why a record is dead-lettered, as written in the DLQ headers.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    pub kind: DlqErrorKind,
    pub error: &'a str,
    pub failed_at_ms: i64,
}

/// A record for `dlq.<source-topic>`: the source's own headers first (so a replay sees what
/// the source sent, minus the ones this stage sets), then DESIGN §4's error headers.
pub fn dlq_record<'h>(
    source_topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    source_headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    provenance: &Provenance<'_>,
    rejection: &Rejection<'_>,
) -> OutboundRecord {
    let mut out = RecordHeaders::new();
    for (name, value) in source_headers {
        if [headers::EVENT_ID, headers::SOURCE].contains(&name) {
            continue;
        }
        out.push(name, value);
    }
    out = put(out, headers::EVENT_ID, provenance.event_id);
    out = put(out, headers::SOURCE, provenance.source);
    out = put(out, headers::ERROR_KIND, rejection.kind.as_str());
    // Header values are bounded so a huge error text cannot make the DLQ record undeliverable.
    let error: String = rejection.error.chars().take(4096).collect();
    out = put(out, headers::ERROR, &error);
    out = put_decimal(out, headers::FAILED_AT, rejection.failed_at_ms);
    OutboundRecord {
        kind: OutputKind::DeadLetter,
        topic: topics::dlq(source_topic),
        key: key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers: out,
    }
}

/// Splits a dead letter that its sink cannot take whole (`max_record_bytes`, key + value +
/// headers) into pieces that fit: each piece keeps the key and every header and adds
/// `summit-chunk` (`<index>/<count>`) and `summit-chunk-digest` (SHA-256 of the whole
/// payload). A record that fits, or any other kind of output, comes back unchanged. Nothing of
/// the payload is dropped: concatenating the pieces' values in index order gives it back.
pub fn chunk_dead_letter(record: OutboundRecord, max_record_bytes: usize) -> Vec<OutboundRecord> {
    let fixed = record.key.as_ref().map_or(0, Vec::len) + record.headers.byte_len();
    if record.kind != OutputKind::DeadLetter || fixed + record.payload.len() <= max_record_bytes {
        return vec![record];
    }
    // Room for the two chunk headers (index/count and a 71-byte digest) and the broker's own
    // per-record overhead, which counts towards its limit too.
    const CHUNK_OVERHEAD: usize = 256;
    let room = max_record_bytes
        .saturating_sub(fixed + CHUNK_OVERHEAD)
        .max(1024);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&record.payload)));
    let count = record.payload.len().div_ceil(room);
    record
        .payload
        .chunks(room)
        .enumerate()
        .map(|(index, piece)| {
            let mut headers = record.headers.clone();
            headers.put(headers::CHUNK, &format!("{index}/{count}"));
            headers.put(headers::CHUNK_DIGEST, &digest);
            OutboundRecord {
                kind: OutputKind::DeadLetter,
                topic: record.topic.clone(),
                key: record.key.clone(),
                payload: piece.to_vec(),
                headers,
            }
        })
        .collect()
}

/// The JSON body of a `dq.events` validation result.
#[derive(Debug, Serialize)]
struct DqEvent<'a> {
    event_id: &'a str,
    source: &'a str,
    dataset: &'a str,
    stage: &'a str,
    outcome: &'a str,
    ruleset: &'a str,
    schema: &'a str,
    violations: &'a [Violation],
    event_time: i64,
    ingest_time: i64,
}

/// One `dq.events` record for a non-pass record, keyed by event id. `stage` is `ingest` or
/// `post_transform` (DESIGN §5).
pub fn dq_event_record(
    dataset: &str,
    stage: &str,
    provenance: &Provenance<'_>,
    judgement: &Judgement<'_>,
) -> OutboundRecord {
    let body = DqEvent {
        event_id: provenance.event_id,
        source: provenance.source,
        dataset,
        stage,
        outcome: judgement.verdict.as_str(),
        ruleset: judgement.ruleset,
        schema: judgement.schema,
        violations: judgement.violations,
        event_time: judgement.event_time_ms,
        ingest_time: judgement.ingest_time_ms,
    };
    let payload = serde_json::to_vec(&body).unwrap_or_default();
    let headers = put(
        judgement_headers(provenance_headers(10, provenance), judgement),
        "content-type",
        "application/json",
    );
    OutboundRecord {
        kind: OutputKind::DqEvent,
        topic: topics::DQ_EVENTS.to_owned(),
        key: Some(provenance.event_id.as_bytes().to_vec()),
        payload,
        headers,
    }
}

/// The JSON body of a `dq.events` record for a dead-lettered record.
#[derive(Debug, Serialize)]
struct DlqEvent<'a> {
    event_id: &'a str,
    source: &'a str,
    /// Absent when no route matched the source topic.
    dataset: Option<&'a str>,
    stage: &'a str,
    outcome: &'a str,
    error_kind: &'a str,
    error: &'a str,
    /// The `dlq.<source-topic>` record holding the payload.
    dlq_topic: &'a str,
    event_time: i64,
    ingest_time: i64,
}

/// The `dq.events` record of a dead-lettered source record (outcome `dlq`, with the error kind
/// and reason), so every non-pass record can be found in `dq.events` (DESIGN §4, §5). It has no
/// `summit-dq` header: that header only takes the rule verdicts `pass`/`soft_fail`/`hard_fail`.
pub fn dlq_dq_event_record(
    source_topic: &str,
    dataset: Option<&str>,
    provenance: &Provenance<'_>,
    rejection: &Rejection<'_>,
    event_time_ms: i64,
) -> OutboundRecord {
    let error: String = rejection.error.chars().take(4096).collect();
    let dlq_topic = topics::dlq(source_topic);
    let body = DlqEvent {
        event_id: provenance.event_id,
        source: provenance.source,
        dataset,
        stage: "ingest",
        outcome: "dlq",
        error_kind: rejection.kind.as_str(),
        error: &error,
        dlq_topic: &dlq_topic,
        event_time: event_time_ms,
        ingest_time: rejection.failed_at_ms,
    };
    let payload = serde_json::to_vec(&body).unwrap_or_default();
    let mut out = provenance_headers(7, provenance);
    out = put(out, headers::ERROR_KIND, rejection.kind.as_str());
    out = put_decimal(out, headers::EVENT_TIME, event_time_ms);
    out = put_decimal(out, headers::INGEST_TIME, rejection.failed_at_ms);
    out = put(out, "content-type", "application/json");
    OutboundRecord {
        kind: OutputKind::DqEvent,
        topic: topics::DQ_EVENTS.to_owned(),
        key: Some(provenance.event_id.as_bytes().to_vec()),
        payload,
        headers: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(headers: &RecordHeaders, name: &str) -> Option<String> {
        headers.get_str(name).map(str::to_owned)
    }

    fn sample() -> (TraceContext, Vec<Violation>) {
        let trace = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid");
        let violation = Violation {
            rule_id: "amount".into(),
            field: "amount".into(),
            severity: dq_rules::Severity::Soft,
            message: "out of range".into(),
            observed: Some("-1".into()),
        };
        (trace, vec![violation])
    }

    #[test]
    fn stack_formatting_matches_display() {
        let mut contexts = vec![
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .expect("valid"),
            TraceContext::parse("00-ffffffffffffffffffffffffffffff0f-00000000000000a0-00")
                .expect("valid"),
        ];
        for _ in 0..50 {
            let root = TraceContext::new_root();
            contexts.push(root.child());
            contexts.push(root);
        }
        for trace in &contexts {
            assert_eq!(traceparent(trace, &mut [0; 55]), trace.to_string());
        }
        for value in [0, 7, -7, 10, 1_790_000_000_123, i64::MAX, i64::MIN, -1000] {
            assert_eq!(decimal(value, &mut [0; 20]), value.to_string());
        }
    }

    #[test]
    fn quarantine_and_dq_event_carry_provenance_and_violations() {
        let (trace, violations) = sample();
        let provenance = Provenance {
            event_id: "e-1",
            source: "kafka://local/orders/0/7",
            trace: Some(&trace),
            tracestate: Some("k=v"),
        };
        let judgement = Judgement {
            verdict: Verdict::SoftFail,
            ruleset: "orders@abc",
            schema: "3",
            violations: &violations,
            event_time_ms: 1000,
            ingest_time_ms: 2000,
        };
        let q = quarantine_record("orders", Some(b"k"), b"raw", &provenance, &judgement);
        assert_eq!(q.topic, topics::quarantine("orders"));
        assert_eq!(q.payload, b"raw");
        assert_eq!(
            header(&q.headers, headers::DQ).as_deref(),
            Some("soft_fail")
        );
        assert_eq!(
            header(&q.headers, headers::TRACEPARENT),
            Some(trace.to_string())
        );
        let listed: serde_json::Value =
            serde_json::from_str(&header(&q.headers, headers::DQ_VIOLATIONS).expect("violations"))
                .expect("json");
        assert_eq!(listed[0]["rule_id"], "amount");

        let event = dq_event_record("orders", "ingest", &provenance, &judgement);
        let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json");
        assert_eq!(body["event_id"], "e-1");
        assert_eq!(body["outcome"], "soft_fail");
        assert_eq!(body["violations"][0]["severity"], "soft");
        assert_eq!(event.topic, topics::DQ_EVENTS);
        assert_eq!(
            header(&event.headers, headers::EVENT_ID).as_deref(),
            Some("e-1")
        );
    }

    #[test]
    fn dlq_dq_event_names_the_error_and_the_dlq_topic() {
        let provenance = Provenance {
            event_id: "e-3",
            source: "kafka://local/orders/0/4",
            trace: None,
            tracestate: None,
        };
        let rejection = Rejection {
            kind: DlqErrorKind::Undecodable,
            error: "not JSON",
            failed_at_ms: 9,
        };
        let event = dlq_dq_event_record("orders", Some("sales"), &provenance, &rejection, 3);
        assert_eq!(event.topic, topics::DQ_EVENTS);
        assert_eq!(event.kind, OutputKind::DqEvent);
        let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json");
        assert_eq!(body["outcome"], "dlq");
        assert_eq!(body["error_kind"], "undecodable");
        assert_eq!(body["error"], "not JSON");
        assert_eq!(body["dataset"], "sales");
        assert_eq!(body["dlq_topic"], topics::dlq("orders"));
        assert_eq!(
            header(&event.headers, headers::SOURCE).as_deref(),
            Some("kafka://local/orders/0/4")
        );
        assert_eq!(header(&event.headers, headers::DQ), None);
        let unrouted = dlq_dq_event_record("x", None, &provenance, &rejection, 3);
        let body: serde_json::Value = serde_json::from_slice(&unrouted.payload).expect("json");
        assert!(body["dataset"].is_null());
    }

    #[test]
    fn dlq_keeps_source_headers_but_never_a_forged_event_id() {
        let provenance = Provenance {
            event_id: "e-2",
            source: "kafka://local/orders/1/9",
            trace: None,
            tracestate: None,
        };
        let rejection = Rejection {
            kind: DlqErrorKind::BadHeader,
            error: "invalid traceparent",
            failed_at_ms: 5,
        };
        let source_headers = [
            ("traceparent", Some(&b"garbage"[..])),
            (headers::EVENT_ID, Some(&b"forged"[..])),
        ];
        let record = dlq_record(
            "orders",
            None,
            b"x",
            source_headers,
            &provenance,
            &rejection,
        );
        assert_eq!(record.topic, topics::dlq("orders"));
        assert_eq!(
            header(&record.headers, "traceparent").as_deref(),
            Some("garbage")
        );
        let ids: Vec<_> = record
            .headers
            .iter()
            .filter(|(key, _)| *key == headers::EVENT_ID)
            .collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(
            header(&record.headers, headers::EVENT_ID).as_deref(),
            Some("e-2")
        );
        assert_eq!(
            header(&record.headers, headers::ERROR_KIND).as_deref(),
            Some("bad_header")
        );
        assert_eq!(
            header(&record.headers, headers::FAILED_AT).as_deref(),
            Some("5")
        );
    }

    #[test]
    fn an_oversize_dead_letter_is_chunked_and_reassembles() {
        let provenance = Provenance {
            event_id: "e-9",
            source: "kafka://local/orders/0/9",
            trace: None,
            tracestate: None,
        };
        let rejection = Rejection {
            kind: DlqErrorKind::Oversize,
            error: "too big",
            failed_at_ms: 1,
        };
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let record = dlq_record("orders", Some(b"k"), &payload, [], &provenance, &rejection);
        let limit = 1_000_000;
        let pieces = chunk_dead_letter(record.clone(), limit);
        assert_eq!(pieces.len(), 4);
        let mut whole = Vec::new();
        for (index, piece) in pieces.iter().enumerate() {
            let size = piece.payload.len() + 1 + piece.headers.byte_len();
            assert!(size <= limit, "piece {index} is {size} bytes");
            assert_eq!(
                header(&piece.headers, headers::CHUNK),
                Some(format!("{index}/4"))
            );
            assert_eq!(
                header(&piece.headers, headers::EVENT_ID).as_deref(),
                Some("e-9")
            );
            assert_eq!(piece.key.as_deref(), Some(&b"k"[..]));
            whole.extend_from_slice(&piece.payload);
        }
        assert_eq!(whole, payload);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&payload)));
        assert_eq!(
            header(&pieces[0].headers, headers::CHUNK_DIGEST),
            Some(digest)
        );
        assert_eq!(chunk_dead_letter(record, 4_000_000).len(), 1, "fits whole");
    }
}
