//! `streamnode`: the HLS live origin of one node (`--config FILE --node NODE`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use config::Deployment;
use config::cli::{ConfigArgs, check_config};
use config::service::ChannelSource;
use streamnode::channel::Channel;
use streamnode::server::{NodeState, router};
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
    daemon::logging::init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let path = cli.config.path().map_err(anyhow::Error::msg)?;
    let deployment = Deployment::load(path)?;
    let name = cli.node.context("which node is this? pass --node NODE")?;
    let (_, node) = deployment
        .nodes()
        .find(|(_, n)| n.name == name)
        .with_context(|| format!("node {name:?} is not in {}", path.display()))?;
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut channels = HashMap::new();
    for service in node.services.iter().filter_map(|s| deployment.service(s)) {
        for channel_name in &service.channels {
            if channels.contains_key(channel_name) {
                continue;
            }
            let config = deployment
                .channel(channel_name)
                .with_context(|| format!("channel {channel_name:?} is not defined"))?;
            let channel = Arc::new(RwLock::new(Channel::new(
                &config.name,
                config.segment_duration.get(),
                config.window,
            )));
            match config.source {
                ChannelSource::Builtin => {
                    tokio::spawn(streamnode::feeder::builtin(channel.clone(), frozen.clone()));
                }
                ChannelSource::Udp => bail!(
                    "channel {channel_name:?}: UDP ingest is not available in this version of streamnode; use source = \"builtin\""
                ),
            }
            channels.insert(channel_name.clone(), channel);
        }
    }
    let mut state = NodeState::new(&node.name, node.capacity_mbps, channels);
    state.frozen = frozen;
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind(node.listen)
        .await
        .with_context(|| format!("cannot listen on {}", node.listen))?;
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    if let Some(admin) = node.admin {
        let drain = state.clone();
        let undrain = state.clone();
        let (freeze, unfreeze) = (state.frozen.clone(), state.frozen.clone());
        let routes = daemon::admin::router(Arc::new(String::new))
            .route(
                "/drain",
                axum::routing::post(move || async move {
                    drain.draining.store(true, Ordering::Relaxed);
                    "draining\n"
                }),
            )
            .route(
                "/undrain",
                axum::routing::post(move || async move {
                    undrain.draining.store(false, Ordering::Relaxed);
                    "ok\n"
                }),
            )
            // Fault injection for the lab: stop feeding while HTTP keeps answering.
            .route(
                "/freeze",
                axum::routing::post(move || async move {
                    freeze.store(true, Ordering::Relaxed);
                    tracing::warn!("streams frozen by request (fault injection)");
                    "frozen\n"
                }),
            )
            .route(
                "/unfreeze",
                axum::routing::post(move || async move {
                    unfreeze.store(false, Ordering::Relaxed);
                    "ok\n"
                }),
            );
        daemon::admin::serve(admin, routes).await?;
    }
    info!(node = %node.name, listen = %node.listen, channels = state.channels.len(), "streamnode running");
    let mut signals = daemon::signals::Signals::new()?;
    while signals.next().await == daemon::signals::Request::Reload {
        info!("SIGHUP: restart streamnode to apply deployment changes");
    }
    info!("shutting down");
    Ok(())
}
