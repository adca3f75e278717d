//! The site task: node states in; the decision ([`crate::decide`]), the feed and the speaker's
//! requests out.
//!
//! ```text
//!   probe task ×N ──NodeUpdate──▶ site task ──publish────────▶ feed (geodns, other sites)
//!   stream watcher ×N ──────────▶
//!   other sites' feeds ──changed──────▶ (NodeTable, Decider) ──ops──▶ bgp-speaker (lease renewed)
//!   admin API / drain file ─────▶
//! ```
//!
//! A round decides every service and sends every announcement again (the speaker renews the
//! lease, and one that restarted gets everything back at once). Rounds come every check
//! interval, at once when a node's state or another site's verdict changes, and when a
//! settling withdraw is due. The feed goes out before the speaker is driven, so DNS moves
//! viewers even while the speaker is slow to answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::Deployment;
use config::site::Site;
use daemon::Beat;
use feed::server::Publisher;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::admin::DrainSwitch;
use crate::decide::{Context, Decider, Decision, announcement_kind};
use crate::metrics::Metrics;
use crate::nodes::NodeTable;
use crate::other_sites::OtherSites;
use crate::schedule::{NodeUpdate, Said};
use crate::speaker::SpeakerLink;
use crate::verdict::Verdict;

/// A new configuration for the site task.
pub struct Reconfigure {
    pub deployment: Deployment,
    pub site: Site,
    /// The round interval: the shortest check interval at the site.
    pub interval: Duration,
}

/// The site task's state.
pub struct SiteTask {
    deployment: Deployment,
    site: Site,
    nodes: NodeTable,
    decider: Decider,
    /// Each service's last verdict, to log changes once.
    last: HashMap<String, Verdict>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    drain: DrainSwitch,
    other_sites: Arc<OtherSites>,
    speaker: SpeakerLink,
    /// Beaten every round: a site task that stops deciding is reported by `/healthz`.
    beat: Beat,
    /// When the task started: until every node has a probe result (or half a lease has
    /// passed), nothing is decided, published or asked of the speaker.
    started: Instant,
}

/// What the site task is given at start.
pub struct SiteSetup {
    pub deployment: Deployment,
    pub site: Site,
    pub publisher: Publisher,
    pub metrics: Arc<Metrics>,
    pub drain: DrainSwitch,
    pub other_sites: Arc<OtherSites>,
    pub beat: Beat,
}

impl SiteTask {
    pub fn new(setup: SiteSetup) -> Self {
        Self {
            nodes: NodeTable::new(&setup.site),
            decider: Decider::default(),
            last: HashMap::new(),
            speaker: SpeakerLink::new(setup.metrics.clone()),
            deployment: setup.deployment,
            site: setup.site,
            publisher: setup.publisher,
            metrics: setup.metrics,
            drain: setup.drain,
            other_sites: setup.other_sites,
            beat: setup.beat,
            started: Instant::now(),
        }
    }

    pub async fn run(
        mut self,
        mut updates: mpsc::Receiver<NodeUpdate>,
        mut control: mpsc::Receiver<Reconfigure>,
        interval: Duration,
    ) {
        let mut round = tokio::time::interval(interval);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let other_sites = self.other_sites.clone();
        loop {
            let settle = self.site.healthd.withdraw_settle.get();
            let settled_at = self.decider.next_settled(settle);
            let settled = settled_at.unwrap_or_else(Instant::now);
            tokio::select! {
                Some(new) = control.recv() => {
                    self.nodes.reconfigure(&new.site);
                    self.deployment = new.deployment;
                    self.site = new.site;
                    round = tokio::time::interval(new.interval);
                    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    self.round().await;
                }
                update = updates.recv() => {
                    let Some(u) = update else { return };
                    let changed = match u.said {
                        Said::Probe { health, ok, detail, report } => {
                            let report = report.unwrap_or_default();
                            self.nodes.update(&u.node, health, ok, report, detail)
                        }
                        Said::Stream(watched) => self.nodes.watched(&u.node, watched),
                        Said::Resumed { health, report, watched } => {
                            self.nodes.resume(&u.node, health, report, watched)
                        }
                    };
                    // A state change is acted on at once, not at the next round.
                    if changed == Some(true) {
                        self.round().await;
                    }
                }
                _ = round.tick() => self.round().await,
                // Another site's verdict changed: fail open, or stop failing open, at once.
                _ = other_sites.changed.notified() => self.round().await,
                // A settling withdraw is due.
                _ = tokio::time::sleep_until(settled.into()), if settled_at.is_some() => {
                    self.round().await
                }
            }
        }
    }

    /// Decides every service, publishes the feed, drives the speaker.
    ///
    /// A healthd that just started knows nothing of its nodes: deciding then would withdraw a
    /// healthy site (every node unknown counts as down) and publish that to every geodns. So it
    /// waits for every node's first probe result, which comes within one probe, or for half a
    /// lease (the routes the previous instance announced hold for the whole lease), after which
    /// nodes still unknown count as down.
    async fn round(&mut self) {
        self.beat.beat();
        let now = Instant::now();
        if !self.nodes.all_known() && now < self.started + self.site.healthd.lease.get() / 2 {
            return;
        }
        let drained = self.drain.drained(self.site.healthd.drain_file.as_deref());
        let grace = self
            .deployment
            .dns
            .as_ref()
            .map_or(Duration::from_secs(30), |d| d.feed_grace.get());
        let (other_sites, deployment, own) = (&self.other_sites, &self.deployment, &self.site.name);
        let elsewhere = |service: &str| other_sites.elsewhere(deployment, own, service, grace, now);
        let decision = self.decider.decide(
            now,
            &Context {
                deployment: &self.deployment,
                site: &self.site,
                nodes: &self.nodes,
                drained,
                elsewhere: &elsewhere,
            },
        );
        self.observe(&decision);
        let current = self.publisher.current();
        let mut feed = decision.feed.clone();
        // The sessions as the speaker last told them: they follow the next round's drive.
        feed.peers = self.speaker.peers().to_vec();
        if current.nodes != feed.nodes
            || current.services != feed.services
            || current.peers != feed.peers
        {
            self.publisher.publish(feed);
        }
        self.speaker.drive(&self.site, decision.ops()).await;
    }

    /// Logs each service's verdict when it changes, and updates the metrics.
    fn observe(&mut self, decision: &Decision) {
        for entry in self.nodes.iter() {
            let name = entry.node.name.as_str();
            self.metrics
                .node_up
                .with_label_values(&[name])
                .set(i64::from(entry.up()));
            let version = entry.node.version.as_deref().unwrap_or("none");
            self.metrics
                .node_info
                .with_label_values(&[name, version])
                .set(1);
        }
        for s in &decision.services {
            let name = s.service.as_str();
            let verdict = &s.verdict;
            let kind = announcement_kind(&verdict.announcement);
            // A change of kind, not of detail: a graceful shutdown's deadline is part of its
            // announcement, but it is one phase to the operator.
            let last = self.last.get(name);
            let changed = last.is_none_or(|v| {
                v.healthy != verdict.healthy || announcement_kind(&v.announcement) != kind
            });
            if changed {
                if verdict.healthy && last.is_some_and(|v| !v.healthy) {
                    // At the level of the failure it ends, so both show where warnings do.
                    warn!(service = %name, "service recovered at this site ({}): {kind}", verdict.reason);
                } else if verdict.healthy {
                    info!(service = %name, "service healthy at this site ({}): {kind}", verdict.reason);
                } else if s.fail_open() {
                    error!(service = %name, "EVERY SITE IS DOWN for this service: announcing it anyway ({})", verdict.reason);
                } else {
                    warn!(service = %name, "service unhealthy at this site ({}): {kind}", verdict.reason);
                }
            }
            self.metrics
                .fail_open
                .with_label_values(&[name])
                .set(i64::from(s.fail_open()));
            self.metrics
                .service_healthy
                .with_label_values(&[name])
                .set(i64::from(verdict.healthy));
            if s.op.is_some() {
                self.metrics
                    .announcements
                    .with_label_values(&[name, kind])
                    .inc();
            }
            self.last.insert(name.to_owned(), verdict.clone());
        }
    }
}
