//! `healthd`: stream-aware health checks for one site (`--config FILE --site SITE`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::Deployment;
use config::cli::{ConfigArgs, check_config};

/// Stream-aware health checks that drive the BGP speaker and publish the site feed.
///
/// Without a subcommand, runs the daemon for `--site`.
#[derive(Parser)]
#[command(name = "healthd", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// The site whose nodes this healthd checks.
    #[arg(long, short = 's', global = true, env = "ANYCAST_SITE")]
    site: Option<String>,
    /// Replace the running healthd of this site: take its listeners and what it knows of each
    /// node at `healthd.handover`, and go on deciding from there.
    #[arg(long)]
    take_over: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
    /// Replace the running healthd by the binary at its path (an upgrade): the new process
    /// takes its listeners and each node's state and goes on deciding; a new process that
    /// fails leaves the old one running.
    Replace,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig) = cli.command {
        return check_config(&cli.config);
    }
    daemon::process::run(None, || async {
        let path = cli.config.path().map_err(anyhow::Error::msg)?;
        let deployment = Deployment::load(path)?;
        let site = match &cli.site {
            Some(site) => site.clone(),
            None if deployment.sites.len() == 1 => deployment.sites[0].name.clone(),
            None => anyhow::bail!("the deployment has several sites: pass --site SITE"),
        };
        if let Some(Command::Replace) = cli.command {
            return replace(&deployment, &site).await;
        }
        healthd::daemon::run(deployment, &site, Some(path.to_path_buf()), cli.take_over).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `replace`: asks the running healthd (its admin endpoint) to start its replacement.
async fn replace(deployment: &Deployment, site: &str) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let site = deployment.site(site).context("site vanished")?;
    let token = site
        .healthd
        .admin_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()?;
    let admin = site.healthd.admin.to_string();
    print!(
        "{}",
        daemon::handover::ask(&admin, token.as_deref(), "healthd.handover").await?
    );
    Ok(ExitCode::SUCCESS)
}
