//! `summitctl`: the operator's command line. Each subcommand lives in its own module and owns its
//! arguments; `main` only parses and dispatches.

use clap::{Parser, Subcommand};

mod dq;
mod registry;
mod schema;
mod transactions;

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
    /// Kafka: transactions left open by exactly_once kafka-consumer instances.
    Kafka(transactions::KafkaCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dq(command) => dq::run(command),
        Command::Schema(command) => schema::run(command),
        Command::Registry(command) => registry::run(command),
        Command::Kafka(command) => transactions::run(command),
    }
}
