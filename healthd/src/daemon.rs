//! The running healthd of one site: wires the probes ([`crate::schedule`]), the site task
//! ([`crate::site`]), the feed, the admin API and the other sites' feeds together, and applies
//! SIGHUP reloads.

use std::sync::Arc;

use config::Deployment;
use config::site::Site;
use feed::SiteFeed;
use feed::server::Publisher;
use tokio::sync::mpsc;
use tracing::{info, warn};

use daemon::handover::{Inherited, Offer, Offered};

use crate::admin::DrainSwitch;
use crate::metrics::Metrics;
use crate::other_sites::OtherSites;
use crate::schedule::Probes;
use crate::site::{Reconfigure, SiteSetup, SiteTask};

/// Why healthd could not start (or a reload was refused).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("site {0:?} is not in the deployment file")]
    UnknownSite(String),
    #[error("node {node}: no check profile (set `check` on the node or its service)")]
    NoCheck { node: String },
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot read a secret of the deployment file: {0}")]
    Secret(#[from] config::types::SecretError),
    #[error("node {node}: cannot probe over TLS: {reason}")]
    Tls { node: String, reason: String },
    #[error("cannot mint the tokens probes of protected channels carry: {0}")]
    Token(#[from] tokens::KeyError),
    #[error("the deployment file is not valid: {0}")]
    Invalid(String),
    #[error(transparent)]
    TakeOver(#[from] daemon::handover::TakeOverError),
    #[error("the state the running healthd handed over: {0}")]
    TakenState(#[from] serde_json::Error),
    #[error(
        "--take-over needs healthd.handover: the socket where the running healthd offers its listeners"
    )]
    NoHandover,
    #[error("healthd.handover: {0}")]
    Offer(std::io::Error),
}

/// What a healthd hands its replacement: every node as its probes last knew it, the
/// operator's drain, and the feed as last published.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    pub nodes: std::collections::HashMap<String, crate::schedule::SavedNode>,
    pub drained: bool,
    pub feed: SiteFeed,
}

struct Carry {
    registry: crate::schedule::Registry,
    watched: crate::watch::WatchedRegistry,
    drain: DrainSwitch,
    publisher: Publisher,
}

impl daemon::handover::Carry for Carry {
    fn capture(&self) -> Result<daemon::handover::Captured, String> {
        let mut nodes = self
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for (name, node) in &mut nodes {
            node.watched = watched.get(name).cloned();
        }
        drop(watched);
        let carried = Carried {
            nodes,
            drained: self.drain.by_api(),
            feed: self.publisher.current(),
        };
        Ok(daemon::handover::Captured {
            state: serde_json::to_value(carried).map_err(|e| e.to_string())?,
            payload: Vec::new(),
        })
    }
}

/// Longest the site task may go without a round before `/healthz` reports it (rounds come
/// every check interval, at most a second).
const SITE_TASK_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs healthd for `site` until SIGTERM. On SIGHUP the deployment file at `config` is read
/// again and applied (see [`Running::reload`]); a file that does not load is reported and the
/// running configuration kept.
pub async fn run(
    deployment: Deployment,
    site_name: &str,
    config: Option<std::path::PathBuf>,
    take_over: bool,
) -> Result<(), StartError> {
    let mut running = start_replacing(deployment, site_name, take_over).await?;
    let Ok(mut signals) = daemon::signals::Signals::new() else {
        let _ = (&mut running.site_task).await;
        return Ok(());
    };
    let replacer = running.replacer.clone();
    let replaced = daemon::handover::replaced(replacer.as_ref());
    tokio::pin!(replaced);
    loop {
        tokio::select! {
            _ = &mut running.site_task => return Ok(()),
            _ = &mut replaced => {
                // The replacement decides and drives the speaker from now on; the feed's
                // followers dial again and reach it.
                info!("replaced: stopping the probes and the site task, closing the feed");
                running.site_task.abort();
                running.feed.abort();
                if let Some(admin) = running.admin.take() {
                    admin.finish(std::time::Duration::from_secs(2)).await;
                }
                return Ok(());
            }
            request = signals.next() => {
                if request != daemon::signals::Request::Reload {
                    info!("shutting down: leases left to expire (routes stay until then)");
                    return Ok(());
                }
                let Some(path) = &config else {
                    warn!("SIGHUP: no deployment file to read again");
                    continue;
                };
                match Deployment::load(path) {
                    Ok(d) => match running.reload(d) {
                        Ok(summary) => info!("SIGHUP: {summary}"),
                        Err(e) => warn!("SIGHUP: keeping the running configuration: {e}"),
                    },
                    Err(e) => warn!("SIGHUP: keeping the running configuration: {e}"),
                }
            }
        }
    }
}

/// A running healthd: its site task, its probes and the followers of the other sites' feeds.
/// Dropping it stops the probes and the followers.
#[must_use = "healthd's probes stop when its Running is dropped"]
pub struct Running {
    /// The site task; it runs until the process ends.
    pub site_task: tokio::task::JoinHandle<()>,
    site: Site,
    control: mpsc::Sender<Reconfigure>,
    probes: Probes,
    /// The other sites' verdicts, and the tasks following their feeds.
    other_sites: Arc<OtherSites>,
    followers: crate::other_sites::Followers,
    /// Starts this healthd's replacement; `None` without `healthd.handover`.
    pub replacer: Option<Arc<daemon::handover::Replacer>>,
    feed: tokio::task::JoinHandle<()>,
    admin: Option<daemon::admin::Serving>,
}

impl Running {
    /// Applies a new deployment: nodes whose settings and check profile are unchanged keep
    /// probing and keep their state (a reload causes no route churn), changed or new ones start
    /// afresh, removed ones stop; services, degrade policies, lease and drain file apply from
    /// the next round. The feed and admin listeners stay where they are until a restart.
    pub fn reload(&mut self, deployment: Deployment) -> Result<String, StartError> {
        let problems = deployment.check();
        if let Some(first) = problems.first() {
            return Err(StartError::Invalid(format!(
                "{} problem(s), first: {first:?}",
                problems.len()
            )));
        }
        let site = deployment
            .site(&self.site.name)
            .ok_or_else(|| StartError::UnknownSite(self.site.name.clone()))?
            .clone();
        if site.healthd.feed != self.site.healthd.feed
            || site.healthd.admin != self.site.healthd.admin
        {
            warn!("SIGHUP: the feed and admin addresses change only when healthd restarts");
        }
        let (summary, interval) = self.probes.apply(&deployment, &site)?;
        // Other sites' feeds may have moved, come or gone.
        self.followers =
            crate::other_sites::follow_all(self.other_sites.clone(), &deployment, &site.name);
        self.site = site.clone();
        let _ = self.control.try_send(Reconfigure {
            deployment,
            site,
            interval,
        });
        Ok(format!(
            "deployment reloaded: {} node(s) kept, {} started, {} stopped",
            summary.kept, summary.started, summary.stopped
        ))
    }
}

/// Starts healthd for `site` in background tasks: feed and admin endpoints, a probe task per
/// node, the other sites' followers and the site task (whose handle is returned).
pub async fn start(deployment: Deployment, site_name: &str) -> Result<Running, StartError> {
    start_replacing(deployment, site_name, false).await
}

/// [`start`]; with `take_over`, the listeners and what it knew of each node come from the
/// running healthd at `healthd.handover`, and the nodes go on from there instead of from
/// their first probe.
pub async fn start_replacing(
    deployment: Deployment,
    site_name: &str,
    take_over: bool,
) -> Result<Running, StartError> {
    let site = deployment
        .site(site_name)
        .ok_or_else(|| StartError::UnknownSite(site_name.to_owned()))?
        .clone();
    // Taken first: a replacement that cannot reach the running healthd changes nothing.
    let mut inherited = match (take_over, &site.healthd.handover) {
        (false, _) => Inherited::default(),
        (true, None) => return Err(StartError::NoHandover),
        (true, Some(path)) => Inherited::receive(path, "healthd")?,
    };
    let carried: Option<Carried> = inherited.state()?.map(|(c, _)| c);
    let mut offered = Offered::default();
    let metrics = Arc::new(Metrics::new());
    let drain = DrainSwitch::default();
    let liveness = daemon::Liveness::default();
    let publisher = Publisher::new(match &carried {
        // The feed as the replaced healthd last published it, under this instance.
        Some(c) if c.feed.site == site.name => c.feed.clone(),
        _ => SiteFeed {
            site: site.name.clone(),
            ..Default::default()
        },
    });
    if let Some(c) = &carried {
        drain.set(c.drained);
        info!(
            nodes = c.nodes.len(),
            drained = c.drained,
            "going on from the replaced healthd's nodes"
        );
    }

    let feed_token = site
        .healthd
        .feed_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()?;
    let feed_error = |cause| StartError::Listen {
        addr: site.healthd.feed,
        cause,
    };
    let feed = inherited
        .tcp("feed", site.healthd.feed)
        .map_err(feed_error)?;
    offered
        .tcp("feed", site.healthd.feed, &feed)
        .map_err(feed_error)?;
    let feed = tokio::net::TcpListener::from_std(feed).map_err(feed_error)?;
    let admin_error = |cause| StartError::Listen {
        addr: site.healthd.admin,
        cause,
    };
    let admin_listener = inherited
        .tcp("admin", site.healthd.admin)
        .map_err(admin_error)?;
    offered
        .tcp("admin", site.healthd.admin, &admin_listener)
        .map_err(admin_error)?;
    let admin_listener = tokio::net::TcpListener::from_std(admin_listener).map_err(admin_error)?;
    let offer = site
        .healthd
        .handover
        .as_ref()
        .map(|path| Offer::bind(path, take_over, "healthd"))
        .transpose()
        .map_err(StartError::Offer)?;
    let (updates, updates_rx) = mpsc::channel(1024);
    let mut probes = Probes::new(updates, metrics.clone(), liveness.clone());
    if let Some(c) = carried {
        probes.resume_from(c.nodes);
    }
    let replacer = match offer {
        Some(offer) => {
            let carry = Carry {
                registry: probes.registry.clone(),
                watched: probes.watched.clone(),
                drain: drain.clone(),
                publisher: publisher.clone(),
            };
            Some(
                offer
                    .start(offered, Arc::new(carry))
                    .map_err(StartError::Offer)?,
            )
        }
        None => None,
    };
    let feed_router = feed::server::router(publisher.clone(), feed_token);
    let feed_listener = liveness.flag(format!("feed listener on {}", site.healthd.feed));
    let feed = tokio::spawn(async move {
        let _serving = feed_listener.serving_while();
        let _ = axum::serve(feed, feed_router).await;
    });

    let admin_token = site
        .healthd
        .admin_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()?;
    let scrape = metrics.clone();
    let admin = daemon::admin::router(
        "healthd",
        Arc::new(move || daemon::admin::encode(&scrape.registry)),
        liveness.clone(),
    )
    .merge(daemon::admin::protected(
        match &replacer {
            Some(r) => {
                crate::admin::router(drain.clone()).merge(daemon::handover::route(r.clone()))
            }
            None => crate::admin::router(drain.clone()),
        },
        admin_token,
    ));
    let admin = daemon::admin::serve_on(admin_listener, admin);
    if let Some(r) = &replacer {
        r.on_served(admin.stop_accepting());
        let feeding = feed.abort_handle();
        r.on_served(move || feeding.abort());
    }

    let (_, interval) = probes.apply(&deployment, &site)?;
    inherited.serving();
    daemon::systemd::serving(&liveness);
    info!(site = %site.name, nodes = site.nodes.len(), feed = %site.healthd.feed, "healthd running");
    let (control, control_rx) = mpsc::channel(4);
    let other_sites = Arc::new(OtherSites::default());
    let followers = crate::other_sites::follow_all(other_sites.clone(), &deployment, &site.name);
    let task = SiteTask::new(SiteSetup {
        deployment,
        site: site.clone(),
        publisher,
        metrics,
        drain,
        other_sites: other_sites.clone(),
        beat: liveness.heartbeat("site task (decisions, speaker, feed)", SITE_TASK_BOUND),
    });
    Ok(Running {
        site_task: tokio::spawn(task.run(updates_rx, control_rx, interval)),
        site,
        control,
        probes,
        other_sites,
        followers,
        replacer,
        feed,
        admin: Some(admin),
    })
}
