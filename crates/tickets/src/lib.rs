//! Data-quality tickets (DESIGN §5, issue 5 item 5): when one rule's failures on a dataset pass a
//! threshold within a time window, one ticket is POSTed to a webhook — at most one per rule and
//! dataset per window — with the counts and sample event ids, retried with backoff, sent off the
//! hot path.

mod webhook;
mod window;

pub use webhook::{
    DeliveryObserver, FailureTicketing, TicketDelivery, TicketError, WebhookConfig, WebhookTicketer,
};
pub use window::{FailureWindow, Ticket, TicketPolicy};
