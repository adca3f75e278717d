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

use bgp_speaker::control::Client;
use bgp_speaker::speaker::{Op, Reply};
use config::site::Site;
use config::{Deployment, Node};
use feed::server::Publisher;
use feed::{NodeState, ServiceState, SiteFeed};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::node::{Health, NodeTracker};
use crate::probe::Prober;
use crate::report::NodeReport;
use crate::verdict::{Announcement, NodeInput, Verdict, VerdictState};

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
    #[error("feed token: {0}")]
    Secret(#[from] config::types::SecretError),
    #[error("node {node}: cannot probe over TLS: {reason}")]
    Tls { node: String, reason: String },
}

/// One probe result, folded by the node's tracker.
struct NodeUpdate {
    node: usize,
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
        for m in [
            Box::new(node_up.clone()) as Box<dyn prometheus::core::Collector>,
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
        }
    }
}

/// Runs healthd for `site` until SIGTERM.
pub async fn run(deployment: Deployment, site_name: &str) -> Result<(), StartError> {
    let task = start(deployment, site_name).await?;
    tokio::select! {
        _ = task => {}
        () = wait_for_stop() => info!("shutting down: leases left to expire (routes stay until then)"),
    }
    Ok(())
}

/// Starts healthd for `site` in background tasks: feed and admin endpoints, a probe task per
/// node, and the site task (whose handle is returned).
pub async fn start(
    deployment: Deployment,
    site_name: &str,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
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
    tokio::spawn(async move {
        let _ = axum::serve(feed, feed_router).await;
    });
    let scrape = metrics.clone();
    let admin = daemon::admin::router(Arc::new(move || daemon::admin::encode(&scrape.registry)))
        .merge(drain_router(drained.clone()));
    let _admin = daemon::admin::serve(site.healthd.admin, admin)
        .await
        .map_err(|e| StartError::Listen {
            addr: e.addr,
            cause: e.cause,
        })?;

    let (tx, rx) = mpsc::channel(1024);
    let mut interval = Duration::from_secs(1);
    for (i, node) in site.nodes.iter().enumerate() {
        let (prober, profile_interval) = prober_for(&deployment, node)?;
        interval = interval.min(profile_interval);
        tokio::spawn(node_task(
            i,
            node.clone(),
            prober,
            tx.clone(),
            metrics.clone(),
        ));
    }
    info!(site = %site.name, nodes = site.nodes.len(), feed = %site.healthd.feed, "healthd running");
    let task = SiteTask::new(deployment, site, publisher, metrics, drained);
    Ok(tokio::spawn(task.run(rx, interval)))
}

async fn wait_for_stop() {
    let Ok(mut signals) = daemon::signals::Signals::new() else {
        return;
    };
    while signals.next().await == daemon::signals::Request::Reload {
        info!("SIGHUP: restart healthd to apply deployment changes");
    }
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
            node: index,
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
    health: Vec<Health>,
    reports: Vec<NodeReport>,
    details: Vec<String>,
    verdicts: HashMap<String, VerdictState>,
    last: HashMap<String, Verdict>,
    speaker: Option<Client>,
    synced: bool,
    speaker_error: bool,
}

impl SiteTask {
    fn new(
        deployment: Deployment,
        site: Site,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        drained: Arc<AtomicBool>,
    ) -> Self {
        let n = site.nodes.len();
        Self {
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
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<NodeUpdate>, interval: Duration) {
        let mut round = tokio::time::interval(interval);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                update = rx.recv() => {
                    let Some(u) = update else { return };
                    let report = u.report.unwrap_or_default();
                    let changed = self.health[u.node] != u.health
                        || self.reports[u.node].draining != report.draining;
                    self.health[u.node] = u.health;
                    self.reports[u.node] = report;
                    self.details[u.node] = if u.ok { String::new() } else { u.detail };
                    // A state change is acted on at once, not at the next round.
                    if changed {
                        self.round().await;
                    }
                }
                _ = round.tick() => self.round().await,
            }
        }
    }

    /// Decides every service, drives the speaker, publishes the feed.
    async fn round(&mut self) {
        let now = Instant::now();
        let drained = self.drained.load(Ordering::Relaxed)
            || self
                .site
                .healthd
                .drain_file
                .as_ref()
                .is_some_and(|f| f.exists());
        let lease_ms = self.site.healthd.lease.get().as_millis() as u64;
        let mut ops = Vec::new();
        let mut services = Vec::new();
        for svc in &self.deployment.services {
            let nodes: Vec<NodeInput> = self
                .site
                .nodes
                .iter()
                .zip(self.health.iter().zip(&self.reports))
                .filter(|(n, _)| n.services.contains(&svc.name))
                .map(|(n, (h, r))| NodeInput {
                    // A draining node keeps its viewers but counts as gone for the site.
                    up: *h == Health::Up && !r.draining,
                    load: r.load,
                    capacity_mbps: n.capacity_mbps,
                })
                .collect();
            if nodes.is_empty() {
                continue;
            }
            let verdict = self
                .verdicts
                .entry(svc.name.clone())
                .or_default()
                .decide(svc, &nodes, drained, now);
            if self.last.get(&svc.name).is_none_or(|v| {
                v.healthy != verdict.healthy || v.announcement != verdict.announcement
            }) {
                let kind = announcement_kind(&verdict.announcement);
                if verdict.healthy {
                    info!(service = %svc.name, "service healthy at this site ({}): {kind}", verdict.reason);
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
        self.drive(ops).await;
        self.publish(services);
    }

    /// Sends this round's requests; reconnects (and so re-announces everything) after a
    /// speaker restart.
    async fn drive(&mut self, ops: Vec<Op>) {
        if self.speaker.is_none() {
            let endpoint = self.site.speaker.control_endpoint(&self.site.name);
            let token = self
                .site
                .speaker
                .control_token
                .as_ref()
                .and_then(|t| t.resolve().ok());
            match Client::connect(&endpoint, token).await {
                Ok(client) => {
                    info!(%endpoint, "connected to the speaker");
                    self.speaker = Some(client);
                    self.synced = false;
                    self.speaker_error = false;
                }
                Err(e) => {
                    if !self.speaker_error {
                        warn!("cannot reach the speaker, routes will follow once it answers: {e}");
                        self.speaker_error = true;
                    }
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
                    warn!("lost the speaker: {e}");
                    self.speaker = None;
                    return;
                }
            }
        }
        if !self.synced {
            // Everything we want is announced: the speaker may send End-of-RIB now.
            let _ = client.call(Op::Synced).await;
            self.synced = true;
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
    }
}
