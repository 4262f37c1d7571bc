//! The effectively_once pipeline: the ingest core's run loop ([`IngestPipeline`]) over the
//! Kafka source, the mesh producer as its sink and the group commit as its checkpointer.
//!
//! Built in dependency order — finalizer, commit path (with the lineage gate and metrics),
//! consumer context, consumer, producer, classifier — so nothing is set after construction.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use summit_ingest::{
    Backoff, Classifier, ClassifyError, ClassifySettings, CommitPath, CommitStopped,
    CompactionPolicy, DlqLimits, IngestPipeline, ObserverSet, OutcomeObserver, PipelineSettings,
    RouteTable, RunError,
};
pub use summit_ingest::{CommitGate, Shutdown};
use summit_kafka::{MeshError, MeshProducer, PermanentFailure};
use summit_mesh::{DeliveryObserver, Finalizer, InFlightBudget, PartitionKey, RecordSink as _};
use summit_telemetry::{Metrics, Readiness};

use crate::assignment::AssignmentState;
use crate::config::Config;
use crate::rebalance::RebalanceHandler;
use crate::source::{KafkaCommitter, KafkaSource, source_consumer_config};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create the Kafka consumer: {0}")]
    Consumer(#[source] KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Producer(#[from] MeshError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Commit(#[from] CommitStopped),
}

impl From<RunError<MeshError>> for PipelineError {
    fn from(error: RunError<MeshError>) -> Self {
        match error {
            RunError::Classify(error) => Self::Classify(error),
            RunError::Sink(error) => Self::Producer(error),
            RunError::Commit(error) => Self::Commit(error),
        }
    }
}

/// What the service plugs into the pipeline; all of it is known before the pipeline is built.
#[derive(Debug, Default)]
pub struct Wiring {
    pub deliveries: Option<Arc<dyn DeliveryObserver>>,
    /// Told about every record, in this order.
    pub outcomes: Vec<Arc<dyn OutcomeObserver>>,
    /// Guards every commit: the periodic ones, the final one and the revoke one.
    pub commit_gate: Option<Arc<dyn CommitGate<PartitionKey, i64>>>,
    pub metrics: Option<Metrics>,
    pub readiness: Option<Readiness>,
}

/// The running effectively_once pipeline.
pub struct Pipeline {
    config: Arc<Config>,
    core: IngestPipeline<PartitionKey, i64, MeshProducer<PartitionKey, i64>>,
    source: KafkaSource,
    producer: Arc<MeshProducer<PartitionKey, i64>>,
    /// The first output the broker refused for good: the run stops on it.
    permanent: Arc<PermanentFailure>,
    redelivery: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn build(
        config: Arc<Config>,
        routes: RouteTable,
        wiring: Wiring,
    ) -> Result<Self, PipelineError> {
        let limits = &config.limits;
        let finalizer = Arc::new(Finalizer::new(InFlightBudget::new(
            limits.max_in_flight_records,
            limits.max_in_flight_bytes,
        )));
        let delivery = &config.delivery;
        let backoff = Backoff {
            min: delivery.retry_backoff,
            max: delivery.retry_backoff_max,
        };
        let commit = Arc::new(CommitPath::new(
            finalizer.clone(),
            wiring.commit_gate,
            wiring.metrics.clone(),
            backoff,
        ));
        let context = RebalanceHandler::new(
            commit.clone(),
            delivery.rebalance_drain_timeout,
            AssignmentState::new(wiring.metrics, wiring.readiness),
        );
        let consumer: StreamConsumer<RebalanceHandler> = source_consumer_config(&config)
            .create_with_context(context)
            .map_err(PipelineError::Consumer)?;
        let permanent = Arc::new(PermanentFailure::default());
        let (producer, failed) = MeshProducer::new(
            &config.mesh_producer_settings("producer"),
            finalizer,
            wiring.deliveries,
            permanent.clone(),
        )?;
        let producer = Arc::new(producer);
        let redelivery = tokio::spawn(producer.clone().redeliver(
            failed,
            delivery.retry_backoff,
            delivery.retry_backoff_max,
        ));
        let classifier = Classifier::new(
            routes,
            classify_settings(&config, producer.max_record_bytes()),
            observers(wiring.outcomes),
        );
        let core = IngestPipeline::new(classifier, producer.clone(), commit, settings(&config));
        let source = KafkaSource {
            consumer,
            cluster: config.kafka.cluster_name.clone(),
        };
        Ok(Self {
            config,
            core,
            source,
            producer,
            permanent,
            redelivery,
        })
    }

    /// Runs until `shutdown` resolves, then stops fetching, drains, commits and returns within
    /// the configured grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Shutdown, PipelineError> {
        let subscription = self.config.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        self.source
            .consumer
            .subscribe(&topics)
            .map_err(|source| PipelineError::Subscribe {
                topics: subscription.clone(),
                source,
            })?;
        tracing::info!(topics = ?subscription, "subscribed");
        let started = std::time::Instant::now();
        let committer = KafkaCommitter(&self.source.consumer);
        let outcome = self
            .core
            .run(&self.source, &committer, shutdown, self.permanent.wait())
            .await;
        self.close(started);
        Ok(outcome?)
    }

    /// Leaves the group (its revoke callback commits again, harmlessly) and flushes the
    /// producer within what is left of the grace period.
    fn close(&self, started: std::time::Instant) {
        self.source.consumer.unsubscribe();
        let remaining = self
            .config
            .service
            .shutdown_grace
            .saturating_sub(started.elapsed());
        if let Err(error) = self.producer.flush(remaining.min(Duration::from_secs(5))) {
            tracing::warn!(%error, "producer flush incomplete");
        }
        self.redelivery.abort();
    }
}

fn observers(outcomes: Vec<Arc<dyn OutcomeObserver>>) -> Option<Arc<dyn OutcomeObserver>> {
    match outcomes.len() {
        0 => None,
        1 => outcomes.into_iter().next(),
        _ => Some(Arc::new(ObserverSet(outcomes))),
    }
}

/// The classifier's settings; shared by both delivery modes.
pub(crate) fn classify_settings(
    config: &Config,
    dlq_max_record_bytes: Option<usize>,
) -> ClassifySettings {
    ClassifySettings {
        max_record_bytes: config.limits.max_record_bytes,
        retry_backoff: config.delivery.retry_backoff,
        retry_backoff_max: config.delivery.retry_backoff_max,
        dlq_max_record_bytes,
    }
}

fn settings(config: &Config) -> PipelineSettings {
    let dlq = &config.dlq;
    PipelineSettings {
        commit_interval: config.delivery.commit_interval,
        shutdown_grace: config.service.shutdown_grace,
        dlq_limits: Some(DlqLimits {
            records_per_second: dlq.max_records_per_second,
            bytes_per_second: dlq.max_bytes_per_second,
        }),
        compaction: Some(CompactionPolicy {
            companions_per_window: dlq.companions_per_window,
            window: dlq.companion_window,
        }),
    }
}
