//! `summitctl registry serve`: runs the project's schema registry in the foreground, the same
//! service as the `schema-registry` binary (same flags and environment variables).

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct RegistryCommand {
    #[command(subcommand)]
    action: RegistryAction,
}

#[derive(Debug, Subcommand)]
enum RegistryAction {
    /// Serve the Confluent-compatible registry API from a Postgres database.
    Serve {
        #[arg(
            long,
            env = "SUMMIT_REGISTRY_LISTEN",
            default_value = "127.0.0.1:18081"
        )]
        listen: String,
        #[arg(long, env = "SUMMIT_REGISTRY_DATABASE_URL")]
        database_url: String,
    },
}

pub(crate) fn run(command: RegistryCommand) -> anyhow::Result<()> {
    let RegistryAction::Serve {
        listen,
        database_url,
    } = command.action;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let pool = schema_registry_server::connect(&database_url, 16)
            .await
            .context("--database-url / SUMMIT_REGISTRY_DATABASE_URL")?;
        let listener = schema_registry_server::bind(&listen)
            .await
            .context("--listen / SUMMIT_REGISTRY_LISTEN")?;
        eprintln!("schema registry listening on {listen}");
        schema_registry_server::serve(listener, pool, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the schema registry")
    })
}
