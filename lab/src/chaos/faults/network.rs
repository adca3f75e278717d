//! Faults in the network: a cut uplink, lossy paths to the nodes, the feeds cut off from
//! geodns, and an upstream router that stops.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::super::checks::Run;
use super::super::{Check, World};
use super::{
    Fault, bfd_downs, each_geodns, first, kill, nft_delete, nft_load, start, stream_nodes,
};
use crate::timeline::{Timeline, What, lane};

/// A node's link interfaces.
fn interfaces(topology: &crate::topology::Topology, node: &str) -> Vec<String> {
    topology
        .links
        .iter()
        .flat_map(|l| l.ends.iter())
        .filter(|e| e.node == node)
        .map(|e| e.interface.clone())
        .collect()
}

/// The path between the site's speaker and its first upstream router goes silent: the router
/// drops every packet to and from the speaker's address, its interfaces stay up (a failed
/// switch port or fibre, not a link the kernel sees go down). BFD must take the session down
/// on both sides, so that the router withdraws and the transit network moves the traffic to
/// the other upstream, long before the BGP hold time would.
pub struct LinkCut {
    router: String,
    speaker: std::net::IpAddr,
    /// The router's address on its link to the transit network: where the transit sends the
    /// site's traffic while the router carries it.
    uplink: String,
}

/// The nftables table of a silent path.
const LINK_CUT_TABLE: &str = "lab_link_cut";

/// Once BFD has found the silent path (its detection time), the router's withdraw reaches the
/// transit network in one BGP update.
const LINK_CUT_PROPAGATION: Duration = Duration::from_millis(100);

impl LinkCut {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        let router = first(world.site_nodes(site, "router"), site, "router")?;
        let speaker = world.speaker_address(site)?;
        let topology = world.lab.topology();
        let transit =
            |n: &str| topology.node(n).and_then(|n| n.label("lab.role")) == Some("transit");
        let uplink = topology
            .links
            .iter()
            .find_map(|l| {
                let [a, b] = &l.ends;
                let ours = if a.node == router && transit(&b.node) {
                    a
                } else if b.node == router && transit(&a.node) {
                    b
                } else {
                    return None;
                };
                ours.addresses.first().map(|a| a.addr().to_string())
            })
            .ok_or_else(|| anyhow!("{router} has no addressed link to a transit node"))?;
        Ok(Self {
            router,
            speaker,
            uplink,
        })
    }

    /// The slowest BFD detection among the site's sessions, if every one runs BFD.
    fn bfd_detection(world: &World<'_>, site: &str) -> Option<Duration> {
        let peers = &world.deployment.site(site)?.peers;
        peers
            .iter()
            .map(|p| p.bfd.map(|b| b.detection_time()))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

impl Fault for LinkCut {
    fn describe(&self) -> String {
        format!("silence {}", self.target())
    }

    fn target(&self) -> String {
        format!("{} <-> {}", self.router, self.speaker)
    }

    fn inject(&self, world: &World<'_>, _: &Timeline, _: Duration) -> Result<()> {
        let family = if self.speaker.is_ipv4() { "ip" } else { "ip6" };
        let s = self.speaker;
        let ruleset = format!(
            "table inet {LINK_CUT_TABLE} {{\n  chain input {{ type filter hook input priority -10; {family} saddr {s} drop; }}\n  chain output {{ type filter hook output priority -10; {family} daddr {s} drop; }}\n  chain forward {{ type filter hook forward priority -10; {family} saddr {s} drop; {family} daddr {s} drop; }}\n}}\n"
        );
        nft_load(&world.lab.namespace(&self.router)?, &ruleset)
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        nft_delete(&world.lab.namespace(&self.router)?, LINK_CUT_TABLE);
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = Vec::new();
        match Self::bfd_detection(run.world, run.site) {
            Some(detection) => checks.push(run.transit_leaves(
                &self.uplink,
                &self.router,
                detection + LINK_CUT_PROPAGATION,
            )),
            None => checks.push(Check {
                what: format!("BFD runs on every session of {}", run.site),
                bound: "every peer has `bfd`".into(),
                measured: "a peer without BFD: the silent path lasts until the hold time".into(),
                passed: false,
            }),
        }
        checks.extend(run.stays_announced_except(std::slice::from_ref(&self.router)));
        checks.push(run.transit_keeps_route(&format!(" without {}", self.router)));
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}

/// 1% of the packets arriving at a node dropped, where tc netem is not available.
const LOSS_TABLE: &str = "table inet lab_loss {\n  chain input {\n    type filter hook input priority 0;\n    numgen random mod 100 < 1 drop\n  }\n}\n";

/// Latency and 1% loss on the path to every stream node of the site.
pub struct Netem {
    nodes: Vec<String>,
    /// BFD downs at every speaker when the fault went in: none may follow.
    bfd_downs: std::sync::Mutex<Option<u64>>,
}

impl Netem {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        let nodes = stream_nodes(world, site);
        if nodes.is_empty() {
            bail!("site {site} has no stream node in the topology");
        }
        Ok(Self {
            nodes,
            bfd_downs: std::sync::Mutex::new(None),
        })
    }
}

impl Fault for Netem {
    fn describe(&self) -> String {
        format!("netem 40ms±10ms, 1% loss on {}", self.target())
    }

    fn target(&self) -> String {
        self.nodes.join(", ")
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, _: Duration) -> Result<()> {
        *self.bfd_downs.lock().expect("not poisoned") = Some(bfd_downs(world)?);
        let lab = world.lab;
        for node in &self.nodes {
            let ns = lab.namespace(node)?;
            for interface in interfaces(lab.topology(), node) {
                let out = Command::new("tc")
                    .args([
                        "-n", &ns, "qdisc", "add", "dev", &interface, "root", "netem",
                    ])
                    .args(["delay", "40ms", "10ms", "loss", "1%"])
                    .output()
                    .context("cannot run tc")?;
                if out.status.success() {
                    continue;
                }
                // Kernels without sch_netem: the loss alone, dropped by nftables.
                nft_load(&ns, LOSS_TABLE).with_context(|| {
                    format!(
                        "{node}: tc netem failed ({}) and nftables could not drop packets either",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                })?;
                timeline.record(
                    lane::FAULT,
                    What::Info(format!(
                        "{node}: no sch_netem in this kernel: 1% loss by nftables, no added delay"
                    )),
                );
                break;
            }
        }
        Ok(())
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        let lab = world.lab;
        for node in &self.nodes {
            let ns = lab.namespace(node)?;
            for interface in interfaces(lab.topology(), node) {
                let _ = Command::new("tc")
                    .args(["-n", &ns, "qdisc", "del", "dev", &interface, "root"])
                    .output();
            }
            nft_delete(&ns, "lab_loss");
        }
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = run.stays_announced();
        checks.extend(run.answers_unchanged(&run.served_cities(), " (no false positive)"));
        // A BFD session taken down by a busy machine would drop a BGP session while the site
        // is healthy; with a sister router re-advertising the route it shows in no route.
        let before = *self.bfd_downs.lock().expect("not poisoned");
        let after = bfd_downs(run.world)?;
        checks.push(Check {
            what: "no BFD session goes down (no false positive)".into(),
            bound: "0".into(),
            measured: before.map_or("not read at the fault".into(), |b| {
                after.saturating_sub(b).to_string()
            }),
            passed: before == Some(after),
        });
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}

/// The feed's traffic dropped both ways at a site controller (`PORT` is the feed's port).
const FEED_CUT_TABLE: &str = "table inet lab_feed {\n  chain input {\n    type filter hook input priority 0;\n    tcp dport PORT drop\n  }\n  chain output {\n    type filter hook output priority 0;\n    tcp sport PORT drop\n  }\n}\n";

/// Every site's feed cut off at its controller.
pub struct FeedsCut {
    controllers: Vec<String>,
}

impl FeedsCut {
    pub fn new(world: &World<'_>) -> Result<Self> {
        let controllers: Vec<String> = world
            .deployment
            .sites
            .iter()
            .flat_map(|s| world.site_nodes(&s.name, "speaker"))
            .collect();
        if controllers.is_empty() {
            bail!("the topology has no site controllers (lab.role: speaker)");
        }
        Ok(Self { controllers })
    }

    /// The port a site controller's healthd serves its feed on.
    fn feed_port(world: &World<'_>, controller: &str) -> Result<u16> {
        let site = world
            .lab
            .topology()
            .node(controller)
            .and_then(|n| n.label("lab.site"))
            .and_then(|s| world.deployment.site(s))
            .ok_or_else(|| {
                anyhow!("{controller} has no lab.site label naming a deployment site")
            })?;
        Ok(site.healthd.feed.port())
    }
}

impl Fault for FeedsCut {
    fn describe(&self) -> String {
        format!("cut the feeds at {}", self.target())
    }

    fn target(&self) -> String {
        self.controllers.join(", ")
    }

    fn observe_at_least(&self, world: &World<'_>, _: &str) -> Duration {
        world
            .deployment
            .dns
            .as_ref()
            .map_or(Duration::from_secs(30), |d| d.feed_grace.get())
            + Duration::from_secs(3)
    }

    fn inject(&self, world: &World<'_>, _: &Timeline, _: Duration) -> Result<()> {
        for node in &self.controllers {
            let port = Self::feed_port(world, node)?;
            let ruleset = FEED_CUT_TABLE.replace("PORT", &port.to_string());
            nft_load(&world.lab.namespace(node)?, &ruleset)?;
        }
        Ok(())
    }

    /// What each geodns says of the feeds, from its metrics.
    fn before_repair(&self, world: &World<'_>, timeline: &Timeline) {
        each_geodns(world, |node, get| match get("/metrics") {
            Ok((200, text)) => {
                let ages: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("geodns_site_feed_age_seconds{"))
                    .collect();
                timeline.record(
                    lane::FAULT,
                    What::FeedsStale {
                        node: node.to_owned(),
                        stale: ages.iter().filter(|l| l.ends_with(" -1")).count(),
                        total: ages.len(),
                    },
                );
            }
            Ok((status, _)) => timeline.record(
                lane::FAULT,
                What::Error(format!("{node}: /metrics answered {status}")),
            ),
            Err(e) => timeline.record(lane::FAULT, What::Error(format!("{node}: {e:#}"))),
        });
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        for node in &self.controllers {
            nft_delete(&world.lab.namespace(node)?, "lab_feed");
        }
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        // Every node stays up: losing the feeds must not move anyone, within the grace (last
        // state kept) or after it (as if all were up).
        let mut checks = run.answers_unchanged(&run.all_cities(), " while the feeds are cut");
        checks.push(run.feeds_stale());
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}

/// The site's first upstream router stopped (SIGSTOP: it keeps its sessions and routes but
/// handles nothing), then the site goes down. The other upstream must get the withdraw in
/// time and the site's feed keep flowing: a stalled router stalls only itself.
///
/// The other router's kernel route cannot show it: the stopped router's stale copy of the
/// speaker's route, learnt over their sister session, points at the speaker too. So the
/// speaker's own path is asked of the other router (`birdc` or `vtysh`).
pub struct RouterStall {
    router: String,
    others: Vec<String>,
    nodes: Vec<String>,
    speaker: std::net::IpAddr,
}

/// The fault-lane note marking when the site went down, from which the withdraw is timed.
const SITE_DOWN: &str = "every stream node of the site killed";

/// The note that `router` no longer has the speaker's route.
fn left(router: &str) -> String {
    format!("the speaker's route left {router}")
}

impl RouterStall {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        let nodes = stream_nodes(world, site);
        if nodes.is_empty() {
            bail!("site {site} has no stream node in the topology");
        }
        let mut routers = world.site_nodes(site, "router");
        if routers.len() < 2 {
            bail!("site {site} needs two upstream routers to stall one");
        }
        let router = routers.remove(0);
        Ok(Self {
            router,
            others: routers,
            nodes,
            speaker: world.speaker_address(site)?,
        })
    }

    /// Whether `router` still holds the speaker's path for the prefix.
    fn has_speaker_path(&self, world: &World<'_>, router: &str) -> Result<bool> {
        let dir = world.lab.node_dir(router);
        let prefix = world.prefix.to_string();
        let kind = world
            .lab
            .topology()
            .node(router)
            .and_then(|n| n.label("lab.router"))
            .unwrap_or("bird");
        let out = match kind {
            "frr" => world.lab.output(
                router,
                &[
                    "vtysh",
                    "--vty_socket",
                    &dir.to_string_lossy(),
                    "-c",
                    &format!("show bgp ipv4 unicast neighbors {} routes", self.speaker),
                ],
            )?,
            _ => world.lab.output(
                router,
                &[
                    "birdc",
                    "-s",
                    &dir.join("bird.ctl").to_string_lossy(),
                    "show",
                    "route",
                    "for",
                    &prefix,
                    "protocol",
                    "site",
                ],
            )?,
        };
        Ok(out.contains(&prefix))
    }
}

impl Fault for RouterStall {
    fn describe(&self) -> String {
        format!(
            "stop {} (SIGSTOP), then kill {}",
            self.router,
            self.nodes.join(", ")
        )
    }

    fn target(&self) -> String {
        self.router.clone()
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, _: Duration) -> Result<()> {
        for other in &self.others {
            if !self.has_speaker_path(world, other)? {
                bail!("{other} has no path from the speaker before the fault");
            }
        }
        world.lab.stop(&self.router, libc::SIGSTOP)?;
        std::thread::sleep(Duration::from_secs(1));
        timeline.record(lane::FAULT, What::Info(SITE_DOWN.into()));
        kill(world, &self.nodes)?;
        let until = timeline.now() + Duration::from_secs(3);
        let mut waiting = self.others.clone();
        while !waiting.is_empty() && timeline.now() < until {
            let mut still = Vec::new();
            for other in waiting {
                if self.has_speaker_path(world, &other)? {
                    still.push(other);
                } else {
                    timeline.record(lane::FAULT, What::Info(left(&other)));
                }
            }
            waiting = still;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        world.lab.stop(&self.router, libc::SIGCONT)?;
        start(world, &self.nodes)
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let down = run
            .noted(SITE_DOWN)
            .ok_or_else(|| anyhow!("the site going down was not recorded"))?;
        let bound = Duration::from_secs(1);
        let mut checks: Vec<Check> = self
            .others
            .iter()
            .map(|other| {
                let at = run.noted(&left(other)).map(|t| t.saturating_sub(down));
                Check {
                    what: format!(
                        "site down while {} is stopped: withdrawn at {other}",
                        self.router
                    ),
                    bound: format!(
                        "< {} (router polling included)",
                        super::super::checks::ms(bound)
                    ),
                    measured: at.map_or("not withdrawn".into(), super::super::checks::ms),
                    passed: at.is_some_and(|a| a < bound),
                }
            })
            .collect();
        checks.extend(run.answers_move(Duration::from_millis(1500), Some(down)));
        checks.push(run.never_empty());
        Ok(checks)
    }
}
