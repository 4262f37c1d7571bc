//! What every ingest service runs beside its pipeline, whatever its source or delivery mode:
//! metrics, readiness, the admin server (`/healthz`, `/readyz`, `/metrics`), the data-quality
//! ticketer and the periodic per-rule counts.

use std::sync::Arc;
use std::time::Duration;

use summit_telemetry::{AdminError, AdminServer, Metrics, MetricsError, Readiness, TicketResult};
use summit_tickets::{
    FailureTicketing, TicketDelivery, TicketError, TicketPolicy, WebhookTicketer,
};

use crate::commit::Cause;
use crate::config::{AdminConfig, DqCountsConfig, TicketsConfig};
use crate::route::RouteTable;
use crate::rule_counts::{CountsWriter, RuleCounts, RuleCountsReporter};

/// The log line (field `admin_addr`) that names the bound admin address.
pub const ADMIN_LISTENING: &str = "admin server listening";

#[derive(Debug, thiserror::Error)]
pub enum OperationsError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("tickets.webhook: {0}")]
    Tickets(#[from] TicketError),
    #[error("dq_counts: cannot create its writer: {0}")]
    DqCounts(#[source] Cause),
}

/// What [`Operations::start`] needs from the service config.
#[derive(Debug, Clone, Copy)]
pub struct OperationsConfig<'a> {
    /// The `service` label of every metric.
    pub service: &'a str,
    pub instance_id: &'a str,
    /// `ingest` or `post_transform`: the stage of the per-rule counts.
    pub stage: &'static str,
    pub admin: &'a AdminConfig,
    pub tickets: Option<&'a TicketsConfig>,
    pub dq_counts: &'a DqCountsConfig,
}

#[derive(Debug)]
pub struct Operations {
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Taken by the pipeline's ticket observer; `None` without `tickets`.
    pub ticketing: Option<FailureTicketing>,
    /// The pipeline's per-rule counts observer; `None` with `dq_counts.enabled: false`.
    pub rule_counts: Option<Arc<RuleCounts>>,
    rule_counts_reporter: Option<RuleCountsReporter>,
    admin: AdminServer,
    stop_admin: tokio::sync::oneshot::Sender<()>,
    ticket_task: Option<tokio::task::JoinHandle<()>>,
}

impl Operations {
    /// Binds the admin port (logging [`ADMIN_LISTENING`]) and starts the ticketer and the
    /// per-rule counts reporter (its writer made by `counts_writer`, only when enabled).
    pub async fn start(
        config: OperationsConfig<'_>,
        routes: &RouteTable,
        counts_writer: impl FnOnce() -> Result<Arc<dyn CountsWriter>, Cause>,
    ) -> Result<Self, OperationsError> {
        let metrics = Metrics::new(config.service)?;
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
        let (ticketing, ticket_task) = match config.tickets {
            Some(tickets) => {
                let (ticketing, task) = start_ticketing(tickets, metrics.clone())?;
                (Some(ticketing), Some(task))
            }
            None => (None, None),
        };
        let (rule_counts, rule_counts_reporter) = if config.dq_counts.enabled {
            let counts = Arc::new(RuleCounts::new(
                config.instance_id.to_owned(),
                config.stage,
                routes,
            ));
            let writer = counts_writer().map_err(OperationsError::DqCounts)?;
            let reporter =
                RuleCountsReporter::spawn(writer, counts.clone(), config.dq_counts.interval);
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

    /// Call after the pipeline (holder of the last ticketer handle) is gone: the counts and
    /// the ticket task get up to 5 s each to send what is queued, then the admin server stops.
    pub async fn stop(self) {
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

/// The webhook ticketer, its deliveries counted in `summit_tickets_total`.
fn start_ticketing(
    tickets: &TicketsConfig,
    metrics: Metrics,
) -> Result<(FailureTicketing, tokio::task::JoinHandle<()>), TicketError> {
    let observer: summit_tickets::DeliveryObserver =
        Arc::new(move |ticket, delivery: &TicketDelivery| {
            let result = match delivery {
                TicketDelivery::Sent { .. } => TicketResult::Sent,
                TicketDelivery::Failed { reason, .. } => {
                    tracing::warn!(ticket = %ticket.ticket_id, %reason, "ticket not delivered");
                    TicketResult::Failed
                }
                TicketDelivery::Dropped => TicketResult::Dropped,
            };
            metrics.record_ticket(&ticket.dataset, &ticket.rule, result);
        });
    let (ticketer, task) = WebhookTicketer::spawn(tickets.webhook.clone(), observer)?;
    let policy = TicketPolicy {
        threshold: tickets.threshold,
        window: tickets.window,
        max_samples: tickets.max_samples,
    };
    Ok((FailureTicketing::new(policy, ticketer), task))
}
