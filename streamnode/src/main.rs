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
    /// Mint a subscriber token of a `[[tokens]]` profile, signed with its first key, as the
    /// middleware would (for tests, and for middleware authors to compare with theirs).
    /// Prints the token, or with --base the URL to play.
    Token {
        /// The token profile.
        #[arg(long)]
        profile: String,
        /// EdgeAuth: the paths the token opens, `*` matching anything, `!` between paths
        /// (`/news/*`).
        #[arg(long)]
        acl: Option<String>,
        /// EdgeAuth: a token for this one path instead of an ACL; secure link: the path
        /// signed.
        #[arg(long)]
        url: Option<String>,
        /// Seconds from now (or --start) until the token expires.
        #[arg(long, default_value_t = 3600)]
        window: u64,
        /// Unix seconds the token starts at (EdgeAuth `st`); none: valid at once.
        #[arg(long)]
        start: Option<u64>,
        /// The client address the token is bound to.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// EdgeAuth: a session id.
        #[arg(long)]
        id: Option<String>,
        /// EdgeAuth: opaque data.
        #[arg(long)]
        data: Option<String>,
        /// Print the URL to play: this base (`http://live.tv.example.net:8080`), the path
        /// (--url, else the ACL's first path with `*` taken as `index.m3u8`), the token.
        #[arg(long)]
        base: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig) = cli.command {
        return check_config(&cli.config);
    }
    if let Some(Command::Token { .. }) = &cli.command {
        return match token(&cli) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
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

/// `token`: a token minted as asked, or the URL carrying it.
fn token(cli: &Cli) -> Result<String> {
    let Some(Command::Token {
        profile,
        acl,
        url,
        window,
        start,
        ip,
        id,
        data,
        base,
    }) = &cli.command
    else {
        anyhow::bail!("not the token command");
    };
    let path = cli.config.path().map_err(anyhow::Error::msg)?;
    let deployment = Deployment::load(path)?;
    let config = deployment.token_profile(profile).with_context(|| {
        let names: Vec<&str> = deployment.tokens.iter().map(|t| t.name.as_str()).collect();
        format!(
            "no token profile {profile:?} in the deployment file (its [[tokens]]: {})",
            names.join(", ")
        )
    })?;
    let signer = tokens::Profile::new(config)?;
    let end = start.unwrap_or_else(tokens::now) + window;
    let minted = signer.mint(&tokens::Mint {
        acl: acl.as_deref(),
        url: url.as_deref(),
        start: *start,
        end: Some(end),
        ip: *ip,
        id: id.as_deref(),
        data: data.as_deref(),
    })?;
    let Some(base) = base else {
        return Ok(minted.token);
    };
    let target = match (url, acl) {
        (Some(url), _) => url.clone(),
        (None, Some(acl)) => acl
            .split('!')
            .next()
            .unwrap_or("/")
            .replace('*', "index.m3u8"),
        (None, None) => "/".to_owned(),
    };
    Ok(format!(
        "{}{target}?{}",
        base.trim_end_matches('/'),
        minted.query
    ))
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
