//! The admin server over real HTTP, and span export over real OTLP/HTTP.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use summit_envelope::TraceContext;
use summit_envelope::headers::DlqErrorKind;
use summit_telemetry::{
    LogFormat, MessageSpan, MessagingOperation, MessagingSystem, Metrics, Readiness, RecordOutcome,
    TicketResult, TracingConfig, WriteResult, init_tracing, serve, trace_context_of,
};
use tokio::sync::{mpsc, oneshot};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn get(client: &reqwest::Client, url: String) -> (u16, String, String) {
    let response = client.get(&url).send().await.expect("admin server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.expect("body");
    (status, content_type, body)
}

/// `promtool check metrics` reads the scrape on stdin; it exits non-zero on format errors and
/// on lint problems (missing HELP, bad suffixes, non-base units).
fn promtool_check(scrape: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "promtool is needed to validate the scrape ({error}); install it with \
                 `apt-get install -y prometheus` (Debian) and rerun"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(scrape.as_bytes())
        .expect("write scrape to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool rejected the scrape:\n{}{}\n--- scrape ---\n{scrape}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn readiness_flips_and_metrics_scrape_validates() {
    let metrics = Metrics::new("kafka-consumer").expect("metrics");
    let readiness = Readiness::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serve(loopback(), metrics.clone(), readiness.clone(), async {
        let _ = stopped.await;
    })
    .await
    .expect("admin server binds");
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    let (status, _, _) = get(&client, format!("{base}/healthz")).await;
    assert_eq!(status, 200);

    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    let report: serde_json::Value = serde_json::from_str(&body).expect("readyz answers JSON");
    assert_eq!(report["ready"], false);
    assert_eq!(report["reason"], "not connected to the source");

    readiness.set_connected(true);
    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 503, "connected but not assigned: {body}");
    readiness.set_assigned(true);
    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");

    metrics.record_outcome("orders", RecordOutcome::Pass);
    metrics.record_outcome("orders", RecordOutcome::HardFail);
    metrics.observe_ingest_latency("orders", Duration::from_millis(12));
    metrics.set_consumer_lag("orders", "0", 42);
    metrics.set_consumer_lag("orders", "1", 7);
    metrics.remove_partition("orders", "1");
    metrics.record_dlq("orders", DlqErrorKind::Undecodable);
    metrics.record_lineage_event(WriteResult::Ok);
    metrics.set_lineage_blocked(true);
    metrics.record_hard_fail("orders", "amount_positive");
    metrics.record_ticket("orders", "amount_positive", TicketResult::Sent);
    metrics.set_inflight(3, 1500);
    metrics.set_partitions_paused(1);
    metrics.record_commit(WriteResult::Error);

    let (status, content_type, scrape) = get(&client, format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    for expected in [
        r#"summit_records_total{outcome="hard_fail",service="kafka-consumer",source="orders"} 1"#,
        r#"summit_ingest_latency_seconds_count{service="kafka-consumer",source="orders"} 1"#,
        r#"summit_consumer_lag{partition="0",service="kafka-consumer",source="orders"} 42"#,
        r#"summit_dlq_records_total{kind="undecodable",service="kafka-consumer",source="orders"} 1"#,
        r#"summit_lineage_events_total{result="ok",service="kafka-consumer"} 1"#,
        r#"summit_lineage_blocked{service="kafka-consumer"} 1"#,
        r#"summit_hard_fail_total{dataset="orders",rule="amount_positive",service="kafka-consumer"} 1"#,
        r#"summit_tickets_total{dataset="orders",result="sent",rule="amount_positive",service="kafka-consumer"} 1"#,
        r#"summit_inflight_records{service="kafka-consumer"} 3"#,
        r#"summit_inflight_bytes{service="kafka-consumer"} 1500"#,
        r#"summit_partitions_paused{service="kafka-consumer"} 1"#,
        r#"summit_commit_total{result="error",service="kafka-consumer"} 1"#,
    ] {
        assert!(
            scrape.lines().any(|line| line == expected),
            "missing `{expected}` in:\n{scrape}"
        );
    }
    assert!(
        !scrape.contains(r#"partition="1""#),
        "a revoked partition's lag must be gone:\n{scrape}"
    );
    promtool_check(&scrape);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server.wait())
        .await
        .expect("server stops after the shutdown future fires")
        .expect("server ends cleanly");
}

#[tokio::test]
async fn busy_port_is_a_bind_error() {
    let taken = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    let addr = taken.local_addr().expect("addr");
    let error = serve(
        addr,
        Metrics::new("svc").expect("metrics"),
        Readiness::new(),
        std::future::pending(),
    )
    .await
    .expect_err("the port is taken");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

/// Spans reach an OTLP/HTTP receiver with the trace id of the record's `traceparent`. The
/// receiver does not decode protobuf: a `bytes` field (the trace id) and a `string` field (the
/// span name) are written verbatim in the encoding, so finding them in the body is exact enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_span_is_exported_with_the_remote_parent_trace_id() {
    let (bodies_tx, mut bodies) = mpsc::unbounded_channel::<(String, Bytes)>();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let bodies_tx = bodies_tx.clone();
            async move {
                let content_type = headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = bodies_tx.send((content_type, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    let collector = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let guard = init_tracing(
        "kafka-consumer",
        &TracingConfig {
            log_format: LogFormat::Text,
            filter: Some("info".to_owned()),
            otlp_endpoint: Some(format!("http://{collector}")),
        },
    )
    .expect("tracing installs");
    assert!(guard.exporting());

    let parent = TraceContext::new_root();
    let span = MessageSpan {
        system: MessagingSystem::Kafka,
        operation: MessagingOperation::Process,
        destination: "orders",
        partition: Some("3"),
        offset: Some(17),
        message_id: Some("0b9e1f6e-5b6c-5d9a-9a57-3f0a2f6c1d11"),
    }
    .start(Some(&parent));
    let own = trace_context_of(&span).expect("the OpenTelemetry layer gives the span ids");
    assert_eq!(
        own.trace_id, parent.trace_id,
        "same trace as the source record"
    );
    assert_ne!(own.parent_id, parent.parent_id, "a span of its own");
    span.in_scope(|| tracing::info!("processing"));
    drop(span);

    // Dropped on a runtime worker, as at the end of a service's async main: the flush blocks
    // this worker while the other one serves the receiver.
    drop(guard);

    let (content_type, body) = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
        .await
        .expect("a span export arrives")
        .expect("receiver alive");
    assert_eq!(content_type, "application/x-protobuf");
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&parent.trace_id), "trace id not in the export");
    assert!(contains(&own.parent_id), "span id not in the export");
    assert!(contains(b"process orders"), "span name not in the export");
    assert!(contains(b"messaging.destination.name"));
    assert!(
        contains(b"kafka-consumer"),
        "service.name not in the export"
    );
}
