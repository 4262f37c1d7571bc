//! The admin HTTP port every service exposes (DESIGN §7): `/healthz`, `/readyz`, `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, text_content_type};

/// Whether the service can do its job: connected to its source and holding an assignment.
/// The service flips it; `/readyz` reads it. Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    state: Arc<ReadinessState>,
}

#[derive(Debug, Default)]
struct ReadinessState {
    connected: AtomicBool,
    assigned: AtomicBool,
    shutting_down: AtomicBool,
}

/// What `/readyz` answers, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    pub connected: bool,
    pub assigned: bool,
    pub shutting_down: bool,
    /// Why the service is not ready; absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Readiness {
    /// Not ready: neither connected nor assigned yet.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_connected(&self, connected: bool) {
        self.state.connected.store(connected, Ordering::Release);
    }

    /// Set when partitions (or shards) are assigned; cleared on a full revoke.
    pub fn set_assigned(&self, assigned: bool) {
        self.state.assigned.store(assigned, Ordering::Release);
    }

    /// Once draining on SIGTERM, the instance is never ready again, so traffic moves away.
    pub fn set_shutting_down(&self) {
        self.state.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.report().ready
    }

    pub fn report(&self) -> ReadinessReport {
        let connected = self.state.connected.load(Ordering::Acquire);
        let assigned = self.state.assigned.load(Ordering::Acquire);
        let shutting_down = self.state.shutting_down.load(Ordering::Acquire);
        let reason = if shutting_down {
            Some("shutting down")
        } else if !connected {
            Some("not connected to the source")
        } else if !assigned {
            Some("no partitions or shards assigned")
        } else {
            None
        };
        ReadinessReport {
            ready: reason.is_none(),
            connected,
            assigned,
            shutting_down,
            reason,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot bind the admin port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("admin server task panicked or was cancelled: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl AdminServer {
    /// The address actually bound (the port the OS chose for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the shutdown future has fired and open connections have finished.
    pub async fn wait(self) -> Result<(), AdminError> {
        self.task
            .await
            .map_err(AdminError::Task)?
            .map_err(AdminError::Serve)
    }
}

#[derive(Debug, Clone)]
struct AdminState {
    metrics: Metrics,
    readiness: Readiness,
}

/// Binds `listen_addr` and serves the admin endpoints on a spawned task until `shutdown`
/// completes. Returns once the port is bound, so the address can be used immediately.
pub async fn serve(
    listen_addr: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<AdminServer, AdminError> {
    let listener = tokio::net::TcpListener::bind(listen_addr)
        .await
        .map_err(|source| AdminError::Bind {
            addr: listen_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| AdminError::Bind {
        addr: listen_addr,
        source,
    })?;
    let app = router(metrics, readiness);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok(AdminServer { local_addr, task })
}

/// The admin routes, for a service that mounts them in a server of its own.
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { metrics, readiness })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    match state.metrics.encode_text() {
        Ok(text) => ([(header::CONTENT_TYPE, text_content_type())], text).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_connection_and_assignment_and_ends_at_shutdown() {
        let readiness = Readiness::new();
        assert_eq!(
            readiness.report().reason,
            Some("not connected to the source")
        );
        readiness.set_connected(true);
        assert_eq!(
            readiness.report().reason,
            Some("no partitions or shards assigned")
        );
        readiness.clone().set_assigned(true);
        assert!(readiness.is_ready(), "a clone must flip the shared state");
        readiness.set_shutting_down();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.report().reason, Some("shutting down"));
    }
}
