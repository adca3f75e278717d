//! `bgp-speaker`: the daemon (`--config FILE --site SITE`) and its operator CLI.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bgp_speaker::cli;
use bgp_speaker::control;
use bgp_speaker::speaker;
use clap::{Args, Parser, Subcommand};
use config::Deployment;
use config::cli::{ConfigArgs, check_config};
use config::types::{Community, HumanDuration, LargeCommunity};
use daemon::handover::{Inherited, Offer, Offered};
use ipnet::IpNet;
use speaker_control::{Client, DEFAULT_TIMEOUT, Op, Reply, RouteAttrs};
use tracing::{info, warn};

/// BGP-4 speaker announcing a site's anycast prefixes to its upstream routers.
///
/// Without a subcommand, runs the daemon for `--site`.
#[derive(Parser)]
#[command(name = "bgp-speaker", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// The site whose speaker this is.
    #[arg(long, short = 's', global = true, env = "ANYCAST_SITE")]
    site: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Replace the running speaker of this site: take its listeners and table at
    /// `speaker.handover`, and bring the sessions up again once it has let them go (the
    /// upstreams keep the routes through graceful restart).
    #[arg(long)]
    take_over: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the deployment file and report every problem with its line and key.
    CheckConfig,
    /// Replace the running speaker by the binary at its path (an upgrade): the new process
    /// takes its listeners and table, the old one ends its sessions without a NOTIFICATION,
    /// and the new one brings them up again; upstreams keep the routes meanwhile (graceful
    /// restart). A new process that fails leaves the old one running.
    Replace,
    /// Show peers or routes.
    #[command(subcommand)]
    Show(Show),
    /// Announce a prefix (healthd does this with a lease; an operator's stays until withdrawn).
    Announce(AnnounceArgs),
    /// Withdraw a prefix.
    Withdraw {
        #[arg(required = true)]
        prefixes: Vec<IpNet>,
    },
    /// Tag routes with GRACEFUL_SHUTDOWN (RFC 8326), then withdraw them after a delay; they
    /// stay drained until `undrain`, whatever healthd asks meanwhile.
    Drain {
        /// Prefixes to drain; all when none is given.
        prefixes: Vec<IpNet>,
        /// Delay before the withdrawal; the site's `speaker.drain_delay` by default.
        #[arg(long)]
        delay: Option<HumanDuration>,
        /// Who is draining, shown by `show routes` (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// End a drain: the routes go out again as healthd announces them.
    Undrain {
        /// Prefixes to undrain; all when none is given.
        prefixes: Vec<IpNet>,
    },
    /// Administratively stop or start a peer.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Report that every route has been announced again after a restart, so End-of-RIB goes
    /// out now instead of after `speaker.startup_hold` (healthd does this itself).
    Synced,
}

#[derive(Subcommand)]
enum Show {
    /// Peers: state, uptime, prefixes, flaps and the last error.
    Neighbors,
    /// Routes: this speaker's table, or what one peer was sent or sent us.
    Routes {
        #[command(subcommand)]
        which: Option<RoutesOf>,
    },
}

#[derive(Subcommand)]
enum RoutesOf {
    /// The routes sent to PEER, after export policy.
    Advertised { peer: String },
    /// The routes PEER sent us (needs `import.enabled`).
    Received { peer: String },
}

#[derive(Subcommand)]
enum PeerCmd {
    /// Close the session with a Cease carrying the reason; stays down until `peer up`.
    Down {
        peer: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Up {
        peer: String,
    },
}

#[derive(Args)]
struct AnnounceArgs {
    /// Prefixes announced with the attributes below.
    #[arg(required = true)]
    prefixes: Vec<IpNet>,
    #[arg(long)]
    service: Option<String>,
    /// Withdraw automatically unless announced again within this time.
    #[arg(long)]
    lease: Option<HumanDuration>,
    /// Standard community (repeatable): ASN:VALUE or a well-known name.
    #[arg(long = "community")]
    communities: Vec<Community>,
    /// Large community (repeatable): GLOBAL:LOCAL1:LOCAL2.
    #[arg(long = "large-community")]
    large_communities: Vec<LargeCommunity>,
    #[arg(long, default_value_t = 0)]
    prepend: u8,
    #[arg(long)]
    med: Option<u32>,
    #[arg(long)]
    next_hop: Option<IpAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig) = cli.command {
        return check_config(&cli.config);
    }
    daemon::process::run(None, || dispatch(cli))
}

fn load(cli: &Cli) -> Result<(Deployment, String)> {
    let path = cli.config.path().map_err(anyhow::Error::msg)?;
    let deployment = Deployment::load(path)?;
    let site = match &cli.site {
        Some(site) => site.clone(),
        None if deployment.sites.len() == 1 => deployment.sites[0].name.clone(),
        None => bail!("the deployment has several sites: pass --site SITE"),
    };
    if deployment.site(&site).is_none() {
        let known: Vec<&str> = deployment.sites.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "site {site:?} is not in {} (known: {})",
            path.display(),
            known.join(", ")
        );
    }
    Ok((deployment, site))
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let (deployment, site_name) = load(&cli)?;
    let site = deployment.site(&site_name).context("site vanished")?;
    let endpoint = site.speaker.control_endpoint(&site.name);
    let token = site
        .speaker
        .control_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()?;
    let op =
        match cli.command {
            None => {
                let path = cli.config.path().map_err(anyhow::Error::msg)?.clone();
                return run(deployment, path, site_name, token, cli.take_over).await;
            }
            Some(Command::CheckConfig) => unreachable!("handled before the runtime starts"),
            Some(Command::Show(Show::Neighbors)) => Op::Neighbors,
            Some(Command::Show(Show::Routes { which: None })) => Op::Routes,
            Some(Command::Show(Show::Routes {
                which: Some(RoutesOf::Advertised { peer }),
            })) => Op::Advertised { peer },
            Some(Command::Show(Show::Routes {
                which: Some(RoutesOf::Received { peer }),
            })) => Op::Received { peer },
            Some(Command::Announce(a)) => Op::Announce {
                prefixes: a.prefixes,
                attrs: RouteAttrs {
                    prepend: a.prepend,
                    med: a.med,
                    next_hop: a.next_hop,
                    communities: a.communities,
                    large_communities: a.large_communities,
                    ..Default::default()
                },
                service: a.service,
                lease_ms: a.lease.map(|l| l.get().as_millis() as u64),
            },
            Some(Command::Withdraw { prefixes }) => Op::Withdraw { prefixes },
            Some(Command::Drain {
                prefixes,
                delay,
                by,
            }) => Op::Drain {
                prefixes: (!prefixes.is_empty()).then_some(prefixes),
                delay_ms: delay.map(|d| d.get().as_millis() as u64),
                by: Some(by.unwrap_or_else(|| {
                    std::env::var("USER").unwrap_or_else(|_| "an operator".into())
                })),
            },
            Some(Command::Undrain { prefixes }) => Op::Undrain {
                prefixes: (!prefixes.is_empty()).then_some(prefixes),
            },
            Some(Command::Peer(PeerCmd::Down { peer, reason })) => Op::PeerDown { peer, reason },
            Some(Command::Peer(PeerCmd::Up { peer })) => Op::PeerUp { peer },
            Some(Command::Synced) => Op::Synced,
            Some(Command::Replace) => Op::Replace,
        };
    // A replacement may take a while to serve; everything else answers at once.
    let timeout = if op == Op::Replace {
        REPLACE_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    };
    let mut client = Client::connect(&endpoint, token, timeout).await?;
    if op.streams_routes() {
        return show_routes(&mut client, op, cli.json).await;
    }
    let reply = client.call(op).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        match &reply {
            Reply::Neighbors(peers) => print!("{}", cli::neighbors_table(peers)),
            other => println!("{}", cli::change_line(other)),
        }
    }
    Ok(if matches!(reply, Reply::Error(_)) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// How long a replaced speaker waits for its replacement's word, and a replacement for the old
/// one's sessions to end.
const REPLACE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);
const OLD_SESSIONS_GONE: std::time::Duration = std::time::Duration::from_secs(5);

async fn run(
    deployment: Deployment,
    config_path: std::path::PathBuf,
    site_name: String,
    token: Option<String>,
    take_over: bool,
) -> Result<ExitCode> {
    let site = deployment.site(&site_name).context("site vanished")?;
    let endpoint = site.speaker.control_endpoint(&site.name);
    // Taken first: a replacement that cannot reach the running speaker changes nothing.
    let mut inherited = match (take_over, &site.speaker.handover) {
        (false, _) => Inherited::default(),
        (true, None) => bail!(
            "--take-over needs speaker.handover: the socket where the running speaker offers its listeners"
        ),
        (true, Some(path)) => Inherited::receive(path, "bgp-speaker")?,
    };
    let carried: Option<(speaker::Carried, Vec<u8>)> = inherited
        .state()
        .context("the table the running speaker handed over")?;
    let mut offered = Offered::default();
    let bgp = match site.speaker.listen {
        Some(addr) => {
            let received = inherited.take(&daemon::handover::name("bgp", addr));
            let listener = match received {
                Some(fd) => std::net::TcpListener::from(fd),
                None => speaker::bgp_listener(addr)
                    .with_context(|| format!("cannot listen for BGP on {addr}"))?,
            };
            offered.tcp("bgp", addr, &listener)?;
            Some(listener)
        }
        None => None,
    };
    if let Some((carried, _)) = &carried {
        info!(
            routes = carried.rib.len(),
            complete = carried.complete,
            "going on from the replaced speaker's table"
        );
    }
    let replacing = speaker::Replacing {
        carried: carried.map(|(c, _)| c),
        listener: bgp,
        hold_peers: inherited.replacing(),
    };
    let (speaker, _table) = speaker::start_replacing(&deployment, &site_name, replacing).await?;
    let slot = control::ReplacerSlot::default();
    let control = control::serve_handing_over(
        &endpoint,
        token.clone(),
        speaker.clone(),
        slot.clone(),
        &mut inherited,
        &mut offered,
    )
    .await?;
    let admin_addr = site.speaker.admin;
    let admin_listener =
        inherited
            .tcp("admin", admin_addr)
            .map_err(|cause| daemon::admin::AdminError {
                addr: admin_addr,
                cause,
            })?;
    offered.tcp("admin", admin_addr, &admin_listener)?;
    let offer = site
        .speaker
        .handover
        .as_ref()
        .map(|path| Offer::bind(path, take_over, "bgp-speaker"))
        .transpose()
        .context("speaker.handover")?;
    let replacer = match offer {
        Some(offer) => {
            let carry = TableCarry {
                speaker: speaker.clone(),
                runtime: tokio::runtime::Handle::current(),
            };
            Some(offer.start(offered, std::sync::Arc::new(carry))?)
        }
        None => None,
    };
    if let Some(r) = &replacer {
        let _ = slot.set(r.clone());
        r.on_served(control.stop_accepting());
    }
    let scrape = speaker.clone();
    let admin = daemon::admin::router(
        "bgp_speaker",
        std::sync::Arc::new(move || bgp_speaker::metrics::render(&scrape)),
        speaker.liveness(),
    );
    let admin = daemon::admin::serve_on(tokio::net::TcpListener::from_std(admin_listener)?, admin);
    if let Some(r) = &replacer {
        r.on_served(admin.stop_accepting());
    }
    daemon::systemd::serving(&speaker.liveness());
    if let Some(released) = inherited.serving_until_released() {
        // The upstreams must see the old sessions end before the new ones open: two at once
        // would be a collision, not a restart.
        if !released.wait(OLD_SESSIONS_GONE).await {
            warn!(
                "the replaced speaker did not let its sessions go within {} s: opening ours anyway",
                OLD_SESSIONS_GONE.as_secs()
            );
        }
        speaker.start_peers().await?;
        info!("sessions opening again: the upstreams kept our routes through graceful restart");
    }
    info!(site = %site_name, control = %endpoint, peers = site.peers.len(), "bgp-speaker running");

    let mut signals = daemon::signals::Signals::new()?;
    let replaced = daemon::handover::replaced(replacer.as_ref());
    tokio::pin!(replaced);
    loop {
        let request = tokio::select! {
            request = signals.next() => request,
            _ = &mut replaced => {
                // No Cease: the upstreams keep our routes until the replacement announces
                // them again. The control socket stays for the replacement.
                info!("replaced: ending the sessions without a NOTIFICATION and exiting");
                speaker.vanish_all();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                if let Some(r) = &replacer {
                    r.release();
                }
                control.leave();
                admin.finish(std::time::Duration::from_secs(2)).await;
                return Ok(ExitCode::SUCCESS);
            }
        };
        if request != daemon::signals::Request::Reload {
            break;
        }
        match Deployment::load(&config_path) {
            Ok(new) if new.site(&site_name).is_none() => {
                warn!(
                    "SIGHUP: site {site_name} is no longer in the deployment file; keeping the running configuration"
                )
            }
            Ok(new) => match speaker.reconfigure(&new, &site_name).await {
                Ok(r) => {
                    info!(added = ?r.added, removed = ?r.removed, restarted = ?r.restarted, "SIGHUP: deployment file applied")
                }
                Err(e) => warn!("SIGHUP: could not apply the deployment file: {e}"),
            },
            Err(e) => {
                warn!("SIGHUP: deployment file is invalid, keeping the running configuration:\n{e}")
            }
        }
    }
    info!("shutting down: closing sessions with Cease");
    speaker.stop_all("bgp-speaker shutting down");
    // Give the Cease messages a moment to leave (a peer that does not read gets no more).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(control);
    Ok(ExitCode::SUCCESS)
}

/// The table a running speaker hands its replacement, asked of the table task from the
/// hand-over's thread.
struct TableCarry {
    speaker: speaker::SpeakerHandle,
    runtime: tokio::runtime::Handle,
}

impl daemon::handover::Carry for TableCarry {
    fn capture(&self) -> Result<daemon::handover::Captured, String> {
        let carried = self
            .runtime
            .block_on(self.speaker.save())
            .ok_or("the route table did not answer")?;
        Ok(daemon::handover::Captured {
            state: serde_json::to_value(carried).map_err(|e| e.to_string())?,
            payload: Vec::new(),
        })
    }
}

/// `show routes [advertised|received PEER]`: printed as the routes arrive, one per line, so a
/// full table never sits in memory (the columns have fixed widths for that reason).
async fn show_routes(client: &mut Client, op: Op, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !json {
        let header = match op {
            Op::Routes => cli::routes_header(),
            _ => cli::peer_routes_header(),
        };
        writeln!(out, "{header}")?;
    }
    let mut failed = None;
    let counted = client
        .routes(op, |route| {
            let line = match (&route, json) {
                (Reply::Route(r), true) => serde_json::to_string(r).unwrap_or_default(),
                (Reply::PeerRoute(r), true) => serde_json::to_string(r).unwrap_or_default(),
                (Reply::Route(r), false) => cli::route_row(r),
                (Reply::PeerRoute(r), false) => cli::peer_route_row(r),
                _ => return,
            };
            if let Err(e) = writeln!(out, "{line}") {
                failed.get_or_insert(e);
            }
        })
        .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    match counted {
        Ok(routes) => {
            if !json {
                writeln!(out, "{routes} routes")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            out.flush()?;
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
