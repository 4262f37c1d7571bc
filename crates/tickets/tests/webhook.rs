//! Tickets against a real HTTP server on 127.0.0.1 that fails, refuses or stalls on purpose.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use summit_tickets::{
    DeliveryObserver, FailureTicketing, Ticket, TicketDelivery, TicketPolicy, WebhookConfig,
    WebhookTicketer,
};
use tokio::sync::{Notify, mpsc};

/// An accepted request: its `Idempotency-Key` header and JSON body.
type Accepted = (Option<String>, serde_json::Value);

/// Answers `fail_first` requests with `failure`, then 200; records every request.
#[derive(Clone)]
struct Webhook {
    requests: Arc<AtomicUsize>,
    fail_first: usize,
    failure: StatusCode,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    /// When set, every request waits for it before answering.
    hold: Option<Arc<Notify>>,
}

async fn receive(
    State(hook): State<Webhook>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let n = hook.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(hold) = &hook.hold {
        hold.notified().await;
    }
    if n < hook.fail_first {
        return hook.failure;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    hook.accepted.lock().expect("lock").push((key, body));
    StatusCode::OK
}

async fn start_webhook(
    fail_first: usize,
    failure: StatusCode,
    hold: Option<Arc<Notify>>,
) -> (String, Webhook) {
    let hook = Webhook {
        requests: Arc::new(AtomicUsize::new(0)),
        fail_first,
        failure,
        accepted: Arc::new(Mutex::new(Vec::new())),
        hold,
    };
    let app = axum::Router::new()
        .route("/tickets", post(receive))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/tickets"), hook)
}

fn observer() -> (
    DeliveryObserver,
    mpsc::UnboundedReceiver<(Ticket, TicketDelivery)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let observer: DeliveryObserver = Arc::new(move |ticket: &Ticket, delivery: &TicketDelivery| {
        let _ = tx.send((ticket.clone(), delivery.clone()));
    });
    (observer, rx)
}

fn fast_config(url: String) -> WebhookConfig {
    WebhookConfig {
        request_timeout: Duration::from_secs(2),
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..WebhookConfig::new(url)
    }
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(Ticket, TicketDelivery)>,
) -> (Ticket, TicketDelivery) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery result in time")
        .expect("observer alive")
}

#[tokio::test]
async fn one_ticket_per_rule_per_window_arrives_after_503s() {
    let (url, hook) = start_webhook(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let (observer, mut results) = observer();
    let (ticketer, task) = WebhookTicketer::spawn(fast_config(url), observer).expect("ticketer");
    let ticketing = FailureTicketing::new(
        TicketPolicy {
            threshold: 3,
            window: Duration::from_secs(3600),
            max_samples: 2,
        },
        ticketer,
    );

    let mut queued = 0;
    for i in 0..10 {
        queued +=
            usize::from(ticketing.record_failure("orders", "amount_positive", &format!("a{i}")));
    }
    for i in 0..4 {
        queued += usize::from(ticketing.record_failure("orders", "id_present", &format!("b{i}")));
    }
    for i in 0..2 {
        queued +=
            usize::from(ticketing.record_failure("orders", "below_threshold", &format!("c{i}")));
    }
    assert_eq!(queued, 2, "one ticket per rule that crossed the threshold");

    let first = next(&mut results).await;
    let second = next(&mut results).await;
    // The first ticket absorbed both 503s.
    assert_eq!(first.1, TicketDelivery::Sent { attempts: 3 });
    assert_eq!(second.1, TicketDelivery::Sent { attempts: 1 });

    drop(ticketing);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends once the ticketer is dropped")
        .expect("no panic");
    assert_eq!(
        hook.requests.load(Ordering::SeqCst),
        4,
        "2 refused + 2 accepted"
    );

    let accepted = hook.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 2);
    let (key, body) = &accepted[0];
    assert_eq!(body["dataset"], "orders");
    assert_eq!(body["rule"], "amount_positive");
    assert_eq!(body["failures"], 3);
    assert_eq!(body["threshold"], 3);
    assert_eq!(body["window_seconds"], 3600);
    assert_eq!(body["sample_event_ids"], serde_json::json!(["a0", "a1"]));
    assert_eq!(
        key.as_deref(),
        body["ticket_id"].as_str(),
        "idempotency key = ticket id"
    );
    assert_eq!(accepted[1].1["rule"], "id_present");
    assert_eq!(
        accepted[1].1["sample_event_ids"],
        serde_json::json!(["b0", "b1"])
    );
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let (url, hook) = start_webhook(usize::MAX, StatusCode::BAD_REQUEST, None).await;
    let (observer, mut results) = observer();
    let (ticketer, _task) = WebhookTicketer::spawn(fast_config(url), observer).expect("ticketer");
    let ticketing = FailureTicketing::new(
        TicketPolicy {
            threshold: 1,
            window: Duration::from_secs(60),
            max_samples: 1,
        },
        ticketer,
    );
    assert!(ticketing.record_failure("orders", "r", "e1"));
    let (_, delivery) = next(&mut results).await;
    assert!(
        matches!(&delivery, TicketDelivery::Failed { attempts: 1, reason } if reason.contains("400")),
        "{delivery:?}"
    );
    assert_eq!(hook.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_stop_at_max_attempts_on_a_closed_port() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (observer, mut results) = observer();
    let (ticketer, _task) =
        WebhookTicketer::spawn(fast_config(format!("http://{closed}/tickets")), observer)
            .expect("ticketer");
    let ticketing = FailureTicketing::new(
        TicketPolicy {
            threshold: 1,
            window: Duration::from_secs(60),
            max_samples: 1,
        },
        ticketer,
    );
    assert!(ticketing.record_failure("orders", "r", "e1"));
    let (_, delivery) = next(&mut results).await;
    assert!(
        matches!(&delivery, TicketDelivery::Failed { attempts: 4, .. }),
        "{delivery:?}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_instead_of_blocking() {
    let hold = Arc::new(Notify::new());
    let (url, hook) = start_webhook(0, StatusCode::OK, Some(hold.clone())).await;
    let (observer, mut results) = observer();
    let config = WebhookConfig {
        queue_capacity: 1,
        ..fast_config(url)
    };
    let (ticketer, _task) = WebhookTicketer::spawn(config, observer).expect("ticketer");
    let ticketing = FailureTicketing::new(
        TicketPolicy {
            threshold: 1,
            window: Duration::from_secs(60),
            max_samples: 1,
        },
        ticketer,
    );
    // The first ticket is taken by the sender and stalls in the webhook...
    assert!(ticketing.record_failure("orders", "r1", "e1"));
    while hook.requests.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...the second fills the queue, the third has no room.
    assert!(ticketing.record_failure("orders", "r2", "e2"));
    assert!(!ticketing.record_failure("orders", "r3", "e3"));
    let (dropped, delivery) = next(&mut results).await;
    assert_eq!(delivery, TicketDelivery::Dropped);
    assert_eq!(dropped.rule, "r3");

    hold.notify_one();
    let (sent, delivery) = next(&mut results).await;
    assert_eq!(
        (sent.rule.as_str(), delivery),
        ("r1", TicketDelivery::Sent { attempts: 1 })
    );
    // r2 waits for the next notification.
    while hook.requests.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hold.notify_one();
    let (sent, delivery) = next(&mut results).await;
    assert_eq!(
        (sent.rule.as_str(), delivery),
        ("r2", TicketDelivery::Sent { attempts: 1 })
    );
}
