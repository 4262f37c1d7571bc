//! `summitctl registry serve`: runs the project's schema registry in the foreground, the same
//! service as the `schema-registry` binary (same flags and environment variables).

use anyhow::Context;
use clap::{Args, Subcommand};
use schema_registry_server::ServeOptions;

#[derive(Debug, Args)]
pub(crate) struct RegistryCommand {
    #[command(subcommand)]
    action: RegistryAction,
}

#[derive(Debug, Subcommand)]
enum RegistryAction {
    /// Serve the Confluent-compatible registry API from a Postgres database.
    Serve(ServeOptions),
}

pub(crate) fn run(command: RegistryCommand) -> anyhow::Result<()> {
    let RegistryAction::Serve(options) = command.action;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        eprintln!("starting the schema registry on {}", options.listen);
        schema_registry_server::run(&options, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}
