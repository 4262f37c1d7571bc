//! `summitctl`: the operator's command line. Each subcommand lives in its own module and owns its
//! arguments; `main` only parses and dispatches.

use clap::{Parser, Subcommand};

mod dq;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dq(command) => dq::run(command),
    }
}
