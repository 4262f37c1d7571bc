//! `schema-registry`: the project's Confluent-compatible schema registry service.

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "schema-registry",
    version,
    about = "Confluent-compatible schema registry on Postgres"
)]
struct Options {
    /// Address to listen on.
    #[arg(
        long,
        env = "SUMMIT_REGISTRY_LISTEN",
        default_value = "127.0.0.1:18081"
    )]
    listen: String,
    /// Postgres URL of the registry's database (migrated at start-up).
    #[arg(long, env = "SUMMIT_REGISTRY_DATABASE_URL")]
    database_url: String,
    /// Largest number of database connections.
    #[arg(long, env = "SUMMIT_REGISTRY_MAX_CONNECTIONS", default_value_t = 16)]
    max_connections: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let options = Options::parse();
    let pool = schema_registry_server::connect(&options.database_url, options.max_connections)
        .await
        .context("--database-url / SUMMIT_REGISTRY_DATABASE_URL")?;
    let listener = schema_registry_server::bind(&options.listen)
        .await
        .context("--listen / SUMMIT_REGISTRY_LISTEN")?;
    tracing::info!(address = %options.listen, "schema registry listening");
    schema_registry_server::serve(listener, pool, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving the schema registry")
}
