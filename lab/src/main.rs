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
    /// Run the demo (three sites, a route collector, geodns on 127.0.0.1:5353) without root.
    Demo,
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Demo => {
            // Quiet by default: the status table is the output; RUST_LOG=info shows the daemons.
            if std::env::var_os("RUST_LOG").is_none() {
                // SAFETY: single-threaded at this point, before any runtime or thread starts.
                unsafe { std::env::set_var("RUST_LOG", "warn") };
            }
            daemon::logging::init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(lab::demo::run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
