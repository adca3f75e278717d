//! Faults that kill processes: stream nodes (one, a site's, every site's), healthd, the
//! speaker, a node that flaps, and a healthd that restarts.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::super::checks::Run;
use super::super::{Check, World};
use super::{Fault, first, kill, start, stream_nodes};
use crate::timeline::{Timeline, What, lane};

/// What a [`Kill`] kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillWhat {
    OneNode,
    SiteNodes,
    EveryNode,
    Healthd,
    Speaker,
}

/// Processes killed at the fault and started again at the repair.
pub struct Kill {
    what: KillWhat,
    nodes: Vec<String>,
}

impl Kill {
    pub fn new(world: &World<'_>, site: &str, what: KillWhat) -> Result<Self> {
        let nodes = match what {
            KillWhat::OneNode => vec![first(stream_nodes(world, site), site, "streamnode")?],
            KillWhat::SiteNodes => stream_nodes(world, site),
            KillWhat::EveryNode => world
                .deployment
                .sites
                .iter()
                .flat_map(|s| stream_nodes(world, &s.name))
                .collect(),
            KillWhat::Healthd => vec![first(world.site_nodes(site, "healthd"), site, "healthd")?],
            KillWhat::Speaker => vec![first(world.site_nodes(site, "speaker"), site, "speaker")?],
        };
        if nodes.is_empty() {
            bail!("site {site} has no stream node in the topology");
        }
        Ok(Self { what, nodes })
    }
}

/// Node or site death to withdrawn at every upstream and to DNS moved: the failover aim's p95.
const FAILOVER_BOUND: Duration = Duration::from_millis(300);

impl Fault for Kill {
    fn describe(&self) -> String {
        format!("kill {}", self.target())
    }

    fn target(&self) -> String {
        self.nodes.join(", ")
    }

    /// Past the lease for a dead healthd, past hold time plus restart time for a dead speaker.
    fn observe_at_least(&self, world: &World<'_>, site: &str) -> Duration {
        let Some(s) = world.deployment.site(site) else {
            return Duration::ZERO;
        };
        match self.what {
            KillWhat::Healthd => s.healthd.lease.get() + Duration::from_secs(2),
            KillWhat::Speaker => {
                let hold = s.peers.iter().map(|p| p.hold_time).max().unwrap_or(90);
                Duration::from_secs(u64::from(hold) + u64::from(s.speaker.restart_time) + 1)
            }
            _ => Duration::ZERO,
        }
    }

    fn inject(&self, world: &World<'_>, _: &Timeline, _: Duration) -> Result<()> {
        kill(world, &self.nodes)
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        start(world, &self.nodes)
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = Vec::new();
        match self.what {
            KillWhat::OneNode => {
                checks.extend(run.stays_announced());
                // The node's status stream closes with it: out at once.
                checks.extend(run.dropped_from_dns(&self.nodes, FAILOVER_BOUND));
                checks.push(run.never_empty());
                checks.extend(run.viewers_unharmed(Duration::ZERO));
            }
            KillWhat::SiteNodes => {
                // Status streams close at once; the site listed first also waits its
                // withdraw_settle.
                checks.extend(run.withdrawn_within(FAILOVER_BOUND, "every node down", None, &[]));
                checks.extend(run.answers_move(FAILOVER_BOUND, None));
                checks.push(run.never_empty());
                checks.extend(run.viewers_unharmed(Duration::ZERO));
            }
            KillWhat::EveryNode => {
                // Never a black hole: the transit network always has a route to the prefix.
                // The first site to lose its last node may withdraw while another still looks
                // healthy, but once every site is known down each announces again (fail open).
                checks.push(run.transit_keeps_route(""));
                checks.extend(run.every_site_announces());
                checks.push(run.never_empty());
            }
            KillWhat::Healthd => {
                let lease = run
                    .world
                    .deployment
                    .site(run.site)
                    .map_or(Duration::from_secs(3), |s| s.healthd.lease.get());
                checks.extend(run.withdrawn_within(
                    lease + Duration::from_secs(1),
                    "lease expired",
                    None,
                    &[],
                ));
                checks.push(run.never_empty());
                checks.extend(run.viewers_unharmed(Duration::ZERO));
            }
            KillWhat::Speaker => {
                // Upstreams notice when the kernel closes the TCP session, at the latest at the
                // hold timer; with graceful restart (RFC 4724) they then keep the routes as
                // stale for the restart time the speaker advertised before dropping them.
                let site = run
                    .world
                    .deployment
                    .site(run.site)
                    .ok_or_else(|| anyhow!("no site `{}`", run.site))?;
                let hold = site.peers.iter().map(|p| p.hold_time).max().unwrap_or(90);
                let bound = if site.peers.iter().any(|p| p.graceful_restart) {
                    u64::from(hold) + u64::from(site.speaker.restart_time)
                } else {
                    u64::from(hold)
                };
                checks.extend(run.withdrawn_within(
                    Duration::from_secs(bound),
                    "session lost",
                    None,
                    &[],
                ));
                checks.push(run.never_empty());
                checks.extend(run.viewers_unharmed(Duration::ZERO));
            }
        }
        Ok(checks)
    }
}

/// One stream node killed and started again every 1.5 s while the fault lasts.
pub struct NodeFlap {
    node: String,
}

impl NodeFlap {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        Ok(Self {
            node: first(stream_nodes(world, site), site, "streamnode")?,
        })
    }
}

impl Fault for NodeFlap {
    fn describe(&self) -> String {
        format!("flap {}", self.node)
    }

    fn target(&self) -> String {
        self.node.clone()
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, observe: Duration) -> Result<()> {
        let until = timeline.now() + observe.saturating_sub(Duration::from_secs(2));
        while timeline.now() < until {
            world.lab.stop(&self.node, libc::SIGKILL)?;
            timeline.record(lane::FAULT, What::Info(format!("{} down", self.node)));
            std::thread::sleep(Duration::from_millis(1500));
            world.lab.start(&self.node)?;
            timeline.record(lane::FAULT, What::Info(format!("{} up", self.node)));
            std::thread::sleep(Duration::from_millis(1500));
        }
        Ok(())
    }

    fn restore(&self, _: &World<'_>) -> Result<()> {
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = run.stays_announced();
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}

/// healthd restarted while one of its nodes comes back: the old healthd last said the node was
/// down; the new one (whose feed generations start over) says it is up. geodns must follow the
/// new one at once, and the restart must withdraw nothing.
pub struct HealthdRestart {
    healthd: String,
    node: String,
}

/// The fault-lane note marking the new healthd's start, from which geodns is timed.
const HEALTHD_STARTED: &str = "healthd started again";

impl HealthdRestart {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        Ok(Self {
            healthd: first(world.site_nodes(site, "healthd"), site, "healthd")?,
            node: first(stream_nodes(world, site), site, "streamnode")?,
        })
    }
}

impl Fault for HealthdRestart {
    fn describe(&self) -> String {
        format!(
            "kill {}, restart {} while healthd is down, start {} again",
            self.node, self.healthd, self.healthd
        )
    }

    fn target(&self) -> String {
        format!("{}, {}", self.healthd, self.node)
    }

    fn observe_at_least(&self, _: &World<'_>, _: &str) -> Duration {
        Duration::from_secs(10)
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, _: Duration) -> Result<()> {
        // The node goes: the running healthd says so on its feed (a high generation).
        kill(world, std::slice::from_ref(&self.node))?;
        std::thread::sleep(Duration::from_secs(3));
        // healthd goes; the node comes back while nobody watches it. healthd stays away for
        // less than its lease: its routes must outlive the restart.
        kill(world, std::slice::from_ref(&self.healthd))?;
        timeline.record(lane::FAULT, What::Info(format!("{} killed", self.healthd)));
        start(world, std::slice::from_ref(&self.node))?;
        std::thread::sleep(Duration::from_secs(1));
        timeline.record(lane::FAULT, What::Info(HEALTHD_STARTED.into()));
        start(world, std::slice::from_ref(&self.healthd))
    }

    fn restore(&self, _: &World<'_>) -> Result<()> {
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let started = run
            .noted(HEALTHD_STARTED)
            .ok_or_else(|| anyhow!("the healthd restart was not recorded"))?;
        let ips = run.addresses(std::slice::from_ref(&self.node));
        let bound = Duration::from_secs(1);
        let mut checks = Vec::new();
        for city in run.served_cities() {
            let at = run.answer_change(&city, Some(started), &|w| {
                w.answer_addresses()
                    .is_some_and(|a| ips.iter().all(|ip| a.contains(ip)))
            });
            checks.push(Check {
                what: format!(
                    "DNS for {city} follows the new healthd ({} back in the answers)",
                    self.node
                ),
                bound: format!("< {} after healthd starts", super::super::checks::ms(bound)),
                measured: at.map_or("never".into(), super::super::checks::ms),
                passed: at.is_some_and(|a| a < bound),
            });
        }
        checks.extend(run.stays_announced());
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}
