//! Sending tickets to a webhook off the hot path.
//!
//! Ingestion hands a ticket to a bounded queue and never waits: when the queue is full the
//! ticket is dropped and reported as [`TicketDelivery::Dropped`] (count it in
//! `summit_tickets_total{result="dropped"}`), because a slow ticket system must not stall the
//! pipeline. A task drains the queue and POSTs each ticket as JSON, retrying connection errors,
//! timeouts and 5xx answers with exponential backoff, and giving up at once on 4xx.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::window::{FailureWindow, Ticket, TicketPolicy};

/// Where and how to send tickets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Per request.
    #[serde(with = "humantime_serde", default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Requests per ticket at most (the first one included).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Pause after the first failed request; doubles up to `max_backoff`.
    #[serde(with = "humantime_serde", default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Tickets waiting to be sent at most; more are dropped.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_queue_capacity() -> usize {
    100
}

impl WebhookConfig {
    /// The defaults above for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            request_timeout: default_request_timeout(),
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            queue_capacity: default_queue_capacity(),
        }
    }
}

/// What became of a ticket; reported to the observer once per ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketDelivery {
    /// The webhook answered 2xx after `attempts` requests.
    Sent { attempts: u32 },
    /// A 4xx answer, or retries ran out; `reason` says which.
    Failed { attempts: u32, reason: String },
    /// The queue was full.
    Dropped,
}

/// Called with every ticket's fate, e.g. to count it in metrics. Runs on the sending task (or,
/// for `Dropped`, on the caller of `submit`): keep it quick.
pub type DeliveryObserver = Arc<dyn Fn(&Ticket, &TicketDelivery) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("invalid webhook URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The sending side of the ticket queue. Dropping every clone lets the task finish the queue and
/// end; await the handle from [`WebhookTicketer::spawn`] to wait for that.
#[derive(Clone)]
pub struct WebhookTicketer {
    queue: mpsc::Sender<Ticket>,
    observer: DeliveryObserver,
}

impl std::fmt::Debug for WebhookTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTicketer")
            .field("queue_capacity", &self.queue.max_capacity())
            .finish_non_exhaustive()
    }
}

impl WebhookTicketer {
    /// Starts the sending task on the current tokio runtime.
    pub fn spawn(
        config: WebhookConfig,
        observer: DeliveryObserver,
    ) -> Result<(Self, JoinHandle<()>), TicketError> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| TicketError::Url {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TicketError::Url {
                url: config.url.clone(),
                reason: "scheme must be http or https".to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(TicketError::Client)?;
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let sender = Sender {
            client,
            url,
            config,
            observer: observer.clone(),
        };
        let task = tokio::spawn(sender.run(receiver));
        Ok((Self { queue, observer }, task))
    }

    /// Queues `ticket` without waiting. Returns `false` (and reports `Dropped`) when full or
    /// when the sending task has ended.
    pub fn submit(&self, ticket: Ticket) -> bool {
        match self.queue.try_send(ticket) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(ticket))
            | Err(mpsc::error::TrySendError::Closed(ticket)) => {
                (self.observer)(&ticket, &TicketDelivery::Dropped);
                false
            }
        }
    }
}

struct Sender {
    client: reqwest::Client,
    url: reqwest::Url,
    config: WebhookConfig,
    observer: DeliveryObserver,
}

impl Sender {
    async fn run(self, mut receiver: mpsc::Receiver<Ticket>) {
        while let Some(ticket) = receiver.recv().await {
            let delivery = self.deliver(&ticket).await;
            (self.observer)(&ticket, &delivery);
        }
    }

    async fn deliver(&self, ticket: &Ticket) -> TicketDelivery {
        let mut backoff = self.config.initial_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .client
                .post(self.url.clone())
                .header("Idempotency-Key", &ticket.ticket_id)
                .json(ticket)
                .send()
                .await;
            let reason = match result {
                Ok(response) if response.status().is_success() => {
                    return TicketDelivery::Sent { attempts };
                }
                Ok(response) if response.status().is_client_error() => {
                    // The webhook refuses this ticket; sending it again will not change that.
                    return TicketDelivery::Failed {
                        attempts,
                        reason: format!("webhook answered {}", response.status()),
                    };
                }
                Ok(response) => format!("webhook answered {}", response.status()),
                Err(error) => format!("request failed: {error}"),
            };
            if attempts >= self.config.max_attempts.max(1) {
                return TicketDelivery::Failed { attempts, reason };
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(self.config.max_backoff);
        }
    }
}

/// A [`FailureWindow`] and a [`WebhookTicketer`] together: what a service calls per failure.
#[derive(Debug)]
pub struct FailureTicketing {
    window: Mutex<FailureWindow>,
    ticketer: WebhookTicketer,
}

impl FailureTicketing {
    pub fn new(policy: TicketPolicy, ticketer: WebhookTicketer) -> Self {
        Self {
            window: Mutex::new(FailureWindow::new(policy)),
            ticketer,
        }
    }

    /// Counts one failure and queues a ticket when it crosses the threshold. Never blocks on
    /// the network. Returns whether a ticket was queued.
    pub fn record_failure(&self, dataset: &str, rule: &str, event_id: &str) -> bool {
        let ticket = {
            // A poisoned lock only means another thread panicked mid-count; the counts are
            // still usable.
            let mut window = self
                .window
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            window.record_failure(dataset, rule, event_id, SystemTime::now())
        };
        ticket.is_some_and(|ticket| self.ticketer.submit(ticket))
    }
}
