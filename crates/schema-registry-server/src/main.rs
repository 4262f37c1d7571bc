//! `schema-registry`: the project's Confluent-compatible schema registry service.

use clap::Parser;
use schema_registry_server::ServeOptions;

#[derive(Debug, Parser)]
#[command(
    name = "schema-registry",
    version,
    about = "Confluent-compatible schema registry on Postgres"
)]
struct Cli {
    #[command(flatten)]
    options: ServeOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    schema_registry_server::run(&cli.options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
