//! `streamnode`: the HLS live origin of one node (`--config FILE --node NODE`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::Deployment;
use config::cli::{ConfigArgs, check_config};
use daemon::signals::Request;
use tracing::info;

/// HLS live origin with redundant MPEG-TS ingest.
///
/// Without a subcommand, runs the node named by `--node`.
#[derive(Parser)]
#[command(name = "streamnode", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// The node (from `[[sites.nodes]]`) this process is.
    #[arg(long, short = 'n', global = true, env = "ANYCAST_NODE")]
    node: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig) = cli.command {
        return check_config(&cli.config);
    }
    daemon::process::run(None, || async {
        run(cli).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn run(cli: Cli) -> Result<()> {
    let path = cli.config.path().map_err(anyhow::Error::msg)?;
    let deployment = Deployment::load(path)?;
    let name = cli.node.context("which node is this? pass --node NODE")?;
    let node = streamnode::daemon::start(&deployment, &name).await?;
    let mut signals = daemon::signals::Signals::with_drain()?;
    loop {
        match signals.next().await {
            Request::Reload => info!("SIGHUP: restart streamnode to apply deployment changes"),
            Request::Drain => {
                node.set_draining(true);
                info!("SIGUSR1: draining (viewers keep playing, healthd takes the node out)");
            }
            Request::Undrain => {
                node.set_draining(false);
                info!("SIGUSR2: drain ended");
            }
            Request::Stop => break,
        }
    }
    info!("shutting down");
    Ok(())
}
