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
    /// Replace the running process of this node: take its sockets and channels at the node's
    /// `handover`, serve, and let it finish (an upgrade with no request failed).
    #[arg(long)]
    take_over: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
    /// Replace the running process of this node by the binary at its path (an upgrade): the
    /// new process takes its sockets and channels at the node's `handover`, serves, and the
    /// old one lets its responses in flight complete and exits; a new process that fails
    /// leaves the old one serving.
    Replace,
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
    if let Some(Command::Replace) = cli.command {
        return replace(&deployment, &name).await;
    }
    let node = streamnode::daemon::start(&deployment, &name, cli.take_over).await?;
    let mut signals = daemon::signals::Signals::with_drain()?;
    let replacer = node.replacer.clone();
    let replaced = daemon::handover::replaced(replacer.as_ref());
    tokio::pin!(replaced);
    loop {
        let request = tokio::select! {
            request = signals.next() => request,
            _ = &mut replaced => {
                info!("replaced: finishing the responses in flight");
                node.finish().await;
                info!("replaced: exiting");
                return Ok(());
            }
        };
        match request {
            Request::Reload => info!(
                "SIGHUP: restart streamnode to apply deployment changes (`streamnode replace` restarts it without a failed request)"
            ),
            Request::Drain => {
                node.state.set_draining(true);
                info!("SIGUSR1: draining (viewers keep playing, healthd takes the node out)");
            }
            Request::Undrain => {
                node.state.set_draining(false);
                info!("SIGUSR2: drain ended");
            }
            Request::Stop => break,
        }
    }
    info!("shutting down");
    Ok(())
}

/// Asks the running node (its admin endpoint) to replace itself, and says how it went.
async fn replace(deployment: &Deployment, name: &str) -> Result<()> {
    let node = deployment
        .nodes()
        .find(|(_, n)| n.name == name)
        .map(|(_, n)| n)
        .with_context(|| format!("node {name:?} is not in the deployment file"))?;
    let admin = node
        .admin
        .with_context(|| format!("node {name:?} has no admin endpoint to ask"))?
        .to_string();
    let token = node.admin_token.as_ref().map(|t| t.resolve()).transpose()?;
    let key = "the node's `handover`";
    print!(
        "{}",
        daemon::handover::ask(&admin, token.as_deref(), key).await?
    );
    Ok(())
}
