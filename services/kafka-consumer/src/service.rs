//! The effectively_once service around the [`Pipeline`]: metrics, the admin port, readiness,
//! lineage on the commit path and data-quality tickets.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use summit_ingest::classify::INGEST_STAGE;
use summit_ingest::operations::{Operations, OperationsConfig, OperationsError};
use summit_ingest::rule_counts::CountsWriter;
use summit_ingest::{
    CommitGate, LatencyMetrics, OutcomeMetrics, OutcomeObserver, RouteTable, TicketFeed,
};
use summit_kafka::DqEventsWriter;
use summit_lineage::RunEnd;
use summit_mesh::PartitionKey;

use crate::config::Config;
use crate::lineage::{LineageGate, LineageSetupError};
use crate::pipeline::{Pipeline, PipelineError, Shutdown, Wiring};

/// The `service` label of every metric and the lineage job prefix.
pub const SERVICE_NAME: &str = "kafka-consumer";

/// The log line (field `admin_addr`) that names the bound admin address.
pub use summit_ingest::operations::ADMIN_LISTENING;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Operations(#[from] OperationsError),
    #[error(transparent)]
    Lineage(#[from] LineageSetupError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Runs until `shutdown` resolves, then drains, commits, ends the lineage runs and stops the
/// admin server. `/readyz` turns 503 as soon as `shutdown` fires.
pub async fn run(
    config: Arc<Config>,
    routes: RouteTable,
    shutdown: impl Future<Output = ()>,
) -> Result<Shutdown, ServiceError> {
    let mut operations = start_operations(&config, &routes).await?;
    let metrics = operations.metrics.clone();
    let readiness = operations.readiness.clone();

    let lineage = if config.lineage.enabled {
        let gate = Arc::new(LineageGate::new(&config, &routes, Some(metrics.clone()))?);
        tracing::info!(runs = ?gate.run_ids(), "lineage runs started");
        if let Err(error) = gate.start().await {
            tracing::warn!(%error, "lineage START not written yet; offsets wait for it");
        }
        Some(gate)
    } else {
        None
    };
    let ticketing = operations.ticketing.take();

    let mut outcomes: Vec<Arc<dyn OutcomeObserver>> =
        vec![Arc::new(OutcomeMetrics::new(metrics.clone()))];
    let mut commit_gate: Option<Arc<dyn CommitGate<PartitionKey, i64>>> = None;
    if let Some(gate) = &lineage {
        outcomes.push(gate.clone());
        commit_gate = Some(gate.clone());
    }
    if let Some(ticketing) = ticketing {
        outcomes.push(Arc::new(TicketFeed::new(ticketing)));
    }
    if let Some(counts) = &operations.rule_counts {
        outcomes.push(counts.clone());
    }
    let wiring = Wiring {
        deliveries: Some(Arc::new(LatencyMetrics::new(metrics.clone()))),
        outcomes,
        commit_gate,
        metrics: Some(metrics.clone()),
        readiness: Some(readiness.clone()),
    };
    let pipeline = Pipeline::build(config.clone(), routes, wiring)?;

    let draining = readiness.clone();
    let stop_requested = Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let stop_requested = stop_requested.clone();
        async move {
            shutdown.await;
            let _ = stop_requested.set(Instant::now());
            draining.set_shutting_down();
        }
    };
    let outcome = pipeline.run(shutdown).await;
    // What is left of the grace period (at least a second) bounds the final lineage events.
    let remaining = stop_requested
        .get()
        .map_or(config.service.shutdown_grace, |at| {
            config.service.shutdown_grace.saturating_sub(at.elapsed())
        })
        .max(Duration::from_secs(1));

    if let Some(gate) = &lineage {
        let end = match &outcome {
            Ok(stopped) if stopped.drained => RunEnd::Complete,
            // Outputs were still unacknowledged: their records are re-read by the next owner.
            Ok(_) => RunEnd::Abort,
            Err(error) => RunEnd::Fail {
                message: error.to_string(),
            },
        };
        match tokio::time::timeout(remaining, gate.finish(end)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "final lineage events not written"),
            Err(_) => tracing::warn!("final lineage events not written within the grace period"),
        }
    }
    operations.stop().await;
    Ok(outcome?)
}

/// Metrics, readiness, the admin server, tickets and per-rule counts (the ingest core's
/// [`Operations`]), with this service's names and its Kafka counts writer.
pub(crate) async fn start_operations(
    config: &Config,
    routes: &RouteTable,
) -> Result<Operations, ServiceError> {
    let instance_id = config.instance_id();
    let operations = OperationsConfig {
        service: SERVICE_NAME,
        instance_id: &instance_id,
        stage: INGEST_STAGE,
        admin: &config.admin,
        tickets: config.tickets.as_ref(),
        dq_counts: &config.dq_counts,
    };
    let settings = config.mesh_producer_settings("dq-counts");
    Ok(Operations::start(operations, routes, || {
        let writer: Arc<dyn CountsWriter> = Arc::new(DqEventsWriter::new(&settings)?);
        Ok(writer)
    })
    .await?)
}
