//! `summitctl`: the operator's command line. Each subcommand lives in its own module and owns its
//! arguments; `main` only parses and dispatches.

use clap::{Parser, Subcommand};

mod dq;
mod registry;
mod schema;

#[derive(Debug, Parser)]
#[command(name = "summitctl", version, about = "Summit Ingest operator tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Data-quality rules: check files of records against a rule set or a GX suite.
    Dq(dq::DqCommand),
    /// Schemas: the compatibility gate over schemas/ (and a registry).
    Schema(schema::SchemaCommand),
    /// The project's Confluent-compatible schema registry.
    Registry(registry::RegistryCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dq(command) => dq::run(command),
        Command::Schema(command) => schema::run(command),
        Command::Registry(command) => registry::run(command),
    }
}
