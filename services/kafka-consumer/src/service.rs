//! The effectively_once service around the [`Pipeline`]: metrics, the admin port, readiness,
//! lineage on the commit path and data-quality tickets.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use summit_lineage::RunEnd;
use summit_telemetry::{AdminError, AdminServer, Metrics, MetricsError, Readiness, TicketResult};
use summit_tickets::{
    FailureTicketing, TicketDelivery, TicketError, TicketPolicy, WebhookTicketer,
};

use crate::config::Config;
use crate::lineage::{LineageGate, LineageSetupError};
use crate::pipeline::{Pipeline, PipelineError, Shutdown, Wiring};
use crate::rule_counts::{RuleCounts, RuleCountsReporter};
use summit_ingest::RouteTable;
use summit_ingest::{CommitGate, OutcomeObserver};
use summit_ingest::{LatencyMetrics, OutcomeMetrics, TicketFeed};
use summit_mesh::PartitionKey;

/// The `service` label of every metric and the lineage job prefix.
pub const SERVICE_NAME: &str = "kafka-consumer";

/// The log line (field `admin_addr`) that names the bound admin address.
pub const ADMIN_LISTENING: &str = "admin server listening";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Lineage(#[from] LineageSetupError),
    #[error("tickets.webhook: {0}")]
    Tickets(#[from] TicketError),
    #[error("dq_counts: cannot create its producer: {0}")]
    DqCounts(#[source] rdkafka::error::KafkaError),
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
    let mut operations = Operations::start(&config, &routes).await?;
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

/// What both delivery modes run beside their pipeline: metrics, readiness, the admin server
/// (`/healthz`, `/readyz`, `/metrics`) and, when configured, the data-quality ticketer.
#[derive(Debug)]
pub(crate) struct Operations {
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
    /// Taken by the pipeline's ticket observer; `None` without `tickets`.
    pub(crate) ticketing: Option<FailureTicketing>,
    /// The pipeline's per-rule counts observer; `None` with `dq_counts.enabled: false`.
    pub(crate) rule_counts: Option<Arc<RuleCounts>>,
    rule_counts_reporter: Option<RuleCountsReporter>,
    admin: AdminServer,
    stop_admin: tokio::sync::oneshot::Sender<()>,
    ticket_task: Option<tokio::task::JoinHandle<()>>,
}

impl Operations {
    /// Binds the admin port (logging [`ADMIN_LISTENING`]) and starts the ticketer and the
    /// per-rule counts reporter.
    pub(crate) async fn start(config: &Config, routes: &RouteTable) -> Result<Self, ServiceError> {
        let metrics = Metrics::new(SERVICE_NAME)?;
        let readiness = Readiness::new();
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = summit_telemetry::serve(
            config.admin.listen,
            metrics.clone(),
            readiness.clone(),
            async move {
                let _ = admin_stopped.await;
            },
        )
        .await?;
        tracing::info!(admin_addr = %admin.local_addr(), "{ADMIN_LISTENING}");

        let mut ticket_task = None;
        let ticketing = match &config.tickets {
            Some(tickets) => {
                let counter = metrics.clone();
                let observer: summit_tickets::DeliveryObserver = Arc::new(
                    move |ticket, delivery: &TicketDelivery| {
                        let result = match delivery {
                            TicketDelivery::Sent { .. } => TicketResult::Sent,
                            TicketDelivery::Failed { reason, .. } => {
                                tracing::warn!(ticket = %ticket.ticket_id, %reason, "ticket not delivered");
                                TicketResult::Failed
                            }
                            TicketDelivery::Dropped => TicketResult::Dropped,
                        };
                        counter.record_ticket(&ticket.dataset, &ticket.rule, result);
                    },
                );
                let (ticketer, task) = WebhookTicketer::spawn(tickets.webhook.clone(), observer)?;
                ticket_task = Some(task);
                let policy = TicketPolicy {
                    threshold: tickets.threshold,
                    window: tickets.window,
                    max_samples: tickets.max_samples,
                };
                Some(FailureTicketing::new(policy, ticketer))
            }
            None => None,
        };
        let (rule_counts, rule_counts_reporter) = if config.dq_counts.enabled {
            let counts = Arc::new(RuleCounts::new(config, routes));
            let reporter = RuleCountsReporter::spawn(config, counts.clone())
                .map_err(ServiceError::DqCounts)?;
            (Some(counts), Some(reporter))
        } else {
            (None, None)
        };
        Ok(Self {
            metrics,
            readiness,
            ticketing,
            rule_counts,
            rule_counts_reporter,
            admin,
            stop_admin,
            ticket_task,
        })
    }

    /// Call after the pipeline (holder of the last ticketer handle) is gone: the ticket task
    /// gets up to 5 s to send what is queued, then the admin server stops.
    pub(crate) async fn stop(self) {
        if let Some(reporter) = self.rule_counts_reporter {
            reporter.stop(Duration::from_secs(5)).await;
        }
        if let Some(task) = self.ticket_task
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("tickets still queued at exit");
        }
        let _ = self.stop_admin.send(());
        if let Err(error) = self.admin.wait().await {
            tracing::warn!(%error, "admin server stopped with an error");
        }
    }
}
