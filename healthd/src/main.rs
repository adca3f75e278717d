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
        let path = cli.config.path().map_err(anyhow::Error::msg)?;
        let deployment = Deployment::load(path)?;
        let site = match &cli.site {
            Some(site) => site.clone(),
            None if deployment.sites.len() == 1 => deployment.sites[0].name.clone(),
            None => anyhow::bail!("the deployment has several sites: pass --site SITE"),
        };
        healthd::daemon::run(deployment, &site, Some(path.to_path_buf())).await?;
        Ok(ExitCode::SUCCESS)
    })
}
