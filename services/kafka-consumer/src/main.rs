//! kafka-consumer: load config, prepare routes (rules, registry), run the pipeline until
//! SIGTERM/SIGINT, drain and commit within the grace period.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kafka_consumer::config::{Config, DeliveryMode};
use kafka_consumer::exactly_once::TransactionError;
use kafka_consumer::service::SERVICE_NAME;
use summit_ingest::RouteTable;
use summit_kafka::FatalTransaction;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(about = "Kafka source topics into the Summit event mesh")]
struct Args {
    /// YAML config file; `SUMMIT_<SECTION>__<KEY>` variables override its keys.
    #[arg(long, env = "SUMMIT_CONFIG")]
    config: PathBuf,
}

/// mimalloc instead of glibc malloc: outputs are allocated on the consuming thread and freed on
/// librdkafka's delivery thread, and glibc's per-thread arenas spent ~20 % of the process in
/// `_int_malloc`/`_int_free`/`malloc_consolidate` on that pattern (ingest bench profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for configuration errors, so scripts can tell them from runtime failures.
const EXIT_CONFIG: u8 = 2;
/// Exit code when exactly_once's producer was fenced by a newer instance with the same id.
const EXIT_FENCED: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config, std::env::vars()) {
        Ok(config) => Arc::new(config),
        Err(error) => {
            eprintln!("kafka-consumer: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Kept to the end of main: dropping it flushes buffered spans.
    let _tracing = match summit_telemetry::init_tracing(SERVICE_NAME, &config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("kafka-consumer: configuration error: telemetry: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let routes = match config.prepare_routes().await {
        Ok(routes) => routes,
        Err(error) => {
            eprintln!("kafka-consumer: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(config, routes).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-consumer: {error}");
            error.exit_code()
        }
    }
}

/// Why a run ended with an error; the exit code is decided here, from the type.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Service(#[from] kafka_consumer::service::ServiceError),
    #[error(transparent)]
    Transactions(#[from] TransactionError),
}

impl RunError {
    fn exit_code(&self) -> ExitCode {
        match self {
            // Fenced: another process took this instance's transactional id; restarting this
            // one would only fence that one in turn.
            Self::Transactions(TransactionError::Producer(FatalTransaction::Fenced(_))) => {
                ExitCode::from(EXIT_FENCED)
            }
            _ => ExitCode::FAILURE,
        }
    }
}

async fn run(config: Arc<Config>, routes: RouteTable) -> Result<(), RunError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
            _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
        }
    };
    if config.delivery.mode == DeliveryMode::ExactlyOnce {
        kafka_consumer::exactly_once::run(config, routes, shutdown).await?;
        return Ok(());
    }
    let outcome = kafka_consumer::service::run(config, routes, shutdown).await?;
    if !outcome.drained {
        tracing::warn!("grace period ended with unacknowledged outputs; they will be re-read");
    }
    Ok(())
}
