//! A Confluent-compatible schema registry (the REST subset in `schema-registry-api.md`), stored
//! in Postgres and judging compatibility with `summit-schema`'s engine, the same one the CI gate
//! uses. For local runs, tests and the demo; production points at Confluent SR, Karapace,
//! Apicurio or Redpanda through the same client.

mod api;
mod error;
mod store;

use std::net::SocketAddr;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

pub use error::{ApiError, StartError};

/// Connects to `database_url` and applies the embedded migrations.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, StartError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(database_url)
        .await
        .map_err(|source| StartError::Database {
            url: database_url.to_owned(),
            source,
        })?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .map_err(|source| StartError::Migrate {
            url: database_url.to_owned(),
            source,
        })?;
    Ok(pool)
}

/// The registry's HTTP application over an already migrated pool.
pub fn app(pool: PgPool) -> axum::Router {
    api::routes(pool)
}

/// Binds `address`; returns the listener so callers can learn the port when they asked for 0.
pub async fn bind(address: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen {
            address: address.to_owned(),
            source,
        })
}

/// Serves the registry until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(pool))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The service's command-line flags, shared by the `schema-registry` binary and
/// `summitctl registry serve` so both accept the same flags and environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// Address to listen on.
    #[arg(
        long,
        env = "SUMMIT_REGISTRY_LISTEN",
        default_value = "127.0.0.1:18081"
    )]
    pub listen: String,
    /// Postgres URL of the registry's database (migrated at start-up).
    #[arg(long, env = "SUMMIT_REGISTRY_DATABASE_URL")]
    pub database_url: String,
    /// Largest number of database connections.
    #[arg(long, env = "SUMMIT_REGISTRY_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
}

/// Connects, migrates, binds and serves until `shutdown` resolves.
pub async fn run(
    options: &ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let pool = connect(&options.database_url, options.max_connections).await?;
    let listener = bind(&options.listen).await?;
    tracing::info!(address = %options.listen, "schema registry listening");
    serve(listener, pool, shutdown)
        .await
        .map_err(|source| StartError::Serve { source })
}

/// A registry running on a background task, for tests, benchmarks and `summitctl`.
#[derive(Debug)]
pub struct RunningRegistry {
    pub address: SocketAddr,
    pub url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningRegistry {
    /// Starts the app on `address` (use `127.0.0.1:0` for a free port) over `pool`.
    pub async fn start(address: &str, pool: PgPool) -> Result<Self, StartError> {
        let listener = bind(address).await?;
        let local = listener.local_addr().map_err(|source| StartError::Listen {
            address: address.to_owned(),
            source,
        })?;
        let task = tokio::spawn(serve(listener, pool, std::future::pending()));
        Ok(Self {
            address: local,
            url: format!("http://{local}"),
            task,
        })
    }
}

impl Drop for RunningRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}
