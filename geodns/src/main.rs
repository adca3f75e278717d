//! `geodns`: Authoritative geo-DNS steering viewers to the nearest healthy site.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::cli::{ConfigArgs, check_config};

/// Authoritative geo-DNS steering viewers to the nearest healthy site.
#[derive(Parser)]
#[command(name = "geodns", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
    }
}
