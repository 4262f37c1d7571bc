//! The events of one service instance: START for the instance run, a COMPLETE per checkpoint
//! epoch as a child run, and COMPLETE or FAIL at the end (DESIGN §6).

use chrono::Utc;
use uuid::Uuid;

use crate::event::{
    Assertion, DataQualityAssertionsDatasetFacet, DataQualityMetricsInputDatasetFacet,
    DatasetFacets, EpochRunFacet, ErrorMessageRunFacet, EventType, InputDataset, InputFacets, Job,
    OffsetRange, OffsetRangesInputDatasetFacet, OutputDataset, PRODUCER, ParentRunFacet,
    ProcessingEngineRunFacet, RUN_EVENT_SCHEMA_URL, Run, RunEvent, RunFacets, SchemaDatasetFacet,
    SchemaField,
};
use crate::naming::{self, DatasetName};

/// The schema a service decoded with during an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaUsed {
    /// `<subject>/<version>` or the registry id, as in the `summit-schema` header.
    pub id: String,
    pub fields: Vec<SchemaField>,
}

/// A source dataset an epoch read, and which positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochInput {
    pub dataset: DatasetName,
    pub offset_ranges: Vec<OffsetRange>,
    /// Records read.
    pub row_count: Option<u64>,
    /// Payload bytes read.
    pub bytes: Option<u64>,
}

/// A dataset an epoch wrote to (mesh, quarantine, DLQ), with the rule results of its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochOutput {
    pub dataset: DatasetName,
    pub assertions: Vec<Assertion>,
}

/// What one checkpoint epoch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochReport {
    /// Increases per epoch within an instance run; the child run id is derived from it.
    pub epoch_id: u64,
    pub inputs: Vec<EpochInput>,
    pub outputs: Vec<EpochOutput>,
    pub schema: Option<SchemaUsed>,
    /// `<name>@<hash>`, as in the `summit-dq-ruleset` header.
    pub ruleset: Option<String>,
}

/// How an instance run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Complete,
    Fail { message: String },
    Abort,
}

/// The lineage of one service instance reading one source.
#[derive(Debug, Clone)]
pub struct LineageRun {
    job: Job,
    run_id: Uuid,
    instance_id: String,
}

impl LineageRun {
    /// A new instance run (random id) and its START event.
    pub fn start(service: &str, source: &str, instance_id: &str) -> (Self, RunEvent) {
        let run = Self {
            job: naming::job(service, source),
            run_id: Uuid::new_v4(),
            instance_id: instance_id.to_owned(),
        };
        let event = run.instance_event(
            EventType::Start,
            RunFacets {
                processing_engine: Some(ProcessingEngineRunFacet::summit()),
                ..RunFacets::default()
            },
        );
        (run, event)
    }

    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The run id of an epoch: UUIDv5 of the epoch id under the instance run id, so the same
    /// epoch always gets the same child run and a re-emitted event is recognisably the same.
    pub fn epoch_run_id(&self, epoch_id: u64) -> Uuid {
        Uuid::new_v5(&self.run_id, format!("epoch/{epoch_id}").as_bytes())
    }

    /// The COMPLETE event of an epoch's child run. Build it once and retry emitting that value:
    /// the event time is taken here.
    pub fn epoch_complete(&self, report: EpochReport) -> RunEvent {
        let schema_facet = report
            .schema
            .as_ref()
            .map(|schema| SchemaDatasetFacet::new(schema.fields.clone()));
        let inputs = report
            .inputs
            .into_iter()
            .map(|input| InputDataset {
                dataset: input.dataset.into_dataset(DatasetFacets {
                    schema: schema_facet.clone(),
                    data_quality_assertions: None,
                }),
                input_facets: InputFacets {
                    data_quality_metrics: (input.row_count.is_some() || input.bytes.is_some())
                        .then(|| {
                            DataQualityMetricsInputDatasetFacet::new(input.row_count, input.bytes)
                        }),
                    offset_ranges: Some(OffsetRangesInputDatasetFacet::new(input.offset_ranges)),
                },
            })
            .collect();
        let outputs = report
            .outputs
            .into_iter()
            .map(|output| OutputDataset {
                dataset: output.dataset.into_dataset(DatasetFacets {
                    schema: schema_facet.clone(),
                    data_quality_assertions: (!output.assertions.is_empty())
                        .then(|| DataQualityAssertionsDatasetFacet::new(output.assertions)),
                }),
            })
            .collect();
        RunEvent {
            event_type: EventType::Complete,
            event_time: Utc::now(),
            producer: PRODUCER.to_owned(),
            schema_url: RUN_EVENT_SCHEMA_URL.to_owned(),
            run: Run {
                run_id: self.epoch_run_id(report.epoch_id),
                facets: RunFacets {
                    parent: Some(ParentRunFacet::new(self.run_id, self.job.clone())),
                    epoch: Some(EpochRunFacet::new(
                        report.epoch_id,
                        report.schema.map(|schema| schema.id),
                        report.ruleset,
                    )),
                    ..RunFacets::default()
                },
            },
            job: self.job.clone(),
            inputs,
            outputs,
        }
    }

    /// The final event of the instance run.
    pub fn finish(&self, end: RunEnd) -> RunEvent {
        match end {
            RunEnd::Complete => self.instance_event(EventType::Complete, RunFacets::default()),
            RunEnd::Abort => self.instance_event(EventType::Abort, RunFacets::default()),
            RunEnd::Fail { message } => self.instance_event(
                EventType::Fail,
                RunFacets {
                    error_message: Some(ErrorMessageRunFacet::new(message)),
                    ..RunFacets::default()
                },
            ),
        }
    }

    fn instance_event(&self, event_type: EventType, facets: RunFacets) -> RunEvent {
        RunEvent {
            event_type,
            event_time: Utc::now(),
            producer: PRODUCER.to_owned(),
            schema_url: RUN_EVENT_SCHEMA_URL.to_owned(),
            run: Run {
                run_id: self.run_id,
                facets,
            },
            job: self.job.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::SpecValidator;

    pub(crate) fn sample_report(epoch_id: u64) -> EpochReport {
        EpochReport {
            epoch_id,
            inputs: vec![EpochInput {
                dataset: DatasetName::kafka("127.0.0.1:19092", "orders"),
                offset_ranges: vec![OffsetRange::kafka(0, 100, 199), OffsetRange::kafka(1, 7, 9)],
                row_count: Some(103),
                bytes: Some(51_500),
            }],
            outputs: vec![EpochOutput {
                dataset: DatasetName::kafka("127.0.0.1:19092", "mesh.orders"),
                assertions: vec![
                    Assertion {
                        assertion: "amount_positive".to_owned(),
                        success: false,
                        column: Some("amount".to_owned()),
                        severity: Some("error".to_owned()),
                        actual: Some("2/103".to_owned()),
                    },
                    Assertion {
                        assertion: "id_present".to_owned(),
                        success: true,
                        column: Some("id".to_owned()),
                        severity: Some("warn".to_owned()),
                        actual: Some("0/103".to_owned()),
                    },
                ],
            }],
            schema: Some(SchemaUsed {
                id: "orders-value/3".to_owned(),
                fields: vec![
                    SchemaField::new("id", "string"),
                    SchemaField::new("amount", "double"),
                    SchemaField {
                        fields: vec![SchemaField::new("city", "string")],
                        ..SchemaField::new("address", "record")
                    },
                ],
            }),
            ruleset: Some("orders@3f2a".to_owned()),
        }
    }

    #[test]
    fn epoch_run_ids_are_stable_and_distinct() {
        let (run, _) = LineageRun::start("kafka-consumer", "orders", "pod-0");
        assert_eq!(run.epoch_run_id(7), run.epoch_run_id(7));
        assert_ne!(run.epoch_run_id(7), run.epoch_run_id(8));
        assert_ne!(run.epoch_run_id(7), run.run_id());
        let (other, _) = LineageRun::start("kafka-consumer", "orders", "pod-1");
        assert_ne!(run.epoch_run_id(7), other.epoch_run_id(7));
    }

    #[test]
    fn every_event_of_a_run_validates_against_the_spec() {
        let validator = SpecValidator::new().expect("spec schemas compile");
        let (run, start) = LineageRun::start("kafka-consumer", "orders", "pod-0");
        let epoch = run.epoch_complete(sample_report(1));
        let failed = run.finish(RunEnd::Fail {
            message: "broker unreachable".to_owned(),
        });
        for event in [&start, &epoch, &run.finish(RunEnd::Complete), &failed] {
            let json = serde_json::to_value(event).expect("serialize");
            if let Err(errors) = validator.validate(&json) {
                panic!("{errors:#?}\n{json:#}");
            }
        }
    }

    #[test]
    fn epoch_event_links_to_the_instance_run_and_carries_what_handled_it() {
        let (run, start) = LineageRun::start("kafka-consumer", "orders", "pod-0");
        let epoch = run.epoch_complete(sample_report(4));
        assert_eq!(start.event_type, EventType::Start);
        assert_eq!(epoch.event_type, EventType::Complete);
        assert_eq!(epoch.run.run_id, run.epoch_run_id(4));
        let parent = epoch.run.facets.parent.as_ref().expect("parent facet");
        assert_eq!(parent.run.run_id, run.run_id());
        assert_eq!(parent.job.name, "kafka-consumer.orders");
        let facet = epoch.run.facets.epoch.as_ref().expect("summit_epoch");
        assert_eq!(facet.schema.as_deref(), Some("orders-value/3"));
        assert_eq!(facet.ruleset.as_deref(), Some("orders@3f2a"));
        let json = serde_json::to_value(&epoch).expect("serialize");
        assert_eq!(
            json["inputs"][0]["inputFacets"]["summit_offsetRanges"]["ranges"][0],
            serde_json::json!({"partition": "0", "first": "100", "last": "199"})
        );
        assert_eq!(
            json["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"][0]["assertion"],
            "amount_positive"
        );
        assert_eq!(
            json["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"],
            103
        );
        let back: RunEvent = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, epoch);
    }

    #[test]
    fn failure_carries_the_error_message() {
        let (run, _) = LineageRun::start("kafka-consumer", "orders", "pod-0");
        let failed = run.finish(RunEnd::Fail {
            message: "lineage topic unreachable".to_owned(),
        });
        assert_eq!(failed.event_type, EventType::Fail);
        assert_eq!(failed.run.run_id, run.run_id());
        let error = failed.run.facets.error_message.expect("error facet");
        assert_eq!(error.message, "lineage topic unreachable");
        assert_eq!(error.programming_language, "Rust");
    }
}
