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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::ClientConfig;
use summit_ingest::commit::BoxFuture;
use summit_ingest::epochs::{EpochContext, RuleAssertions, note_of};
use summit_ingest::{CommitGate, GateError, ObservedRecord, OutcomeObserver, RouteTable};
use summit_lineage::{
    DatasetName, EmitError, EpochAggregate, EpochLedger, LineageRun, LineageSink, RetryBudget,
    RunEnd, RunEvent,
};
use summit_mesh::PartitionKey;
use summit_telemetry::{Metrics, WriteResult};

use crate::config::Config;

const SERVICE: &str = "kafka-consumer";

/// The instance run of one dataset.
#[derive(Debug)]
struct DatasetRun {
    run: LineageRun,
    ruleset: String,
    rules: RuleAssertions,
    next_epoch: AtomicU64,
}

type Aggregate = EpochAggregate<PartitionKey, i64>;

#[derive(Debug)]
enum Pending {
    /// START or the final event: built already.
    Event(RunEvent),
    /// An epoch; its event is built (and its epoch id taken) at the first attempt, and from
    /// then on resent unchanged.
    Epoch {
        dataset: Arc<str>,
        aggregate: Aggregate,
        built: Option<RunEvent>,
    },
}

#[derive(Debug, Default)]
struct LedgerState {
    ledger: EpochLedger<PartitionKey, i64>,
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
    runs: HashMap<Arc<str>, DatasetRun>,
    state: Mutex<LedgerState>,
    /// One emission sequence at a time (periodic commit, revoke and shutdown may interleave).
    emitting: tokio::sync::Mutex<()>,
    epochs: EpochContext,
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
            runs,
            state: Mutex::new(LedgerState {
                ledger: EpochLedger::default(),
                pending,
            }),
            emitting: tokio::sync::Mutex::new(()),
            epochs: epoch_context(config, routes),
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
    fn epoch_event(&self, dataset: &str, aggregate: &Aggregate) -> Option<RunEvent> {
        let run = self.runs.get(dataset)?;
        let epoch_id = run.next_epoch.fetch_add(1, Ordering::Relaxed);
        let report = self
            .epochs
            .report(epoch_id, dataset, aggregate, &run.rules, &run.ruleset);
        Some(run.run.epoch_complete(report))
    }

    /// Seals the records up to each finished position (inclusive) into epochs, queued behind
    /// what is pending; an epoch never tried yet takes the new one of its dataset in.
    fn seal(&self, state: &mut LedgerState, finished: &[(PartitionKey, i64)]) {
        for (dataset, aggregate) in state.ledger.seal(finished) {
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
        let note = note_of(record, &run.rules);
        self.state()
            .ledger
            .note(record.lane, dataset, record.schema, note);
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
        // Unsealed records are the next owner's to account for: it re-reads them.
        self.state().ledger.forget(partitions);
    }
}

/// Kafka naming of this service's epochs: sources on the source cluster, outputs on the mesh.
pub(crate) fn epoch_context(config: &Config, routes: &RouteTable) -> EpochContext {
    let source_cluster = config.kafka.bootstrap_servers.clone();
    EpochContext {
        source_naming: Box::new(move |topic| DatasetName::kafka(&source_cluster, topic)),
        mesh_bootstrap: config.mesh_bootstrap_servers().to_owned(),
        decoder: routes.decoder().cloned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use dq_rules::{Outcome, Severity, Verdict, Violation};
    use summit_envelope::headers::DlqErrorKind;
    use summit_ingest::RecordOutcome;

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

    type Ranges = BTreeMap<PartitionKey, (i64, i64)>;

    /// Queued epochs: (tried already, offset ranges).
    fn epochs(gate: &LineageGate) -> Vec<(bool, Ranges)> {
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

    fn outcomes() -> (Outcome, Outcome) {
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
        (pass, soft)
    }

    #[tokio::test]
    async fn commits_become_epochs_that_tile_the_offsets_and_count_rule_failures() {
        let gate = gate().await;
        let (pass, soft) = outcomes();
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
        assert_eq!(
            epochs(&gate),
            vec![(false, BTreeMap::from([(p0.clone(), (10, 11))]))]
        );
        // Not tried yet (say the START is still unwritten): the next commit joins the epoch.
        gate.seal(&mut gate.state(), &[(p0.clone(), 12), (p1.clone(), 0)]);
        assert_eq!(
            epochs(&gate),
            vec![(
                false,
                BTreeMap::from([(p0.clone(), (10, 12)), (p1.clone(), (0, 0))])
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
        assert_eq!(queued[1], (false, BTreeMap::from([(p0.clone(), (13, 13))])));

        // A revoked partition's unsealed records are the next owner's.
        observe(&gate, 1, 1, RecordOutcome::Routed(&pass));
        gate.released(std::slice::from_ref(&p1));
        gate.seal(&mut gate.state(), &[(p1, 1)]);
        assert_eq!(epochs(&gate).len(), 2);
    }
}
