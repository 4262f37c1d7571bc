//! Lineage on the commit path (DESIGN §6): a run per route dataset and instance, and a child
//! run per checkpoint epoch, emitted before the offsets it covers are committed.
//!
//! [`LineageGate`] observes every record (offset, bytes, outcome, violated rules, schema) and,
//! as the pipeline's [`CommitGate`], turns each commit into epochs: per partition, the records
//! from the previous epoch's end up to the offset being committed. The epochs' COMPLETE events
//! are emitted in order; while one cannot be written (the emitter's retry budget runs out) the
//! commit is held, `summit_lineage_blocked` is 1, and the next commit tick tries again. Nothing
//! is skipped. Epochs that wait behind a failed one and were never tried are merged, so a long
//! outage costs one pending epoch per dataset, not one per tick.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dq_rules::{Severity, Verdict};
use rdkafka::ClientConfig;
use summit_envelope::topics;
use summit_lineage::{
    Assertion, DatasetName, EmitError, EpochInput, EpochOutput, EpochReport, LineageRun,
    LineageSink, OffsetRange, RetryBudget, RunEnd, RunEvent, SchemaField, SchemaUsed,
};
use summit_mesh::PartitionKey;
use summit_schema::{Decoder, FieldSummary};
use summit_telemetry::{Metrics, WriteResult};

use crate::config::Config;
use summit_ingest::commit::BoxFuture;
use summit_ingest::{CommitGate, GateError};
use summit_ingest::{ObservedRecord, OutcomeObserver, RecordOutcome};
use summit_ingest::{Route, RouteTable};

const SERVICE: &str = "kafka-consumer";

/// One rule of a route's rule set.
#[derive(Debug)]
pub(crate) struct RuleInfo {
    pub(crate) id: String,
    pub(crate) column: String,
    pub(crate) severity: Severity,
}

/// A route's rules as epochs report them: one `dataQualityAssertions` entry per rule with
/// `actual` = `failures/evaluated`. Shared with exactly_once's epochs and the `dq.events`
/// per-rule counts.
#[derive(Debug)]
pub(crate) struct RuleAssertions {
    rules: Vec<RuleInfo>,
    index: HashMap<String, usize>,
}

impl RuleAssertions {
    pub(crate) fn of(route: &Route) -> Self {
        Self::from_rules(
            route
                .evaluator
                .rule_set()
                .rules
                .iter()
                .map(|rule| RuleInfo {
                    id: rule.id.clone(),
                    column: rule.field.as_str().to_owned(),
                    severity: rule.severity,
                })
                .collect(),
        )
    }

    pub(crate) fn from_rules(rules: Vec<RuleInfo>) -> Self {
        let index = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.id.clone(), index))
            .collect();
        Self { rules, index }
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules in rule-set order (the order of `failures` slices).
    pub(crate) fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    pub(crate) fn index_of(&self, rule_id: &str) -> Option<usize> {
        self.index.get(rule_id).copied()
    }

    /// `None`: not evaluated (dead-lettered). Otherwise the indexes of the violated rules,
    /// each once.
    pub(crate) fn failed(&self, outcome: &RecordOutcome<'_>) -> Option<Vec<usize>> {
        match outcome {
            RecordOutcome::Routed(outcome) if outcome.verdict != Verdict::Pass => {
                let mut failed: Vec<usize> = outcome
                    .violations
                    .iter()
                    .filter_map(|violation| self.index.get(&violation.rule_id).copied())
                    .collect();
                failed.dedup();
                Some(failed)
            }
            RecordOutcome::Routed(_) => Some(Vec::new()),
            RecordOutcome::DeadLettered(_) => None,
        }
    }

    /// `failures[i]`: records of the epoch that violated rule `i`, out of `evaluated`.
    pub(crate) fn assertions(&self, evaluated: u64, failures: &[u64]) -> Vec<Assertion> {
        self.rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let failures = failures.get(index).copied().unwrap_or(0);
                Assertion {
                    assertion: rule.id.clone(),
                    success: failures == 0,
                    column: Some(rule.column.clone()),
                    severity: Some(
                        match rule.severity {
                            Severity::Hard => "error",
                            Severity::Soft => "warn",
                        }
                        .to_owned(),
                    ),
                    actual: Some(format!("{failures}/{evaluated}")),
                }
            })
            .collect()
    }
}

/// An epoch's outputs: `mesh.<dataset>` (carrying the rule assertions), its quarantine, the
/// DLQ of every source topic read and `dq.events`.
pub(crate) fn epoch_outputs<'a>(
    mesh_bootstrap: &str,
    dataset: &str,
    source_topics: impl IntoIterator<Item = &'a str>,
    assertions: Vec<Assertion>,
) -> Vec<EpochOutput> {
    let mut outputs = vec![
        EpochOutput {
            dataset: DatasetName::kafka(mesh_bootstrap, &topics::mesh(dataset)),
            assertions,
        },
        EpochOutput {
            dataset: DatasetName::kafka(mesh_bootstrap, &topics::quarantine(dataset)),
            assertions: Vec::new(),
        },
    ];
    for topic in source_topics {
        outputs.push(EpochOutput {
            dataset: DatasetName::kafka(mesh_bootstrap, &topics::dlq(topic)),
            assertions: Vec::new(),
        });
    }
    outputs.push(EpochOutput {
        dataset: DatasetName::kafka(mesh_bootstrap, topics::DQ_EVENTS),
        assertions: Vec::new(),
    });
    outputs
}

/// The instance run of one dataset.
#[derive(Debug)]
struct DatasetRun {
    run: LineageRun,
    ruleset: String,
    rules: RuleAssertions,
    next_epoch: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoteKind {
    Routed,
    DeadLettered,
}

/// What lineage keeps of one record until its epoch is sealed.
#[derive(Debug)]
struct RecordNote {
    offset: i64,
    bytes: u64,
    kind: NoteKind,
    /// Indexes into the dataset's rules; empty for passing records.
    failed_rules: Vec<usize>,
    schema: Option<Arc<str>>,
}

#[derive(Debug)]
struct PartitionLedger {
    dataset: Arc<str>,
    /// The offset after the last sealed epoch: where the next epoch's range starts.
    sealed_to: Option<i64>,
    notes: VecDeque<RecordNote>,
    last_schema: Option<Arc<str>>,
}

/// (topic, partition) → first and last offset.
type OffsetRanges = BTreeMap<(Arc<str>, i32), (i64, i64)>;

/// The sums of one epoch of one dataset.
#[derive(Debug, Default)]
struct EpochAggregate {
    ranges: OffsetRanges,
    /// topic → (records, bytes).
    read: BTreeMap<Arc<str>, (u64, u64)>,
    /// Records judged by the rules (not dead-lettered).
    evaluated: u64,
    failures: Vec<u64>,
    schema: Option<Arc<str>>,
}

impl EpochAggregate {
    fn merge(&mut self, other: EpochAggregate) {
        for (key, (first, last)) in other.ranges {
            self.ranges
                .entry(key)
                .and_modify(|range| {
                    range.0 = range.0.min(first);
                    range.1 = range.1.max(last);
                })
                .or_insert((first, last));
        }
        for (topic, (records, bytes)) in other.read {
            let entry = self.read.entry(topic).or_default();
            entry.0 += records;
            entry.1 += bytes;
        }
        self.evaluated += other.evaluated;
        if self.failures.len() < other.failures.len() {
            self.failures.resize(other.failures.len(), 0);
        }
        for (index, count) in other.failures.into_iter().enumerate() {
            self.failures[index] += count;
        }
        if other.schema.is_some() {
            self.schema = other.schema;
        }
    }
}

#[derive(Debug)]
enum Pending {
    /// START or the final event: built already.
    Event(RunEvent),
    /// An epoch; its event is built (and its epoch id taken) at the first attempt, and from
    /// then on resent unchanged.
    Epoch {
        dataset: Arc<str>,
        aggregate: EpochAggregate,
        built: Option<RunEvent>,
    },
}

#[derive(Debug, Default)]
struct LedgerState {
    partitions: HashMap<PartitionKey, PartitionLedger>,
    pending: VecDeque<Pending>,
}

#[derive(Debug, thiserror::Error)]
pub enum LineageSetupError {
    #[error("cannot create the lineage producer: {0}")]
    Emitter(#[source] EmitError),
}

/// Lineage runs of this instance, observer of every record and gate of every commit.
#[derive(Debug)]
pub struct LineageGate {
    /// Renewed after every failed emission (see [`LineageSink::renew`]).
    emitter: Arc<dyn LineageSink>,
    metrics: Option<Metrics>,
    source_bootstrap: String,
    mesh_bootstrap: String,
    runs: HashMap<Arc<str>, DatasetRun>,
    state: Mutex<LedgerState>,
    /// One emission sequence at a time (periodic commit, revoke and shutdown may interleave).
    emitting: tokio::sync::Mutex<()>,
    /// Names the fields of the schemas records were decoded with (its cache; no registry call).
    decoder: Option<Arc<Decoder>>,
}

/// The schema facet of an epoch: the `summit-schema` value and, when the decoder has that
/// schema cached (it decoded the epoch's records with it), its fields.
pub(crate) fn schema_used(decoder: Option<&Decoder>, id: String) -> SchemaUsed {
    let fields = decoder
        .and_then(|decoder| decoder.cached(&id))
        .map(|compiled| compiled.fields().iter().map(schema_field).collect())
        .unwrap_or_default();
    SchemaUsed { id, fields }
}

fn schema_field(field: &FieldSummary) -> SchemaField {
    SchemaField {
        fields: field.fields.iter().map(schema_field).collect(),
        ..SchemaField::new(field.name.clone(), field.type_name.clone())
    }
}

impl LineageGate {
    /// Starts a run per route dataset; their START events are queued ahead of any epoch.
    pub fn new(
        config: &Config,
        routes: &RouteTable,
        metrics: Option<Metrics>,
    ) -> Result<Self, LineageSetupError> {
        let lineage = &config.lineage;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", config.lineage_bootstrap_servers())
            .set("client.id", format!("{}-lineage", config.instance_id()));
        for (key, value) in &lineage.producer_properties {
            client.set(key, value);
        }
        let budget = RetryBudget {
            attempts: lineage.max_attempts,
            total: lineage.emit_budget,
            attempt_timeout: lineage.attempt_timeout,
            initial_backoff: lineage.initial_backoff,
        };
        let emitter =
            summit_kafka::RenewingLineageEmitter::new(client, lineage.topic.clone(), budget)
                .map_err(LineageSetupError::Emitter)?;
        let instance = config.instance_id();
        let mut runs = HashMap::new();
        let mut pending = VecDeque::new();
        for route in routes.routes() {
            if runs.contains_key(&route.dataset) {
                continue;
            }
            let (run, start) = LineageRun::start(SERVICE, &route.dataset, &instance);
            pending.push_back(Pending::Event(start));
            runs.insert(
                route.dataset.clone(),
                DatasetRun {
                    run,
                    ruleset: route.ruleset.clone(),
                    rules: RuleAssertions::of(route),
                    next_epoch: AtomicU64::new(1),
                },
            );
        }
        Ok(Self {
            emitter: Arc::new(emitter),
            metrics,
            source_bootstrap: config.kafka.bootstrap_servers.clone(),
            mesh_bootstrap: config.mesh_bootstrap_servers().to_owned(),
            runs,
            state: Mutex::new(LedgerState {
                partitions: HashMap::new(),
                pending,
            }),
            emitting: tokio::sync::Mutex::new(()),
            decoder: routes.decoder().cloned(),
        })
    }

    fn state(&self) -> MutexGuard<'_, LedgerState> {
        // Every update completes before the guard drops; a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instance run ids, per dataset (for logs and tests).
    pub fn run_ids(&self) -> Vec<(String, String)> {
        self.runs
            .iter()
            .map(|(dataset, run)| (dataset.to_string(), run.run.run_id().to_string()))
            .collect()
    }

    /// Emits the START events now. A failure is not fatal: they stay queued ahead of every
    /// epoch, so no offset is committed before they are written.
    pub async fn start(&self) -> Result<(), EmitError> {
        let _serial = self.emitting.lock().await;
        self.flush_pending().await
    }

    /// Emits what is still queued, then each run's final event (COMPLETE, FAIL or ABORT).
    pub async fn finish(&self, end: RunEnd) -> Result<(), EmitError> {
        let _serial = self.emitting.lock().await;
        {
            let mut state = self.state();
            for run in self.runs.values() {
                state
                    .pending
                    .push_back(Pending::Event(run.run.finish(end.clone())));
            }
        }
        let result = self.flush_pending().await;
        if let Err(error) = self.emitter.flush(std::time::Duration::from_secs(5)) {
            tracing::warn!(%error, "lineage producer flush incomplete");
        }
        result
    }

    /// Emits the queue front to back; stops at the first failure, leaving it at the front.
    async fn flush_pending(&self) -> Result<(), EmitError> {
        loop {
            let event = {
                let mut state = self.state();
                let Some(front) = state.pending.front_mut() else {
                    break;
                };
                match front {
                    Pending::Event(event) => event.clone(),
                    Pending::Epoch {
                        dataset,
                        aggregate,
                        built,
                    } => match built {
                        Some(event) => event.clone(),
                        None => match self.epoch_event(dataset, aggregate) {
                            Some(event) => {
                                *built = Some(event.clone());
                                event
                            }
                            None => {
                                state.pending.pop_front();
                                continue;
                            }
                        },
                    },
                }
            };
            let result = self.emitter.emit(&event).await;
            if let Some(metrics) = &self.metrics {
                metrics.record_lineage_event(WriteResult::from(&result));
            }
            match result {
                Ok(delivered) => {
                    tracing::debug!(
                        run_id = %event.run.run_id,
                        event_type = ?event.event_type,
                        attempts = delivered.attempts,
                        "lineage event written"
                    );
                    self.state().pending.pop_front();
                }
                Err(error) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.set_lineage_blocked(true);
                    }
                    tracing::warn!(%error, run_id = %event.run.run_id, "lineage event not written; offsets held back");
                    self.emitter.renew();
                    return Err(error);
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_lineage_blocked(false);
        }
        Ok(())
    }

    /// `None` only for a dataset without a run, which `observe` never records.
    fn epoch_event(&self, dataset: &str, aggregate: &EpochAggregate) -> Option<RunEvent> {
        let run = self.runs.get(dataset)?;
        let epoch_id = run.next_epoch.fetch_add(1, Ordering::Relaxed);
        let mut inputs: BTreeMap<&str, Vec<OffsetRange>> = BTreeMap::new();
        for ((topic, partition), (first, last)) in &aggregate.ranges {
            inputs
                .entry(topic)
                .or_default()
                .push(OffsetRange::kafka(*partition, *first, *last));
        }
        let inputs: Vec<EpochInput> = inputs
            .into_iter()
            .map(|(topic, offset_ranges)| {
                let (rows, bytes) = aggregate.read.get(topic).copied().unwrap_or_default();
                EpochInput {
                    dataset: DatasetName::kafka(&self.source_bootstrap, topic),
                    offset_ranges,
                    row_count: Some(rows),
                    bytes: Some(bytes),
                }
            })
            .collect();
        let assertions = run
            .rules
            .assertions(aggregate.evaluated, &aggregate.failures);
        let outputs = epoch_outputs(
            &self.mesh_bootstrap,
            dataset,
            aggregate.read.keys().map(|topic| &**topic),
            assertions,
        );
        Some(
            run.run.epoch_complete(EpochReport {
                epoch_id,
                inputs,
                outputs,
                schema: aggregate
                    .schema
                    .as_ref()
                    .map(|id| schema_used(self.decoder.as_deref(), id.to_string())),
                ruleset: Some(run.ruleset.clone()),
            }),
        )
    }

    /// Moves the records up to each finished position (inclusive) into epochs, queued behind
    /// what is pending.
    fn seal(&self, state: &mut LedgerState, finished: &[(PartitionKey, i64)]) {
        let mut sealed: BTreeMap<Arc<str>, EpochAggregate> = BTreeMap::new();
        for (key, last) in finished {
            let Some(ledger) = state.partitions.get_mut(key) else {
                continue;
            };
            let Some(run) = self.runs.get(&ledger.dataset) else {
                continue;
            };
            let aggregate = sealed.entry(ledger.dataset.clone()).or_default();
            if aggregate.failures.len() < run.rules.len() {
                aggregate.failures.resize(run.rules.len(), 0);
            }
            let mut first = ledger.sealed_to;
            let mut taken = 0u64;
            while ledger
                .notes
                .front()
                .is_some_and(|note| note.offset <= *last)
            {
                let Some(note) = ledger.notes.pop_front() else {
                    break;
                };
                first.get_or_insert(note.offset);
                taken += 1;
                let read = aggregate.read.entry(key.topic.clone()).or_default();
                read.0 += 1;
                read.1 += note.bytes;
                if note.kind == NoteKind::Routed {
                    aggregate.evaluated += 1;
                }
                for index in note.failed_rules {
                    if let Some(count) = aggregate.failures.get_mut(index) {
                        *count += 1;
                    }
                }
                if note.schema.is_some() {
                    aggregate.schema = note.schema;
                }
            }
            if taken == 0 {
                continue;
            }
            if let Some(first) = first {
                aggregate
                    .ranges
                    .insert((key.topic.clone(), key.partition), (first, *last));
            }
            ledger.sealed_to = Some(last + 1);
        }
        for (dataset, aggregate) in sealed {
            if aggregate.ranges.is_empty() {
                continue;
            }
            let waiting = state.pending.iter_mut().find_map(|pending| match pending {
                Pending::Epoch {
                    dataset: queued,
                    aggregate,
                    built: None,
                } if *queued == dataset => Some(aggregate),
                _ => None,
            });
            match waiting {
                Some(queued) => queued.merge(aggregate),
                None => state.pending.push_back(Pending::Epoch {
                    dataset,
                    aggregate,
                    built: None,
                }),
            }
        }
    }

    async fn gate(&self, finished: &[(PartitionKey, i64)]) -> Result<(), EmitError> {
        let _serial = self.emitting.lock().await;
        {
            let mut state = self.state();
            self.seal(&mut state, finished);
        }
        self.flush_pending().await
    }
}

impl OutcomeObserver for LineageGate {
    fn observe(&self, record: &ObservedRecord<'_>) {
        let Some((dataset, run)) = record
            .dataset
            .and_then(|dataset| self.runs.get_key_value(dataset))
        else {
            // No route: no run to account it to.
            return;
        };
        let (kind, failed_rules) = match run.rules.failed(&record.outcome) {
            Some(failed) => (NoteKind::Routed, failed),
            None => (NoteKind::DeadLettered, Vec::new()),
        };
        let mut state = self.state();
        let ledger = state
            .partitions
            .entry(record.lane.clone())
            .or_insert_with(|| PartitionLedger {
                dataset: dataset.clone(),
                sealed_to: None,
                notes: VecDeque::new(),
                last_schema: None,
            });
        let schema = record.schema.map(|schema| match &ledger.last_schema {
            Some(last) if **last == *schema => last.clone(),
            _ => {
                let fresh: Arc<str> = schema.into();
                ledger.last_schema = Some(fresh.clone());
                fresh
            }
        });
        ledger.notes.push_back(RecordNote {
            offset: *record.position,
            bytes: record.bytes,
            kind,
            failed_rules,
            schema,
        });
    }
}

impl CommitGate<PartitionKey, i64> for LineageGate {
    fn before_commit<'a>(
        &'a self,
        finished: &'a [(PartitionKey, i64)],
    ) -> BoxFuture<'a, Result<(), GateError>> {
        Box::pin(async move {
            self.gate(finished).await.map_err(|error| {
                if error.is_retriable() {
                    GateError::Held(Box::new(error))
                } else {
                    GateError::Fatal(Box::new(error))
                }
            })
        })
    }

    fn released(&self, partitions: &[PartitionKey]) {
        let mut state = self.state();
        for key in partitions {
            // Unsealed records are the next owner's to account for: it re-reads them.
            state.partitions.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dq_rules::{Outcome, Violation};
    use summit_envelope::headers::DlqErrorKind;

    use super::*;

    const RULES: &str = r#"
name: payments
rules:
  - { id: amount-nonnegative, field: amount, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-small, field: amount, kind: range, severity: soft, params: { max: 1000 } }
"#;

    async fn gate() -> LineageGate {
        let dir = std::env::temp_dir().join(format!("kc-lineage-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("rules.yaml"), RULES).expect("rules");
        let yaml = "kafka: { bootstrap_servers: \"127.0.0.1:19092\", group_id: g, cluster_name: c }\n\
                    routes: [{ topics: [orders], dataset: sales, rules: rules.yaml }]\n";
        let config = Config::from_yaml(yaml, Path::new("t.yaml"), dir, Vec::new()).expect("config");
        let routes = config.prepare_routes().await.expect("routes");
        LineageGate::new(&config, &routes, None).expect("gate")
    }

    fn observe(gate: &LineageGate, partition: i32, offset: i64, outcome: RecordOutcome<'_>) {
        gate.observe(&ObservedRecord {
            lane: &PartitionKey::new("orders", partition),
            position: &offset,
            bytes: 10,
            dataset: Some("sales"),
            event_id: "e",
            schema: Some("7"),
            outcome,
        });
    }

    /// Queued epochs: (tried already, offset ranges).
    fn epochs(gate: &LineageGate) -> Vec<(bool, OffsetRanges)> {
        gate.state()
            .pending
            .iter()
            .filter_map(|pending| match pending {
                Pending::Epoch {
                    aggregate, built, ..
                } => Some((built.is_some(), aggregate.ranges.clone())),
                Pending::Event(_) => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn commits_become_epochs_that_tile_the_offsets_and_count_rule_failures() {
        let gate = gate().await;
        let pass = Outcome {
            verdict: Verdict::Pass,
            violations: Vec::new(),
            reference_version: None,
        };
        let soft = Outcome {
            verdict: Verdict::SoftFail,
            violations: vec![Violation {
                rule_id: "amount-small".into(),
                field: "amount".into(),
                severity: Severity::Soft,
                message: "too large".into(),
                observed: Some("5000".into()),
            }],
            reference_version: None,
        };
        observe(&gate, 0, 10, RecordOutcome::Routed(&pass));
        observe(&gate, 0, 11, RecordOutcome::Routed(&soft));
        observe(
            &gate,
            0,
            12,
            RecordOutcome::DeadLettered(DlqErrorKind::Undecodable),
        );
        observe(&gate, 1, 0, RecordOutcome::Routed(&pass));
        let p0 = PartitionKey::new("orders", 0);
        let p1 = PartitionKey::new("orders", 1);

        // Offset 12 is not acknowledged yet: 11 is the last finished position.
        gate.seal(&mut gate.state(), &[(p0.clone(), 11)]);
        let first: Arc<str> = "orders".into();
        assert_eq!(
            epochs(&gate),
            vec![(false, BTreeMap::from([((first.clone(), 0), (10, 11))]))]
        );
        // Not tried yet (say the START is still unwritten): the next commit joins the epoch.
        gate.seal(&mut gate.state(), &[(p0.clone(), 12), (p1.clone(), 0)]);
        assert_eq!(
            epochs(&gate),
            vec![(
                false,
                BTreeMap::from([((first.clone(), 0), (10, 12)), ((first.clone(), 1), (0, 0))])
            )]
        );
        let event = {
            let state = gate.state();
            let Some(Pending::Epoch {
                dataset, aggregate, ..
            }) = state.pending.back()
            else {
                panic!("an epoch is queued");
            };
            gate.epoch_event(dataset, aggregate)
                .expect("dataset has a run")
        };
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(
            json["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"],
            4
        );
        let assertions = &json["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"];
        assert_eq!(assertions[0]["assertion"], "amount-nonnegative");
        assert_eq!(assertions[0]["success"], true);
        assert_eq!(assertions[1]["assertion"], "amount-small");
        assert_eq!(
            assertions[1]["actual"], "1/3",
            "DLQ'd records are not evaluated"
        );
        assert_eq!(assertions[1]["success"], false);
        assert_eq!(json["run"]["facets"]["summit_epoch"]["schema"], "7");

        // Once tried, an epoch is resent unchanged; later records make a new one, starting
        // where it ended.
        if let Some(Pending::Epoch { built, .. }) = gate.state().pending.back_mut() {
            *built = Some(event);
        }
        observe(&gate, 0, 13, RecordOutcome::Routed(&pass));
        gate.seal(&mut gate.state(), &[(p0.clone(), 13)]);
        let queued = epochs(&gate);
        assert_eq!(queued.len(), 2);
        assert_eq!(
            queued[1],
            (false, BTreeMap::from([((first.clone(), 0), (13, 13))]))
        );

        // A revoked partition's unsealed records are the next owner's.
        observe(&gate, 1, 1, RecordOutcome::Routed(&pass));
        gate.released(std::slice::from_ref(&p1));
        gate.seal(&mut gate.state(), &[(p1, 1)]);
        assert_eq!(epochs(&gate).len(), 2);
    }
}
