//! `config`: validate and print deployment files.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::Deployment;
use config::cli::{ConfigArgs, check_config};

/// Validate and inspect the deployment file shared by every daemon.
#[derive(Parser)]
#[command(name = "config", version)]
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
    /// Print the deployment file with every default filled in.
    Print,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Print => {
            let loaded = cli
                .config
                .path()
                .map_err(anyhow::Error::msg)
                .and_then(|path| Ok(Deployment::load(path)?))
                .and_then(|d| Ok(d.to_toml()?));
            match loaded {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
