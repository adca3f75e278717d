//! Probing the site's nodes: one task per node, each playing its node's stream like a viewer
//! at its check profile's interval (with jitter, and faster while a change is being confirmed),
//! folding results through the node's tracker and sending them to the site task.
//!
//! A probe task that panics is started again (its node starts over from down), and each task
//! beats its liveness every round, so `/healthz` reports one that stopped probing. Beside each
//! probe task runs the node's status stream watcher ([`crate::watch`]), started and stopped
//! with it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::check::CheckProfile;
use config::site::Site;
use config::{Deployment, Node};
use daemon::{Beat, Liveness};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::daemon::StartError;
use crate::metrics::Metrics;
use crate::node::{Health, NodeTracker, SavedTracker};
use crate::probe::Prober;
use crate::report::NodeReport;
use crate::watch::{WatchSettings, Watched, WatchedRegistry, Watcher};

/// Something a node's tasks learnt, for the site task.
pub struct NodeUpdate {
    /// The node's name: a reload may add or remove nodes.
    pub node: String,
    pub said: Said,
}

/// Who said what about a node.
pub enum Said {
    /// A probe's result, folded by the node's tracker.
    Probe {
        health: Health,
        ok: bool,
        /// Why the probes took the node down; empty while they pass.
        detail: String,
        /// The node's status document, when it publishes one.
        report: Option<NodeReport>,
    },
    /// What the node's status stream says now.
    Stream(Watched),
    /// Where a replaced healthd left the node, all at once (so no round sees half of it).
    Resumed {
        health: Health,
        report: NodeReport,
        watched: Watched,
    },
}

/// What a node's probes know, as a replacement healthd goes on from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedNode {
    pub tracker: SavedTracker,
    pub report: NodeReport,
    /// What its status stream said last (a node out by its own word stays out).
    #[serde(default)]
    pub watched: Option<Watched>,
}

/// Every node's [`SavedNode`] as of its last probe, by name; kept up to date by the probe
/// tasks for a hand-over.
pub type Registry = Arc<std::sync::Mutex<HashMap<String, SavedNode>>>;

/// The running probe tasks, by node name; dropping it stops them.
pub struct Probes {
    tasks: HashMap<String, ProbeTask>,
    updates: mpsc::Sender<NodeUpdate>,
    metrics: Arc<Metrics>,
    liveness: Liveness,
    /// Each node as of its last probe.
    pub registry: Registry,
    /// What each node's status stream said last.
    pub watched: WatchedRegistry,
    /// Where a replaced healthd left each node, taken by the node's first probe task.
    resume: HashMap<String, SavedNode>,
}

struct ProbeTask {
    node: Node,
    profile: CheckProfile,
    watch: Option<WatchSettings>,
    source: Option<std::net::IpAddr>,
    task: tokio::task::JoinHandle<()>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    beat: Beat,
}

impl Drop for ProbeTask {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(w) = &self.watcher {
            w.abort();
        }
        self.beat.retire();
    }
}

/// What a reload did to the probes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reprobed {
    pub kept: usize,
    pub started: usize,
    pub stopped: usize,
}

impl Probes {
    pub fn new(
        updates: mpsc::Sender<NodeUpdate>,
        metrics: Arc<Metrics>,
        liveness: Liveness,
    ) -> Self {
        Self {
            tasks: HashMap::new(),
            updates,
            metrics,
            liveness,
            registry: Registry::default(),
            watched: WatchedRegistry::default(),
            resume: HashMap::new(),
        }
    }

    /// Nodes start from where a replaced healthd left them rather than from their first probe.
    pub fn resume_from(&mut self, nodes: HashMap<String, SavedNode>) {
        self.resume = nodes;
    }

    /// Probes `site`'s nodes: those probing with the same settings and check profile go on
    /// (keeping their state), changed or new ones start afresh, removed ones stop. Every node
    /// must be probeable before anything changes. Returns what changed and the shortest check
    /// interval (the site task's round).
    pub fn apply(
        &mut self,
        deployment: &Deployment,
        site: &Site,
    ) -> Result<(Reprobed, Duration), StartError> {
        let mut planned = Vec::new();
        let source = site.healthd.probe_source;
        for node in &site.nodes {
            let (prober, interval) = prober_for(deployment, node, source)?;
            planned.push((node.clone(), prober, interval));
        }
        let watch = WatchSettings::of(site);
        let mut summary = Reprobed::default();
        let mut interval = Duration::from_secs(1);
        let mut next = HashMap::new();
        for (index, (node, prober, profile_interval)) in planned.into_iter().enumerate() {
            interval = interval.min(profile_interval);
            match self.tasks.remove(&node.name) {
                Some(running)
                    if running.node == node
                        && &running.profile == prober.profile()
                        && running.watch == watch
                        && running.source == source =>
                {
                    summary.kept += 1;
                    next.insert(node.name.clone(), running);
                }
                _ => {
                    summary.started += 1;
                    let task = self.spawn(
                        index,
                        deployment.clone(),
                        node.clone(),
                        (prober, source),
                        watch,
                    );
                    next.insert(node.name.clone(), task);
                }
            }
        }
        summary.stopped = self.tasks.len();
        self.tasks = next;
        Ok((summary, interval))
    }

    fn spawn(
        &mut self,
        index: usize,
        deployment: Deployment,
        node: Node,
        (prober, source): (Prober, Option<std::net::IpAddr>),
        watch: Option<WatchSettings>,
    ) -> ProbeTask {
        let profile = prober.profile().clone();
        // Status streams are what stream nodes offer: watched where the check plays one.
        let streams = profile.kind == config::CheckKind::Hls;
        let watcher = watch.filter(|_| streams).map(|settings| {
            let watcher = Watcher {
                node: node.clone(),
                client: prober.client().clone(),
                settings,
                channels: prober.channels().to_vec(),
                updates: self.updates.clone(),
                metrics: self.metrics.clone(),
                seen: self.watched.clone(),
            };
            let name = format!("status stream watcher of node {}", node.name);
            tokio::spawn(supervised(name, move || watcher.clone().run()))
        });
        let config = node.clone();
        // A round takes at most the interval and the probe's time-out; allow for several.
        let bound = (profile.interval.get() + profile.timeout.get()) * 3 + Duration::from_secs(1);
        let beat = self
            .liveness
            .heartbeat(format!("probes of node {}", node.name), bound);
        let (updates, metrics, task_beat) =
            (self.updates.clone(), self.metrics.clone(), beat.clone());
        let name = format!("probe task of node {}", node.name);
        let mut first = Some(prober);
        // Only the first run resumes: a task started again after a panic starts over.
        let mut resume = self.resume.remove(&node.name);
        let registry = self.registry.clone();
        let task = tokio::spawn(supervised(name, move || {
            let prober = first
                .take()
                .or_else(|| prober_for(&deployment, &node, source).ok().map(|(p, _)| p));
            let (node, updates, metrics, beat) = (
                node.clone(),
                updates.clone(),
                metrics.clone(),
                task_beat.clone(),
            );
            let (resume, registry) = (resume.take(), registry.clone());
            async move {
                if let Some(prober) = prober {
                    let task = NodeTask {
                        index,
                        node,
                        prober,
                        tx: updates,
                        metrics,
                        beat,
                        registry,
                    };
                    task.run(resume).await;
                }
            }
        }));
        ProbeTask {
            node: config,
            profile,
            watch,
            source,
            task,
            watcher,
            beat,
        }
    }
}

/// Runs the task `make` builds until it returns; a panic is logged and the task built again,
/// so one bad probe result does not leave a node unwatched. `what` names it in the log.
async fn supervised<F, Fut>(what: String, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let mut task = tokio::spawn(make());
        /// The inner task goes with the supervisor (a reload aborts the supervisor).
        struct AbortInner<'a>(&'a mut tokio::task::JoinHandle<()>);
        impl Drop for AbortInner<'_> {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let guard = AbortInner(&mut task);
        let ended = (&mut *guard.0).await;
        drop(guard);
        match ended {
            Err(e) if e.is_panic() => {
                error!("{what} panicked: started again, the node starts over");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return,
        }
    }
}

/// The prober of a node: its own check profile, else its first service's; its connections
/// leave from `source` when set.
fn prober_for(
    d: &Deployment,
    node: &Node,
    source: Option<std::net::IpAddr>,
) -> Result<(Prober, Duration), StartError> {
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
    let channels: Vec<String> = services
        .iter()
        .flat_map(|s| s.channels.iter().cloned())
        .collect();
    let interval = profile.interval.get();
    // Protected channels are played with a token, as a subscriber's player would: a node
    // whose token checks fail its viewers fails its probes too.
    let mut tokens = HashMap::new();
    for channel in d.channels.iter() {
        if let Some(name) = &channel.token
            && let Some(config) = d.token_profile(name)
        {
            tokens.insert(channel.name.clone(), tokens::Profile::new(config)?);
        }
    }
    let prober = Prober::new(profile.clone(), channels).with_tokens(tokens);
    let client = if node.tls.is_some() {
        // The node's certificate must name what viewers ask for: its first service's hostname,
        // else its address.
        let name = services
            .first()
            .and_then(|s| s.hostnames.first().cloned())
            .unwrap_or_else(|| node.reach().ip().to_string());
        let ca = (profile.hls.as_ref().and_then(|h| h.ca_file.as_deref()))
            .or_else(|| profile.http.as_ref().and_then(|h| h.ca_file.as_deref()));
        crate::probe::http::Client::with_tls(ca, &name).map_err(|reason| StartError::Tls {
            node: node.name.clone(),
            reason,
        })?
    } else {
        crate::probe::http::Client::default()
    };
    let prober = prober.with_client(client.from_source(source));
    Ok((prober, interval))
}

/// One node's probing, and what it needs.
struct NodeTask {
    index: usize,
    node: Node,
    prober: Prober,
    tx: mpsc::Sender<NodeUpdate>,
    metrics: Arc<Metrics>,
    beat: Beat,
    registry: Registry,
}

impl NodeTask {
    /// Probes the node forever: every interval (with jitter), or faster while a change is
    /// being confirmed, so a failure is acted on within rise/fall × the fast interval. With
    /// `resume`, the node goes on from where a replaced healthd left it, said at once.
    async fn run(self, resume: Option<SavedNode>) {
        let NodeTask {
            index,
            node,
            prober,
            tx,
            metrics,
            beat,
            registry,
        } = self;
        let profile = prober.profile().clone();
        let mut tracker = NodeTracker::new(&profile, Instant::now());
        if let Some(saved) = resume {
            tracker = NodeTracker::restore(&profile, &saved.tracker, Instant::now());
            let update = NodeUpdate {
                node: node.name.clone(),
                said: Said::Resumed {
                    health: tracker.health(),
                    report: saved.report,
                    watched: saved.watched.unwrap_or(Watched::Unknown),
                },
            };
            if tx.send(update).await.is_err() {
                return;
            }
        }
        node_task(index, node, prober, tx, metrics, beat, registry, tracker).await;
    }
}

/// The probing loop of [`NodeTask::run`].
#[allow(clippy::too_many_arguments)]
async fn node_task(
    index: usize,
    node: Node,
    mut prober: Prober,
    tx: mpsc::Sender<NodeUpdate>,
    metrics: Arc<Metrics>,
    beat: Beat,
    registry: Registry,
    mut tracker: NodeTracker,
) {
    let profile = prober.profile().clone();
    let mut went_down = false;
    let mut down_reason = String::new();
    let mut seed = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    loop {
        beat.beat();
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
            // A recovery is logged at the level of the failure before it, so an operator
            // watching warnings sees both ends; the first "up" after start is routine.
            match t.to {
                Health::Up if went_down => {
                    warn!(node = %node.name, "node up again: {}", t.reason)
                }
                Health::Up => info!(node = %node.name, "node up: {}", t.reason),
                Health::Down => {
                    went_down = true;
                    warn!(node = %node.name, "node down: {}", t.reason)
                }
            }
            down_reason = match t.to {
                Health::Up => String::new(),
                Health::Down => t.reason,
            }
        } else if !went_down && !outcome.ok && tracker.health() == Health::Down {
            // Down from the start, with no change to say why: the latest failure says it (a
            // node coming up refuses connections first, then answers what is really wrong).
            down_reason = outcome.detail.clone();
        }
        let _ = tracker.tick(Instant::now());
        let report = crate::report::read(
            prober.client(),
            &node.status_url(),
            node.capacity_mbps,
            profile.timeout.get(),
        )
        .await;
        registry.lock().unwrap_or_else(|e| e.into_inner()).insert(
            node.name.clone(),
            SavedNode {
                tracker: tracker.save(Instant::now()),
                report: report.unwrap_or_default(),
                watched: None,
            },
        );
        let update = NodeUpdate {
            node: node.name.clone(),
            said: Said::Probe {
                health: tracker.health(),
                ok: outcome.ok,
                detail: down_reason.clone(),
                report,
            },
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
