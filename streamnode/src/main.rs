//! `streamnode`: HLS live origin with redundant MPEG-TS ingest.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::cli::{ConfigArgs, check_config};

/// HLS live origin with redundant MPEG-TS ingest.
#[derive(Parser)]
#[command(name = "streamnode", version)]
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
