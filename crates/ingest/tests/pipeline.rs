//! The pipeline invariants, against the in-memory source, sink and checkpointer (no broker):
//! commits follow acknowledgements in lane order, poison never blocks a lane, backpressure is
//! bounded by the in-flight budget, the commit gate holds or stops commits, a failed checkpoint
//! is offered again, shutdown drains within its grace, and a DLQ burst is throttled and its
//! companions compacted without losing a record.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use summit_envelope::headers;
use summit_ingest::commit::BoxFuture;
use summit_ingest::dlq::{DLQ_BURST_SUMMARY, SUMMARY_COUNT_HEADER};
use summit_ingest::memory::{MemoryCheckpointer, MemoryRecord, MemorySink, MemorySource};
use summit_ingest::{
    Backoff, Classifier, ClassifySettings, CommitGate, CommitPath, CompactionPolicy, DlqLimits,
    GateError, IngestPipeline, PipelineSettings, RouteSpec, RouteTable, RunError, Shutdown,
};
use summit_mesh::{Finalizer, InFlightBudget, OutputKind, PartitionKey};
use summit_telemetry::Metrics;

const TOPIC: &str = "orders";
const RULES: &str = r#"
name: orders
rules:
  - { id: amount-nonnegative, field: amount, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-plausible, field: amount, kind: range, severity: soft, params: { max: 1000 } }
"#;

type Pipeline = IngestPipeline<PartitionKey, i64, MemorySink>;
type Outcome = Result<Shutdown, RunError<std::io::Error>>;

struct Harness {
    source: Arc<MemorySource>,
    sink: Arc<MemorySink>,
    checkpointer: Arc<MemoryCheckpointer>,
    finalizer: Arc<Finalizer>,
    metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<Outcome>>,
}

struct Options {
    max_in_flight: u64,
    gate: Option<Arc<dyn CommitGate<PartitionKey, i64>>>,
    dlq_limits: Option<DlqLimits>,
    compaction: Option<CompactionPolicy>,
    grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            gate: None,
            dlq_limits: None,
            compaction: None,
            grace: Duration::from_secs(5),
        }
    }
}

async fn routes() -> RouteTable {
    let dir = std::env::temp_dir().join(format!("summit-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules = dir.join("orders.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let spec = RouteSpec {
        key: "routes[0]".into(),
        sources: vec![TOPIC.into()],
        pattern: None,
        pattern_field: "topic_pattern",
        dataset: "orders".into(),
        subject: None,
        schema_file: None,
        schema_compatibility: None,
        rules,
    };
    RouteTable::prepare(None, &[spec]).await.expect("routes")
}

async fn start(options: Options) -> Harness {
    let metrics = Metrics::new("ingest-test").expect("metrics");
    let finalizer = Arc::new(Finalizer::new(InFlightBudget::new(
        options.max_in_flight,
        u64::MAX / 4,
    )));
    let settings = ClassifySettings {
        max_record_bytes: 4096,
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(50),
        dlq_max_record_bytes: None,
    };
    let classifier = Classifier::new(routes().await, settings, None);
    let backoff = Backoff {
        min: Duration::from_millis(10),
        max: Duration::from_millis(40),
    };
    let commit = Arc::new(CommitPath::new(
        finalizer.clone(),
        options.gate,
        Some(metrics.clone()),
        backoff,
    ));
    let sink = Arc::new(MemorySink::new(finalizer.clone()));
    let pipeline = Arc::new(Pipeline::new(
        classifier,
        sink.clone(),
        commit,
        PipelineSettings {
            commit_interval: Duration::from_millis(20),
            shutdown_grace: options.grace,
            dlq_limits: options.dlq_limits,
            compaction: options.compaction,
        },
    ));
    let source = Arc::new(MemorySource::default());
    let checkpointer = Arc::new(MemoryCheckpointer::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = {
        let (source, checkpointer) = (source.clone(), checkpointer.clone());
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            pipeline
                .run(&*source, &*checkpointer, shutdown, std::future::pending())
                .await
        })
    };
    Harness {
        source,
        sink,
        checkpointer,
        finalizer,
        metrics,
        stop: Some(stop),
        run: Some(run),
    }
}

impl Harness {
    async fn stop(&mut self) -> Outcome {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.run.take().expect("running").await.expect("run task")
    }

    fn committed(&self, partition: i32) -> Option<i64> {
        self.checkpointer
            .committed()
            .get(&PartitionKey::new(TOPIC, partition))
            .copied()
    }

    fn sent_to(&self, prefix: &str) -> Vec<summit_ingest::memory::SentOutput> {
        self.sink
            .sent()
            .into_iter()
            .filter(|(record, _)| record.topic.starts_with(prefix))
            .collect()
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics.encode_text().expect("encode");
        text.lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn order(partition: i32, offset: i64, amount: i64) -> MemoryRecord {
    MemoryRecord::new(
        TOPIC,
        partition,
        offset,
        format!(r#"{{"amount": {amount}}}"#),
    )
}

fn poison(partition: i32, offset: i64) -> MemoryRecord {
    MemoryRecord::new(TOPIC, partition, offset, format!("not json #{offset}"))
}

fn header(record: &summit_mesh::OutboundRecord, name: &str) -> Option<String> {
    record.headers.get_str(name).map(str::to_owned)
}

#[tokio::test]
async fn commits_wait_for_every_output_and_follow_lane_order() {
    let mut h = start(Options::default()).await;
    h.sink.hold("dq.quarantine.");
    // Offset 10 of each lane is soft_fail: its quarantine output is held.
    h.source.push((0..2).flat_map(|partition| {
        (0..40).map(move |offset| order(partition, offset, if offset == 10 { 5000 } else { 7 }))
    }));
    eventually("every record sent", Duration::from_secs(10), || {
        h.source.remaining() == 0 && h.sent_to("mesh.").len() == 78
    })
    .await;
    eventually(
        "commits up to the held record",
        Duration::from_secs(5),
        || h.committed(0) == Some(9) && h.committed(1) == Some(9),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((h.committed(0), h.committed(1)), (Some(9), Some(9)));
    assert_eq!(h.sink.held(), 2);
    h.sink.release();
    eventually("commits to the end", Duration::from_secs(5), || {
        h.committed(0) == Some(39) && h.committed(1) == Some(39)
    })
    .await;
    // Per lane, outputs left in position order, and commits only ever moved forward.
    for partition in 0..2 {
        let positions: Vec<i64> = h
            .sink
            .sent()
            .iter()
            .filter(|(_, ticket)| ticket.lane.partition == partition)
            .map(|(_, ticket)| ticket.position)
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] <= pair[1]),
            "{positions:?}"
        );
        let commits: Vec<i64> = h
            .checkpointer
            .checkpoints()
            .iter()
            .flatten()
            .filter(|(lane, _)| lane.partition == partition)
            .map(|(_, position)| *position)
            .collect();
        assert!(
            commits.windows(2).all(|pair| pair[0] < pair[1]),
            "{commits:?}"
        );
    }
    assert_eq!(
        h.stop().await.expect("clean stop"),
        Shutdown { drained: true }
    );
}

#[tokio::test]
async fn poison_never_blocks_a_lane_and_every_dead_letter_keeps_its_payload() {
    let mut h = start(Options::default()).await;
    let records: Vec<MemoryRecord> = (0..30)
        .map(|offset| {
            if offset % 3 == 0 {
                poison(0, offset)
            } else {
                order(0, offset, 1)
            }
        })
        .collect();
    h.source.push(records.clone());
    eventually(
        "the lane committed to its end",
        Duration::from_secs(10),
        || h.committed(0) == Some(29),
    )
    .await;
    let dead = h.sent_to("dlq.orders");
    assert_eq!(dead.len(), 10);
    for (record, ticket) in &dead {
        assert_eq!(record.payload, records[ticket.position as usize].payload);
        assert_eq!(
            header(record, headers::ERROR_KIND).as_deref(),
            Some("undecodable")
        );
    }
    let companions: Vec<_> = h
        .sent_to("dq.events")
        .into_iter()
        .filter(|(_, ticket)| ticket.position % 3 == 0)
        .collect();
    assert_eq!(companions.len(), 10);
    assert_eq!(h.sent_to("mesh.orders").len(), 20);
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn backpressure_stops_fetching_at_the_budget_and_resumes_below_half() {
    let mut h = start(Options {
        max_in_flight: 10,
        ..Options::default()
    })
    .await;
    h.sink.hold("mesh.");
    h.source.push((0..100).map(|offset| order(0, offset, 1)));
    eventually("the source paused", Duration::from_secs(5), || {
        h.source.is_paused()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Exactly the budget was fetched: nothing more while paused.
    assert_eq!(h.sent_to("mesh.").len(), 10);
    assert_eq!(h.source.remaining(), 90);
    assert_eq!(h.finalizer.budget().in_flight().0, 10);
    assert_eq!(h.committed(0), None);
    assert_eq!(h.metric("summit_partitions_paused"), 1.0);
    h.sink.release();
    eventually("everything committed", Duration::from_secs(10), || {
        h.committed(0) == Some(99)
    })
    .await;
    assert_eq!(h.source.fetched_while_paused(), 0);
    assert_eq!(h.sent_to("mesh.").len(), 100);
    h.stop().await.expect("clean stop");
}

/// A gate that holds (0), passes (1) or refuses for good (2).
#[derive(Debug, Default)]
struct SwitchGate(AtomicU8);

impl CommitGate<PartitionKey, i64> for SwitchGate {
    fn before_commit<'a>(
        &'a self,
        _finished: &'a [(PartitionKey, i64)],
    ) -> BoxFuture<'a, Result<(), GateError>> {
        let state = self.0.load(Ordering::Acquire);
        Box::pin(async move {
            match state {
                0 => Err(GateError::Held("lineage not written yet".into())),
                1 => Ok(()),
                _ => Err(GateError::Fatal("lineage topic refuses the events".into())),
            }
        })
    }
}

#[tokio::test]
async fn a_held_gate_holds_commits_until_it_passes() {
    let gate = Arc::new(SwitchGate::default());
    let mut h = start(Options {
        gate: Some(gate.clone()),
        ..Options::default()
    })
    .await;
    h.source.push((0..20).map(|offset| order(0, offset, 1)));
    eventually("all sent", Duration::from_secs(5), || {
        h.sent_to("mesh.").len() == 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.committed(0), None);
    gate.0.store(1, Ordering::Release);
    eventually(
        "committed after the gate passed",
        Duration::from_secs(5),
        || h.committed(0) == Some(19),
    )
    .await;
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_fatal_gate_error_stops_the_run_naming_it() {
    let gate = Arc::new(SwitchGate(AtomicU8::new(2)));
    let mut h = start(Options {
        gate: Some(gate),
        ..Options::default()
    })
    .await;
    h.source.push((0..5).map(|offset| order(0, offset, 1)));
    let outcome = tokio::time::timeout(Duration::from_secs(5), h.run.take().expect("run"))
        .await
        .expect("the run stopped by itself")
        .expect("run task");
    let error = outcome.expect_err("fatal gate error");
    assert!(matches!(error, RunError::Commit(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("lineage topic refuses the events"),
        "{error}"
    );
    assert_eq!(h.committed(0), None);
}

#[tokio::test]
async fn a_failed_checkpoint_is_offered_again() {
    let mut h = start(Options::default()).await;
    h.checkpointer.fail(true);
    h.source.push((0..10).map(|offset| order(0, offset, 1)));
    eventually("all sent", Duration::from_secs(5), || {
        h.sent_to("mesh.").len() == 10
    })
    .await;
    eventually("a failed commit counted", Duration::from_secs(5), || {
        h.metric("summit_commit_total{result=\"error\"") >= 1.0
    })
    .await;
    assert_eq!(h.committed(0), None);
    h.checkpointer.fail(false);
    eventually("committed on a later tick", Duration::from_secs(5), || {
        h.committed(0) == Some(9)
    })
    .await;
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_with_unacknowledged_outputs_commits_what_finished_within_the_grace() {
    let mut h = start(Options {
        grace: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    h.source.push((0..10).map(|offset| order(0, offset, 1)));
    eventually("all sent", Duration::from_secs(5), || {
        h.sent_to("mesh.").len() == 10
    })
    .await;
    h.sink.hold("mesh.");
    h.source.push((10..15).map(|offset| order(0, offset, 1)));
    eventually("held outputs", Duration::from_secs(5), || {
        h.sink.held() == 5
    })
    .await;
    let started = Instant::now();
    let stopped = h.stop().await.expect("stop");
    assert_eq!(stopped, Shutdown { drained: false });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "grace exceeded: {:?}",
        started.elapsed()
    );
    assert_eq!(h.committed(0), Some(9));
}

#[tokio::test]
async fn a_dlq_burst_of_10000_is_throttled_compacted_and_loses_nothing() {
    const BURST: i64 = 10_000;
    let limits = DlqLimits {
        records_per_second: 5_000.0,
        bytes_per_second: 50e6,
    };
    let policy = CompactionPolicy {
        companions_per_window: 100,
        window: Duration::from_millis(500),
    };
    let mut h = start(Options {
        dlq_limits: Some(limits),
        compaction: Some(policy),
        ..Options::default()
    })
    .await;
    let records: Vec<MemoryRecord> = (0..BURST).map(|offset| poison(0, offset)).collect();
    let started = Instant::now();
    h.source.push(records.clone());
    eventually("the burst committed", Duration::from_secs(30), || {
        h.committed(0) == Some(BURST - 1)
    })
    .await;
    let elapsed = started.elapsed();
    // Every record is in the DLQ, once, with its payload.
    let dead = h.sent_to("dlq.orders");
    assert_eq!(dead.len(), BURST as usize);
    let positions: HashSet<i64> = dead.iter().map(|(_, ticket)| ticket.position).collect();
    assert_eq!(positions.len(), BURST as usize);
    for (record, ticket) in &dead {
        assert_eq!(record.payload, records[ticket.position as usize].payload);
    }
    // dq.events: the companions written one by one plus the summaries' counts cover the burst.
    let events = h.sent_to("dq.events");
    let (summaries, single): (Vec<_>, Vec<_>) = events
        .iter()
        .partition(|(record, _)| header(record, SUMMARY_COUNT_HEADER).is_some());
    let folded: u64 = summaries
        .iter()
        .map(|(record, _)| {
            let body: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
            assert_eq!(body["summary"], DLQ_BURST_SUMMARY);
            assert_eq!(body["error_kind"], "undecodable");
            body["count"].as_u64().expect("count")
        })
        .sum();
    assert!(!summaries.is_empty());
    assert!(
        single.len() < BURST as usize / 10,
        "{} companions written singly",
        single.len()
    );
    assert_eq!(single.len() as u64 + folded, BURST as u64);
    let single_ids: HashSet<String> = single
        .iter()
        .filter_map(|(record, _)| header(record, headers::EVENT_ID))
        .collect();
    assert_eq!(single_ids.len(), single.len());
    assert!(
        single
            .iter()
            .all(|(record, _)| record.kind == OutputKind::DqEvent)
    );
    // The source was paused over budget: 10,000 at 5,000/s after a one-second bucket takes at
    // least a second, and the throttle was counted.
    assert!(h.metric("summit_dlq_throttle_pauses_total") >= 1.0);
    assert!(h.metric("summit_dlq_companions_compacted_total") == folded as f64);
    assert!(
        elapsed >= Duration::from_millis(900),
        "not throttled: {elapsed:?}"
    );
    assert!(h.source.pauses() >= 1);
    assert_eq!(h.source.fetched_while_paused(), 0);
    h.stop().await.expect("clean stop");
    assert_eq!(h.metric("summit_dlq_throttled"), 0.0);
}
