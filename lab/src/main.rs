//! `lab`: multi-site lab runner and the one-command demo.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::cli::{ConfigArgs, check_config};

/// Multi-site lab: topologies, fault injection and the demo.
#[derive(Parser)]
#[command(name = "lab", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo deployment (three sites on loopback) without root.
    Demo,
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Demo => match lab::demo::embedded() {
            Ok(d) => {
                println!("demo deployment ({}):\n", config::cli::summary(&d));
                print!("{}", lab::demo::topology_table(&d));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}
