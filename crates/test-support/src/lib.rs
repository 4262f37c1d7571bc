//! Test support for Summit Ingest: where the local servers started by `scripts/dev` listen, and
//! helpers that give every test its own uniquely named topic, stream, table, queue or database,
//! so tests run in parallel and re-runs never collide with what an earlier run left behind.
//!
//! Every endpoint comes from an environment variable whose default matches `scripts/dev`; the
//! script exports the same variables when it moves a port.

mod endpoints;
pub mod fault_proxy;
mod names;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqs")]
pub mod sqs;

pub use endpoints::Endpoints;
pub use names::unique_name;

/// What can go wrong while preparing a test resource. Each variant names the server and the
/// resource so a failing test says which part of the local infrastructure is missing.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("{server} at {endpoint} did not answer: {source}")]
    Unreachable {
        server: &'static str,
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{server}: could not create {what} `{name}`: {message}")]
    Create {
        server: &'static str,
        what: &'static str,
        name: String,
        message: String,
    },
    #[error("{server}: {what} `{name}` was not ready after {waited:?}")]
    NotReady {
        server: &'static str,
        what: &'static str,
        name: String,
        waited: std::time::Duration,
    },
}

pub type Result<T> = std::result::Result<T, SupportError>;
