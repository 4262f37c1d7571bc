//! The ingest core (DESIGN §2): what every ingest service runs whatever its source, so the
//! pipeline is written once and a source service is an adapter.
//!
//! - [`route`]: a source (topic or stream) to its route — dataset, decoder, rule set — prepared
//!   and checked at start-up from [`route::RouteSpec`]s, errors naming the config key.
//! - [`observe`]: the observer seam ([`OutcomeObserver`], told about every routed or
//!   dead-lettered record by lane and position) and the observers every service has:
//!   [`OutcomeMetrics`], [`LatencyMetrics`] (a delivery observer) and [`TicketFeed`].
//!
//! No Kafka or AWS client is in this crate's dependencies (`cargo tree -p summit-ingest`).

pub mod observe;
pub mod route;

pub use observe::{
    LatencyMetrics, ObservedRecord, ObserverSet, OutcomeMetrics, OutcomeObserver, RecordOutcome,
    TicketFeed, latency_since,
};
pub use route::{Route, RouteError, RouteSpec, RouteTable};
