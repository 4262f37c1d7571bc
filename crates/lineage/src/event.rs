//! The OpenLineage 2-0-2 RunEvent, with the facets Summit writes (spec in `spec/`).
//!
//! Only what Summit produces is modelled; every facet is optional so events from this crate
//! read back unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `schemaURL` of every event.
pub const RUN_EVENT_SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// `producer` and `_producer`: this crate, at the workspace version.
pub const PRODUCER: &str = concat!(
    "https://summit-ingest.dev/summit-lineage/",
    env!("CARGO_PKG_VERSION")
);

const PARENT_SCHEMA_URL: &str =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const ERROR_MESSAGE_SCHEMA_URL: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const PROCESSING_ENGINE_SCHEMA_URL: &str = "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet";
const SCHEMA_SCHEMA_URL: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const ASSERTIONS_SCHEMA_URL: &str = "https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet";
const METRICS_SCHEMA_URL: &str = "https://openlineage.io/spec/facets/1-0-3/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet";
/// Where Summit's own facets are defined (`spec/SummitFacets.json` in this crate).
pub const SUMMIT_FACETS_SCHEMA: &str =
    "https://summit-ingest.dev/spec/facets/1-0-0/SummitFacets.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Start,
    Running,
    Complete,
    Abort,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    pub event_type: EventType,
    pub event_time: DateTime<Utc>,
    pub producer: String,
    #[serde(rename = "schemaURL")]
    pub schema_url: String,
    pub run: Run,
    pub job: Job,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputDataset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputDataset>,
}

impl RunEvent {
    /// The Kafka key of the event on `lineage.events` (DESIGN §4: keyed by run id).
    pub fn key(&self) -> String {
        self.run.run_id.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: Uuid,
    #[serde(default, skip_serializing_if = "RunFacets::is_empty")]
    pub facets: RunFacets,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFacets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRunFacet>,
    #[serde(
        rename = "errorMessage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_message: Option<ErrorMessageRunFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_engine: Option<ProcessingEngineRunFacet>,
    #[serde(
        rename = "summit_epoch",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub epoch: Option<EpochRunFacet>,
}

impl RunFacets {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub namespace: String,
    pub name: String,
}

/// `_producer` and `_schemaURL`, which the spec requires on every facet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetBase {
    #[serde(rename = "_producer")]
    pub producer: String,
    #[serde(rename = "_schemaURL")]
    pub schema_url: String,
}

impl FacetBase {
    fn new(schema_url: &str) -> Self {
        Self {
            producer: PRODUCER.to_owned(),
            schema_url: schema_url.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    pub run_id: Uuid,
}

/// Links a checkpoint epoch's run to the service instance's run (parent and root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRunFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub run: RunRef,
    pub job: Job,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRef {
    pub run: RunRef,
    pub job: Job,
}

impl ParentRunFacet {
    pub fn new(parent_run_id: Uuid, parent_job: Job) -> Self {
        Self {
            base: FacetBase::new(PARENT_SCHEMA_URL),
            run: RunRef {
                run_id: parent_run_id,
            },
            root: Some(RootRef {
                run: RunRef {
                    run_id: parent_run_id,
                },
                job: parent_job.clone(),
            }),
            job: parent_job,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessageRunFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub message: String,
    pub programming_language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
}

impl ErrorMessageRunFacet {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            base: FacetBase::new(ERROR_MESSAGE_SCHEMA_URL),
            message: message.into(),
            programming_language: "Rust".to_owned(),
            stack_trace: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingEngineRunFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub version: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openlineage_adapter_version: Option<String>,
}

impl ProcessingEngineRunFacet {
    /// Summit itself is the engine; its version is the workspace version.
    pub fn summit() -> Self {
        Self {
            base: FacetBase::new(PROCESSING_ENGINE_SCHEMA_URL),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            name: "summit-ingest".to_owned(),
            openlineage_adapter_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }
    }
}

/// Custom run facet `summit_epoch`: what handled one checkpoint epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochRunFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub epoch_id: u64,
    /// `<subject>/<version>` or the registry id, as in the `summit-schema` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// `<name>@<hash>`, as in the `summit-dq-ruleset` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<String>,
}

impl EpochRunFacet {
    pub fn new(epoch_id: u64, schema: Option<String>, ruleset: Option<String>) -> Self {
        Self {
            base: FacetBase::new(&format!("{SUMMIT_FACETS_SCHEMA}#/$defs/EpochRunFacet")),
            epoch_id,
            schema,
            ruleset,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "DatasetFacets::is_empty")]
    pub facets: DatasetFacets,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFacets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaDatasetFacet>,
    #[serde(
        rename = "dataQualityAssertions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_quality_assertions: Option<DataQualityAssertionsDatasetFacet>,
}

impl DatasetFacets {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDataset {
    #[serde(flatten)]
    pub dataset: Dataset,
    #[serde(
        rename = "inputFacets",
        default,
        skip_serializing_if = "InputFacets::is_empty"
    )]
    pub input_facets: InputFacets,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFacets {
    #[serde(
        rename = "dataQualityMetrics",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_quality_metrics: Option<DataQualityMetricsInputDatasetFacet>,
    #[serde(
        rename = "summit_offsetRanges",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub offset_ranges: Option<OffsetRangesInputDatasetFacet>,
}

impl InputFacets {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDataset {
    #[serde(flatten)]
    pub dataset: Dataset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDatasetFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub fields: Vec<SchemaField>,
}

impl SchemaDatasetFacet {
    pub fn new(fields: Vec<SchemaField>) -> Self {
        Self {
            base: FacetBase::new(SCHEMA_SCHEMA_URL),
            fields,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Nested record fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<SchemaField>,
}

impl SchemaField {
    pub fn new(name: impl Into<String>, field_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            field_type: Some(field_type.into()),
            description: None,
            fields: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataQualityAssertionsDatasetFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub assertions: Vec<Assertion>,
}

impl DataQualityAssertionsDatasetFacet {
    pub fn new(assertions: Vec<Assertion>) -> Self {
        Self {
            base: FacetBase::new(ASSERTIONS_SCHEMA_URL),
            assertions,
        }
    }
}

/// One data-quality rule's result over an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    /// The rule id.
    pub assertion: String,
    /// `false` when any record in the epoch failed the rule.
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// `error` for hard_fail rules, `warn` for soft_fail rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Failed records out of those evaluated, e.g. `3/1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataQualityMetricsInputDatasetFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Required by the spec; Summit reports per-column null counts when it has them.
    pub column_metrics: BTreeMap<String, ColumnMetrics>,
}

impl DataQualityMetricsInputDatasetFacet {
    pub fn new(row_count: Option<u64>, bytes: Option<u64>) -> Self {
        Self {
            base: FacetBase::new(METRICS_SCHEMA_URL),
            row_count,
            bytes,
            column_metrics: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_count: Option<u64>,
}

/// Custom input facet `summit_offsetRanges`: the positions an epoch read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRangesInputDatasetFacet {
    #[serde(flatten)]
    pub base: FacetBase,
    pub ranges: Vec<OffsetRange>,
}

impl OffsetRangesInputDatasetFacet {
    pub fn new(ranges: Vec<OffsetRange>) -> Self {
        Self {
            base: FacetBase::new(&format!(
                "{SUMMIT_FACETS_SCHEMA}#/$defs/OffsetRangesInputDatasetFacet"
            )),
            ranges,
        }
    }
}

/// First and last position read from one partition or shard, both included. Positions are
/// decimal strings because Kinesis sequence numbers do not fit in 64 bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    pub partition: String,
    pub first: String,
    pub last: String,
}

impl OffsetRange {
    pub fn kafka(partition: i32, first_offset: i64, last_offset: i64) -> Self {
        Self {
            partition: partition.to_string(),
            first: first_offset.to_string(),
            last: last_offset.to_string(),
        }
    }

    pub fn kinesis(shard_id: &str, first_sequence: &str, last_sequence: &str) -> Self {
        Self {
            partition: shard_id.to_owned(),
            first: first_sequence.to_owned(),
            last: last_sequence.to_owned(),
        }
    }
}
