//! DESIGN §4's "periodic per-rule counts" in `dq.events`: beside the one record per non-pass
//! source record, every `dq_counts.interval` one JSON record per dataset that saw records in the
//! window, with the window's outcome totals and each rule's failure count (zeros included, so a
//! reader can compute rates without knowing the rule set).
//!
//! Counts are taken from the same observer seam as the metrics: effectively_once counts a record
//! when it is routed, exactly_once when its transaction commits. A window that cannot be
//! written is merged into the next one, so counts are late rather than lost; records processed
//! again after a crash are counted again (the per-record `dq.events` entries carry event ids for
//! exact accounting; these are rates).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dq_rules::{Severity, Verdict};
use serde::Serialize;
use summit_envelope::now_millis;
use summit_mesh::{Lane, Position};

use crate::commit::{BoxFuture, Cause};
use crate::epochs::RuleAssertions;
use crate::observe::{ObservedRecord, OutcomeObserver, RecordOutcome};
use crate::route::RouteTable;

/// The `kind` of a counts record (per-record `dq.events` entries have an `event_id` instead).
pub const RULE_COUNTS_KIND: &str = "rule_counts";

#[derive(Debug)]
struct DatasetRules {
    ruleset: String,
    rules: RuleAssertions,
}

/// One dataset's totals within a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    records: u64,
    pass: u64,
    soft_fail: u64,
    hard_fail: u64,
    dlq: u64,
    /// Failures per rule, in rule-set order; a record counts once per rule.
    failures: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.records += other.records;
        self.pass += other.pass;
        self.soft_fail += other.soft_fail;
        self.hard_fail += other.hard_fail;
        self.dlq += other.dlq;
        if self.failures.len() < other.failures.len() {
            self.failures.resize(other.failures.len(), 0);
        }
        for (mine, theirs) in self.failures.iter_mut().zip(&other.failures) {
            *mine += theirs;
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    started_ms: i64,
    tallies: HashMap<Arc<str>, Tally>,
}

/// Observer of every record; [`RuleCounts::take`] hands out and resets the window.
#[derive(Debug)]
pub struct RuleCounts {
    instance: String,
    /// `ingest` (before enqueue) or `post_transform` (the stream processor's second pass).
    stage: &'static str,
    datasets: HashMap<Arc<str>, DatasetRules>,
    window: Mutex<Window>,
}

/// The JSON body of a counts record.
#[derive(Debug, Serialize, PartialEq)]
pub struct RuleCountsRecord {
    pub kind: &'static str,
    pub dataset: String,
    pub stage: &'static str,
    pub ruleset: String,
    pub instance: String,
    /// Epoch milliseconds; the window is [start, end).
    pub window_start: i64,
    pub window_end: i64,
    pub records: u64,
    pub pass: u64,
    pub soft_fail: u64,
    pub hard_fail: u64,
    pub dlq: u64,
    pub rules: Vec<RuleCount>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RuleCount {
    pub rule_id: String,
    pub field: String,
    pub severity: &'static str,
    pub failures: u64,
}

impl RuleCounts {
    pub fn new(instance: String, stage: &'static str, routes: &RouteTable) -> Self {
        let mut datasets = HashMap::new();
        for route in routes.routes() {
            datasets
                .entry(route.dataset.clone())
                .or_insert_with(|| DatasetRules {
                    ruleset: route.ruleset.clone(),
                    rules: RuleAssertions::of(route),
                });
        }
        Self::with_datasets(instance, stage, datasets)
    }

    fn with_datasets(
        instance: String,
        stage: &'static str,
        datasets: HashMap<Arc<str>, DatasetRules>,
    ) -> Self {
        Self {
            instance,
            stage,
            datasets,
            window: Mutex::new(Window {
                started_ms: now_millis(),
                tallies: HashMap::new(),
            }),
        }
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        // Every update completes before the guard drops; a poisoned lock is still consistent.
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The records of the window that ends now (datasets without records are left out), and a
    /// fresh window from now.
    pub fn take(&self) -> Vec<RuleCountsRecord> {
        let now = now_millis();
        let window = std::mem::replace(
            &mut *self.window(),
            Window {
                started_ms: now,
                tallies: HashMap::new(),
            },
        );
        let mut records: Vec<RuleCountsRecord> = window
            .tallies
            .into_iter()
            .filter_map(|(dataset, tally)| {
                let rules = self.datasets.get(&dataset)?;
                Some(RuleCountsRecord {
                    kind: RULE_COUNTS_KIND,
                    dataset: dataset.to_string(),
                    stage: self.stage,
                    ruleset: rules.ruleset.clone(),
                    instance: self.instance.clone(),
                    window_start: window.started_ms,
                    window_end: now,
                    records: tally.records,
                    pass: tally.pass,
                    soft_fail: tally.soft_fail,
                    hard_fail: tally.hard_fail,
                    dlq: tally.dlq,
                    rules: rules
                        .rules
                        .rules()
                        .iter()
                        .enumerate()
                        .map(|(index, rule)| RuleCount {
                            rule_id: rule.id.clone(),
                            field: rule.column.clone(),
                            severity: severity_name(rule.severity),
                            failures: tally.failures.get(index).copied().unwrap_or(0),
                        })
                        .collect(),
                })
            })
            .collect();
        records.sort_by(|a, b| a.dataset.cmp(&b.dataset));
        records
    }

    /// Puts back a record that could not be written: it joins the current window, which then
    /// starts where the unwritten one started.
    pub fn restore(&self, record: &RuleCountsRecord) {
        let Some((dataset, rules)) = self.datasets.get_key_value(record.dataset.as_str()) else {
            return;
        };
        let mut failures = vec![0; rules.rules.len()];
        for count in &record.rules {
            if let Some(index) = rules.rules.index_of(&count.rule_id) {
                failures[index] = count.failures;
            }
        }
        let tally = Tally {
            records: record.records,
            pass: record.pass,
            soft_fail: record.soft_fail,
            hard_fail: record.hard_fail,
            dlq: record.dlq,
            failures,
        };
        let mut window = self.window();
        window.started_ms = window.started_ms.min(record.window_start);
        window
            .tallies
            .entry(dataset.clone())
            .or_default()
            .merge(&tally);
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Soft => "soft",
        Severity::Hard => "hard",
    }
}

impl<L: Lane, P: Position> OutcomeObserver<L, P> for RuleCounts {
    fn observe(&self, record: &ObservedRecord<'_, L, P>) {
        let Some(dataset) = record.dataset else {
            return; // no route matched: no dataset to count it under
        };
        let Some((name, rules)) = self.datasets.get_key_value(dataset) else {
            return;
        };
        let mut window = self.window();
        let tally = window.tallies.entry(name.clone()).or_default();
        tally.records += 1;
        match record.outcome {
            RecordOutcome::Routed(outcome) => match outcome.verdict {
                Verdict::Pass => tally.pass += 1,
                Verdict::SoftFail => tally.soft_fail += 1,
                Verdict::HardFail => tally.hard_fail += 1,
            },
            RecordOutcome::DeadLettered(_) => tally.dlq += 1,
        }
        // The same per-record rule failures the lineage epochs count (each rule once).
        if let Some(failed) = rules.rules.failed(&record.outcome) {
            if tally.failures.len() < rules.rules.len() {
                tally.failures.resize(rules.rules.len(), 0);
            }
            for index in failed {
                tally.failures[index] += 1;
            }
        }
    }
}

/// Where counts records go: `dq.events` on the mesh. An error keeps the record for the next
/// window (counts are late rather than lost).
pub trait CountsWriter: Send + Sync + 'static {
    fn write<'a>(&'a self, key: &'a [u8], json: &'a [u8]) -> BoxFuture<'a, Result<(), Cause>>;
}

/// Writes the counts every `interval` and once more when stopped.
#[derive(Debug)]
pub struct RuleCountsReporter {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RuleCountsReporter {
    pub fn spawn(
        writer: Arc<dyn CountsWriter>,
        counts: Arc<RuleCounts>,
        interval: Duration,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => write(&*writer, &counts).await,
                    _ = &mut stopped => {
                        write(&*writer, &counts).await;
                        break;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Writes the last window (within `timeout`) and stops.
    pub async fn stop(self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("dq.events rule counts: last window not written in time");
        }
    }
}

async fn write(writer: &dyn CountsWriter, counts: &RuleCounts) {
    for record in counts.take() {
        let payload = match serde_json::to_vec(&record) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(%error, "dq.events rule counts not serialisable");
                continue;
            }
        };
        if let Err(error) = writer.write(record.dataset.as_bytes(), &payload).await {
            tracing::warn!(%error, dataset = %record.dataset, "dq.events rule counts not written; kept for the next window");
            counts.restore(&record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epochs::RuleInfo;

    fn counts() -> RuleCounts {
        let rules = RuleAssertions::from_rules(vec![
            RuleInfo {
                id: "a".into(),
                column: "x".into(),
                severity: Severity::Hard,
            },
            RuleInfo {
                id: "b".into(),
                column: "y".into(),
                severity: Severity::Soft,
            },
        ]);
        let datasets = [(
            Arc::<str>::from("orders"),
            DatasetRules {
                ruleset: "orders@abc".into(),
                rules,
            },
        )]
        .into();
        RuleCounts::with_datasets("i-1".into(), crate::classify::INGEST_STAGE, datasets)
    }

    #[test]
    fn an_unwritten_window_joins_the_next_one_and_keeps_its_start() {
        let counts = counts();
        assert!(counts.take().is_empty(), "no records, no counts records");
        {
            let mut window = counts.window();
            window.started_ms = 1_000;
            window.tallies.insert(
                Arc::from("orders"),
                Tally {
                    records: 5,
                    pass: 2,
                    soft_fail: 1,
                    hard_fail: 1,
                    dlq: 1,
                    failures: vec![1, 2],
                },
            );
        }
        let first = counts.take();
        assert_eq!(first.len(), 1);
        let record = &first[0];
        assert_eq!(
            (record.window_start, record.records, record.dlq),
            (1_000, 5, 1)
        );
        assert_eq!(
            record
                .rules
                .iter()
                .map(|r| (r.rule_id.as_str(), r.severity, r.failures))
                .collect::<Vec<_>>(),
            [("a", "hard", 1), ("b", "soft", 2)]
        );
        // Not written: put back, then a record of the new window arrives.
        counts.restore(record);
        counts
            .window()
            .tallies
            .get_mut("orders")
            .expect("restored")
            .merge(&Tally {
                records: 1,
                pass: 1,
                failures: vec![0, 0],
                ..Tally::default()
            });
        let second = counts.take();
        assert_eq!(second.len(), 1);
        assert_eq!(
            second[0].window_start, 1_000,
            "starts where the unwritten one did"
        );
        assert_eq!((second[0].records, second[0].pass), (6, 3));
        assert_eq!(second[0].rules[1].failures, 2);
        assert!(counts.take().is_empty());
    }
}
