//! The running healthd of one site.
//!
//! ```text
//!   node task ×N (probe → NodeTracker) ──NodeUpdate──▶ site task ──announce/withdraw (lease)──▶ bgp-speaker
//!                                                        │  └──────── publish ─────────────▶ feed (geodns)
//!   admin API / drain file ───────────── drained ───────┘
//! ```
//!
//! Every round the site task re-decides each service and re-sends its announcement: the
//! speaker renews the lease, and a speaker that restarted gets everything back at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use config::check::CheckProfile;
use config::site::Site;
use config::{Deployment, Node};
use feed::server::Publisher;
use feed::{NodeState, ServiceState, SiteFeed};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use speaker_control::{Client, Op, Reply, RouteAttrs};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::node::{Health, NodeTracker};
use crate::peers::Peers;
use crate::probe::Prober;
use crate::report::NodeReport;
use crate::verdict::{Announcement, NodeHealth, Verdict, VerdictState};

/// Why healthd could not start.
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
    #[error("the deployment file is not valid: {0}")]
    Invalid(String),
}

/// How long a call to the speaker may take before healthd gives up on it this round.
const SPEAKER_DEADLINE: Duration = Duration::from_secs(1);

/// Longest the site task may go without a round before `/healthz` reports it (rounds come
/// every check interval, at most a second).
const SITE_TASK_BOUND: Duration = Duration::from_secs(5);

/// One probe result, folded by the node's tracker.
struct NodeUpdate {
    /// The node's name: indices change when a reload adds or removes nodes.
    node: String,
    health: Health,
    ok: bool,
    detail: String,
    /// The node's status document, when it publishes one.
    report: Option<NodeReport>,
}

/// Metrics of one healthd.
pub struct Metrics {
    pub registry: Registry,
    node_up: IntGaugeVec,
    latency: HistogramVec,
    changes: IntCounterVec,
    service_healthy: IntGaugeVec,
    announcements: IntCounterVec,
    fail_open: IntGaugeVec,
    speaker_errors: IntCounterVec,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let node_up = IntGaugeVec::new(
            Opts::new(
                "healthd_node_up",
                "1 when the node is up (after rise/fall and damping)",
            ),
            &["node"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("healthd_probe_seconds", "Probe duration")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            &["node", "result"],
        )
        .expect("valid metric");
        let changes = IntCounterVec::new(
            Opts::new("healthd_node_state_changes_total", "Node state changes"),
            &["node"],
        )
        .expect("valid metric");
        let service_healthy = IntGaugeVec::new(
            Opts::new(
                "healthd_service_healthy",
                "1 when the site is healthy for the service",
            ),
            &["service"],
        )
        .expect("valid metric");
        let announcements = IntCounterVec::new(
            Opts::new(
                "healthd_announcements_total",
                "Requests sent to the speaker, by kind",
            ),
            &["service", "kind"],
        )
        .expect("valid metric");
        let fail_open = IntGaugeVec::new(
            Opts::new(
                "healthd_service_fail_open",
                "1 while the service is announced although down, because every other site carrying it is down too",
            ),
            &["service"],
        )
        .expect("valid metric");
        let speaker_errors = IntCounterVec::new(
            Opts::new(
                "healthd_speaker_errors_total",
                "Exchanges with the speaker that failed or timed out, by kind (connect, call)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for m in [
            Box::new(fail_open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(speaker_errors.clone()),
            Box::new(node_up.clone()),
            Box::new(latency.clone()),
            Box::new(changes.clone()),
            Box::new(service_healthy.clone()),
            Box::new(announcements.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Self {
            registry,
            node_up,
            latency,
            changes,
            service_healthy,
            announcements,
            fail_open,
            speaker_errors,
        }
    }
}

/// Runs healthd for `site` until SIGTERM. On SIGHUP the deployment file at `config` is read
/// again and applied (see [`Running::reload`]); a file that does not load is reported and the
/// running configuration kept.
pub async fn run(
    deployment: Deployment,
    site_name: &str,
    config: Option<std::path::PathBuf>,
) -> Result<(), StartError> {
    let mut running = start(deployment, site_name).await?;
    let Ok(mut signals) = daemon::signals::Signals::new() else {
        let _ = (&mut running.site_task).await;
        return Ok(());
    };
    loop {
        tokio::select! {
            _ = &mut running.site_task => return Ok(()),
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

/// A running healthd: its site task and one probe task per node.
pub struct Running {
    /// The site task; it runs until the process ends.
    pub site_task: tokio::task::JoinHandle<()>,
    site_name: String,
    site: Site,
    control: mpsc::Sender<Reconfigure>,
    updates: mpsc::Sender<NodeUpdate>,
    metrics: Arc<Metrics>,
    /// Per node: its configuration and check profile as started, and its probe task.
    nodes: HashMap<String, (Node, CheckProfile, tokio::task::JoinHandle<()>)>,
    /// The other sites' verdicts, and the tasks following their feeds.
    peers: Arc<Peers>,
    followers: crate::peers::Followers,
}

/// A new configuration for the site task.
struct Reconfigure {
    deployment: Deployment,
    site: Site,
    interval: Duration,
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
            .site(&self.site_name)
            .ok_or_else(|| StartError::UnknownSite(self.site_name.clone()))?
            .clone();
        // Every node must be probeable before anything changes.
        let mut planned = Vec::new();
        for node in &site.nodes {
            let (prober, interval) = prober_for(&deployment, node)?;
            planned.push((node.clone(), prober, interval));
        }
        if site.healthd.feed != self.site.healthd.feed
            || site.healthd.admin != self.site.healthd.admin
        {
            warn!("SIGHUP: the feed and admin addresses change only when healthd restarts");
        }
        let (mut kept, mut started) = (0, 0);
        let mut interval = Duration::from_secs(1);
        let mut next = HashMap::new();
        for (i, (node, prober, profile_interval)) in planned.into_iter().enumerate() {
            interval = interval.min(profile_interval);
            match self.nodes.remove(&node.name) {
                Some((old, profile, task)) if old == node && &profile == prober.profile() => {
                    kept += 1;
                    next.insert(node.name.clone(), (old, profile, task));
                }
                previous => {
                    if let Some((_, _, task)) = previous {
                        task.abort();
                    }
                    started += 1;
                    let profile = prober.profile().clone();
                    let task = tokio::spawn(node_task(
                        i,
                        node.clone(),
                        prober,
                        self.updates.clone(),
                        self.metrics.clone(),
                    ));
                    next.insert(node.name.clone(), (node, profile, task));
                }
            }
        }
        let stopped = self.nodes.len();
        for (_, (_, _, task)) in self.nodes.drain() {
            task.abort();
        }
        self.nodes = next;
        self.site = site.clone();
        // Other sites' feeds may have moved, come or gone.
        self.followers = crate::peers::follow_all(self.peers.clone(), &deployment, &self.site_name);
        let _ = self.control.try_send(Reconfigure {
            deployment,
            site,
            interval,
        });
        Ok(format!(
            "deployment reloaded: {kept} node(s) kept, {started} started, {stopped} stopped"
        ))
    }
}

/// Starts healthd for `site` in background tasks: feed and admin endpoints, a probe task per
/// node, and the site task (whose handle is returned).
pub async fn start(deployment: Deployment, site_name: &str) -> Result<Running, StartError> {
    let site = deployment
        .site(site_name)
        .ok_or_else(|| StartError::UnknownSite(site_name.to_owned()))?
        .clone();
    let metrics = Arc::new(Metrics::new());
    let drained = Arc::new(AtomicBool::new(false));
    let publisher = Publisher::new(SiteFeed {
        site: site.name.clone(),
        ..Default::default()
    });

    let token = site
        .healthd
        .feed_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()?;
    let feed = tokio::net::TcpListener::bind(site.healthd.feed)
        .await
        .map_err(|cause| StartError::Listen {
            addr: site.healthd.feed,
            cause,
        })?;
    let feed_router = feed::server::router(publisher.clone(), token);
    let liveness = daemon::Liveness::default();
    let feed_listener = liveness.flag(format!("feed listener on {}", site.healthd.feed));
    tokio::spawn(async move {
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
        drain_router(drained.clone()),
        admin_token,
    ));
    let _admin = daemon::admin::serve(site.healthd.admin, admin)
        .await
        .map_err(|e| StartError::Listen {
            addr: e.addr,
            cause: e.cause,
        })?;

    let (tx, rx) = mpsc::channel(1024);
    let mut interval = Duration::from_secs(1);
    let mut nodes = HashMap::new();
    for (i, node) in site.nodes.iter().enumerate() {
        let (prober, profile_interval) = prober_for(&deployment, node)?;
        interval = interval.min(profile_interval);
        let profile = prober.profile().clone();
        let task = tokio::spawn(node_task(
            i,
            node.clone(),
            prober,
            tx.clone(),
            metrics.clone(),
        ));
        nodes.insert(node.name.clone(), (node.clone(), profile, task));
    }
    info!(site = %site.name, nodes = site.nodes.len(), feed = %site.healthd.feed, "healthd running");
    let (control, control_rx) = mpsc::channel(4);
    let peers = Arc::new(Peers::default());
    let followers = crate::peers::follow_all(peers.clone(), &deployment, &site.name);
    let beat = liveness.heartbeat("site task (decisions, speaker, feed)", SITE_TASK_BOUND);
    let task = SiteTask::new(
        deployment,
        site.clone(),
        publisher,
        metrics.clone(),
        drained,
        peers.clone(),
        beat,
    );
    Ok(Running {
        site_task: tokio::spawn(task.run(rx, control_rx, interval)),
        site_name: site.name.clone(),
        site,
        control,
        updates: tx,
        metrics,
        nodes,
        peers,
        followers,
    })
}

/// The admin API: `POST /drain` and `POST /undrain` for the whole site.
fn drain_router(drained: Arc<AtomicBool>) -> axum::Router {
    let undrain = drained.clone();
    axum::Router::new()
        .route(
            "/drain",
            axum::routing::post(move || async move {
                drained.store(true, Ordering::Relaxed);
                info!("site drained by an operator: graceful shutdown, then withdraw");
                "draining\n"
            }),
        )
        .route(
            "/undrain",
            axum::routing::post(move || async move {
                undrain.store(false, Ordering::Relaxed);
                info!("site drain cleared by an operator");
                "ok\n"
            }),
        )
}

/// The prober of a node: its own check profile, else its first service's.
fn prober_for(d: &Deployment, node: &Node) -> Result<(Prober, Duration), StartError> {
    let services: Vec<&config::Service> =
        node.services.iter().filter_map(|s| d.service(s)).collect();
    let name = node
        .check
        .clone()
        .or_else(|| services.first().map(|s| s.check.clone()));
    let profile = name
        .and_then(|n| d.check_profile(&n))
        .ok_or_else(|| StartError::NoCheck {
            node: node.name.clone(),
        })?
        .clone();
    let channels = services
        .iter()
        .flat_map(|s| s.channels.iter().cloned())
        .collect();
    let interval = profile.interval.get();
    let mut prober = Prober::new(profile.clone(), channels);
    if node.tls.is_some() {
        // The node's certificate must name what viewers ask for: its first service's hostname,
        // else its address.
        let name = services
            .first()
            .and_then(|s| s.hostnames.first().cloned())
            .unwrap_or_else(|| node.listen.ip().to_string());
        let ca = (profile.hls.as_ref().and_then(|h| h.ca_file.as_deref()))
            .or_else(|| profile.http.as_ref().and_then(|h| h.ca_file.as_deref()));
        let client =
            crate::probe::http::Client::with_tls(ca, &name).map_err(|reason| StartError::Tls {
                node: node.name.clone(),
                reason,
            })?;
        prober = prober.with_client(client);
    }
    Ok((prober, interval))
}

/// Probes one node forever: every interval (with jitter), or faster while a change is being
/// confirmed, so a failure is acted on within rise/fall × the fast interval.
async fn node_task(
    index: usize,
    node: Node,
    mut prober: Prober,
    tx: mpsc::Sender<NodeUpdate>,
    metrics: Arc<Metrics>,
) {
    let profile = prober.profile().clone();
    let mut tracker = NodeTracker::new(&profile, Instant::now());
    let mut seed = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    loop {
        let outcome = prober.probe(&node).await;
        metrics
            .latency
            .with_label_values(&[node.name.as_str(), if outcome.ok { "ok" } else { "fail" }])
            .observe(outcome.latency.as_secs_f64());
        if let Some(t) = tracker.observe(outcome.ok, &outcome.detail, Instant::now()) {
            metrics
                .changes
                .with_label_values(&[node.name.as_str()])
                .inc();
            match t.to {
                Health::Up => info!(node = %node.name, "node up: {}", t.reason),
                Health::Down => warn!(node = %node.name, "node down: {}", t.reason),
            }
        }
        let _ = tracker.tick(Instant::now());
        metrics
            .node_up
            .with_label_values(&[node.name.as_str()])
            .set(i64::from(tracker.health() == Health::Up));
        let report = crate::report::read(
            prober.client(),
            &node.status_url(),
            node.capacity_mbps,
            profile.timeout.get(),
        )
        .await;
        let update = NodeUpdate {
            node: node.name.clone(),
            health: tracker.health(),
            ok: outcome.ok,
            detail: outcome.detail,
            report,
        };
        if tx.send(update).await.is_err() {
            return;
        }
        let base = if tracker.confirming() {
            profile.fast_interval.get()
        } else {
            profile.interval.get()
        };
        // Spread probes so nodes are not all hit at once.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let jitter = base.mul_f64(profile.jitter * ((seed % 1000) as f64 / 1000.0));
        tokio::time::sleep(base.saturating_sub(outcome.latency) + jitter).await;
    }
}

/// The site task: node states in, verdicts, speaker requests and the feed out.
struct SiteTask {
    deployment: Deployment,
    site: Site,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    drained: Arc<AtomicBool>,
    /// Position of each node (by name) in `site.nodes` and the vectors below.
    index: HashMap<String, usize>,
    health: Vec<Health>,
    reports: Vec<NodeReport>,
    details: Vec<String>,
    verdicts: HashMap<String, VerdictState>,
    last: HashMap<String, Verdict>,
    speaker: Option<Client>,
    synced: bool,
    speaker_error: bool,
    peers: Arc<Peers>,
    /// Services whose verdict turned to withdraw, and when: they settle before withdrawing.
    settling: HashMap<String, Instant>,
    /// Beaten every round: a site task that stops deciding is reported by `/healthz`.
    beat: daemon::Beat,
}

impl SiteTask {
    fn new(
        deployment: Deployment,
        site: Site,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        drained: Arc<AtomicBool>,
        peers: Arc<Peers>,
        beat: daemon::Beat,
    ) -> Self {
        let n = site.nodes.len();
        let index = site
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.clone(), i))
            .collect();
        Self {
            index,
            deployment,
            site,
            publisher,
            metrics,
            drained,
            health: vec![Health::Down; n],
            reports: vec![NodeReport::default(); n],
            details: vec![String::new(); n],
            verdicts: HashMap::new(),
            last: HashMap::new(),
            speaker: None,
            synced: false,
            speaker_error: false,
            peers,
            settling: HashMap::new(),
            beat,
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<NodeUpdate>,
        mut control: mpsc::Receiver<Reconfigure>,
        interval: Duration,
    ) {
        let mut round = tokio::time::interval(interval);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let peers = self.peers.clone();
        loop {
            // The next settling withdraw still to come (past ones have been decided).
            let now = Instant::now();
            let settle = self.site.healthd.withdraw_settle.get();
            let settled_at = self
                .settling
                .values()
                .map(|t| *t + settle)
                .filter(|due| *due > now)
                .min();
            let settled = settled_at.unwrap_or_else(Instant::now);
            tokio::select! {
                Some(new) = control.recv() => {
                    self.reconfigure(new.deployment, new.site);
                    round = tokio::time::interval(new.interval);
                    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    self.round().await;
                }
                update = rx.recv() => {
                    let Some(u) = update else { return };
                    // An update from a node a reload just removed.
                    let Some(&i) = self.index.get(&u.node) else { continue };
                    let report = u.report.unwrap_or_default();
                    let changed = self.health[i] != u.health
                        || self.reports[i].draining != report.draining;
                    self.health[i] = u.health;
                    self.reports[i] = report;
                    self.details[i] = if u.ok { String::new() } else { u.detail };
                    // A state change is acted on at once, not at the next round.
                    if changed {
                        self.round().await;
                    }
                }
                _ = round.tick() => self.round().await,
                // Another site's verdict changed: fail open, or stop failing open, at once.
                _ = peers.changed.notified() => self.round().await,
                // A settling withdraw is due.
                _ = tokio::time::sleep_until(settled.into()), if settled_at.is_some() => {
                    self.round().await
                }
            }
        }
    }

    /// Takes a reloaded deployment: nodes keep their state by name, new ones start down.
    fn reconfigure(&mut self, deployment: Deployment, site: Site) {
        let old: HashMap<String, (Health, NodeReport, String)> = self
            .index
            .iter()
            .map(|(name, &i)| {
                (
                    name.clone(),
                    (self.health[i], self.reports[i], self.details[i].clone()),
                )
            })
            .collect();
        self.health.clear();
        self.reports.clear();
        self.details.clear();
        self.index.clear();
        for (i, node) in site.nodes.iter().enumerate() {
            let (health, report, detail) = old.get(&node.name).cloned().unwrap_or((
                Health::Down,
                NodeReport::default(),
                String::new(),
            ));
            self.health.push(health);
            self.reports.push(report);
            self.details.push(detail);
            self.index.insert(node.name.clone(), i);
        }
        self.deployment = deployment;
        self.site = site;
    }

    /// Decides every service, drives the speaker, publishes the feed.
    async fn round(&mut self) {
        self.beat.beat();
        let now = Instant::now();
        let drained = self.drained.load(Ordering::Relaxed)
            || self
                .site
                .healthd
                .drain_file
                .as_ref()
                .is_some_and(|f| f.exists());
        let lease_ms = self.site.healthd.lease.get().as_millis() as u64;
        let grace = self
            .deployment
            .dns
            .as_ref()
            .map_or(Duration::from_secs(30), |d| d.feed_grace.get());
        let mut ops = Vec::new();
        let mut services = Vec::new();
        for svc in &self.deployment.services {
            let nodes: Vec<NodeHealth> = self
                .site
                .nodes
                .iter()
                .zip(self.health.iter().zip(&self.reports))
                .filter(|(n, _)| n.services.contains(&svc.name))
                .map(|(n, (h, r))| NodeHealth {
                    // A draining node keeps its viewers but counts as gone for the site.
                    up: *h == Health::Up && !r.draining,
                    load: r.load,
                    capacity_mbps: n.capacity_mbps,
                })
                .collect();
            if nodes.is_empty() {
                continue;
            }
            let mut verdict = self
                .verdicts
                .entry(svc.name.clone())
                .or_default()
                .decide(svc, &nodes, drained, now);
            // An operator's drain is obeyed; otherwise a withdraw that would leave the prefix
            // announced nowhere becomes a fail-open announcement.
            if verdict.announcement != Announcement::Withdraw || drained {
                self.settling.remove(&svc.name);
            } else if self.peers.every_other_site_down(
                &self.deployment,
                &self.site.name,
                &svc.name,
                grace,
                now,
            ) {
                self.settling.remove(&svc.name);
                verdict.announcement = Announcement::FailOpen;
                verdict.reason = format!(
                    "{}; every other site carrying it is down too, so it stays announced (fail open)",
                    verdict.reason
                );
            } else if self.deployment.sites.iter().any(|s| {
                s.name != self.site.name && s.nodes.iter().any(|n| n.services.contains(&svc.name))
            }) {
                // Others carry it: give their feeds a moment to say whether they went down too.
                let since = *self.settling.entry(svc.name.clone()).or_insert(now);
                if now < since + self.site.healthd.withdraw_settle.get() {
                    verdict.announcement = Announcement::Settling;
                }
            }
            let fail_open = verdict.announcement == Announcement::FailOpen;
            self.metrics
                .fail_open
                .with_label_values(&[svc.name.as_str()])
                .set(i64::from(fail_open));
            if self.last.get(&svc.name).is_none_or(|v| {
                v.healthy != verdict.healthy || v.announcement != verdict.announcement
            }) {
                let kind = announcement_kind(&verdict.announcement);
                if verdict.healthy {
                    info!(service = %svc.name, "service healthy at this site ({}): {kind}", verdict.reason);
                } else if fail_open {
                    error!(service = %svc.name, "EVERY SITE IS DOWN for this service: announcing it anyway ({})", verdict.reason);
                } else {
                    warn!(service = %svc.name, "service unhealthy at this site ({}): {kind}", verdict.reason);
                }
            }
            self.metrics
                .service_healthy
                .with_label_values(&[svc.name.as_str()])
                .set(i64::from(verdict.healthy));
            if !svc.prefixes.is_empty() {
                let kind = announcement_kind(&verdict.announcement);
                self.metrics
                    .announcements
                    .with_label_values(&[svc.name.as_str(), kind])
                    .inc();
                ops.push(match &verdict.announcement {
                    Announcement::Announce { attrs, .. }
                    | Announcement::GracefulShutdown { attrs, .. } => Op::Announce {
                        prefixes: svc.prefixes.clone(),
                        attrs: attrs.clone(),
                        service: Some(svc.name.clone()),
                        lease_ms: Some(lease_ms),
                    },
                    Announcement::FailOpen | Announcement::Settling => Op::Announce {
                        prefixes: svc.prefixes.clone(),
                        attrs: RouteAttrs::default(),
                        service: Some(svc.name.clone()),
                        lease_ms: Some(lease_ms),
                    },
                    Announcement::Withdraw => Op::Withdraw {
                        prefixes: svc.prefixes.clone(),
                    },
                });
            }
            services.push(ServiceState {
                name: svc.name.clone(),
                healthy: verdict.healthy,
                announcement: announcement_kind(&verdict.announcement).to_owned(),
                reason: verdict.reason.clone(),
            });
            self.last.insert(svc.name.clone(), verdict);
        }
        // The feed first: geodns moves viewers even while the speaker is slow to answer.
        self.publish(services);
        self.drive(ops).await;
    }

    /// Sends this round's requests; reconnects (and so re-announces everything) after a
    /// speaker restart. Every call has a deadline: a speaker that does not answer is logged
    /// (once per outage), counted, and dialled again next round, while the leases it holds
    /// run out by themselves.
    async fn drive(&mut self, ops: Vec<Op>) {
        if self.speaker.is_none() {
            let endpoint = self.site.speaker.control_endpoint(&self.site.name);
            let token = self
                .site
                .speaker
                .control_token
                .as_ref()
                .and_then(|t| t.resolve().ok());
            match Client::connect(&endpoint, token, SPEAKER_DEADLINE).await {
                Ok(client) => {
                    info!(%endpoint, "connected to the speaker");
                    self.speaker = Some(client);
                    self.synced = false;
                    self.speaker_error = false;
                }
                Err(e) => {
                    self.speaker_failed(
                        "connect",
                        &format!(
                            "cannot reach the speaker, routes will follow once it answers: {e}"
                        ),
                    );
                    return;
                }
            }
        }
        let Some(client) = self.speaker.as_mut() else {
            return;
        };
        for op in ops {
            match client.call(op).await {
                Ok(Reply::Error(e)) => warn!("the speaker refused a request: {e}"),
                Ok(_) => {}
                Err(e) => {
                    self.speaker = None;
                    self.speaker_failed(
                        "call",
                        &format!("lost the speaker, dialling it again next round: {e}"),
                    );
                    return;
                }
            }
        }
        if !self.synced {
            // Everything we want is announced: the speaker may send End-of-RIB now.
            match client.call(Op::Synced).await {
                Ok(_) => self.synced = true,
                Err(e) => {
                    self.speaker = None;
                    self.speaker_failed("call", &format!("lost the speaker: {e}"));
                }
            }
        }
    }

    /// Counts a failed exchange with the speaker and logs it once per outage.
    fn speaker_failed(&mut self, kind: &str, message: &str) {
        self.metrics.speaker_errors.with_label_values(&[kind]).inc();
        if !self.speaker_error {
            warn!("{message}");
            self.speaker_error = true;
        }
    }

    fn publish(&self, services: Vec<ServiceState>) {
        let nodes = self
            .site
            .nodes
            .iter()
            .zip(self.health.iter().zip(&self.reports))
            .map(|(n, (h, r))| NodeState {
                name: n.name.clone(),
                ipv4: n.ipv4,
                ipv6: n.ipv6,
                services: n.services.clone(),
                healthy: *h == Health::Up,
                // Rounded so that load jitter alone does not republish the feed each round.
                load: (r.load * 100.0).round() / 100.0,
                capacity_mbps: n.capacity_mbps,
                draining: self.drained.load(Ordering::Relaxed) || r.draining,
            })
            .collect();
        let doc = SiteFeed {
            site: self.site.name.clone(),
            // Instance and generation are the publisher's to set.
            instance: String::new(),
            generation: 0,
            services,
            nodes,
        };
        let current = self.publisher.current();
        if current.nodes != doc.nodes || current.services != doc.services {
            self.publisher.publish(doc);
        }
    }
}

fn announcement_kind(a: &Announcement) -> &'static str {
    match a {
        Announcement::Announce {
            degraded: false, ..
        } => "announced",
        Announcement::Announce { degraded: true, .. } => "degraded",
        Announcement::GracefulShutdown { .. } => "graceful-shutdown",
        Announcement::Withdraw => "withdrawn",
        Announcement::FailOpen => "fail-open",
        Announcement::Settling => "withdrawing",
    }
}
