//! `bgp-speaker`: BGP-4 speaker announcing a site's anycast prefixes to its upstream routers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::cli::{ConfigArgs, check_config};

/// BGP-4 speaker announcing a site's anycast prefixes to its upstream routers.
#[derive(Parser)]
#[command(name = "bgp-speaker", version)]
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
