//! The faults and what DESIGN.md's failure table says must follow each.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::{Check, World};
use crate::timeline::{EventKind, Timeline};
use crate::viewer::Experience;

/// The faults `lab chaos` injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Kill one stream node of the site.
    NodeKill,
    /// Freeze one node's stream while its HTTP server keeps answering 200.
    NodeFreeze,
    /// Kill every stream node of the site.
    SiteDown,
    /// Kill every stream node of every site, whatever `--site` says: nothing can be played,
    /// but the prefix must stay announced somewhere and DNS must keep answering (fail open).
    AllSitesDown,
    /// Kill the site's healthd.
    HealthdKill,
    /// Kill the site's bgp-speaker.
    SpeakerKill,
    /// Cut the link between the site's first upstream router and the transit network.
    LinkCut,
    /// Add latency and 1% loss (tc netem) on the path to every stream node of the site.
    Netem,
    /// Kill and restart one stream node of the site every 1.5 s.
    NodeFlap,
    /// Cut every site's feed off from geodns (nftables at each site controller), whatever
    /// `--site` says: geodns must keep the last state for its grace, then fail open.
    FeedsCut,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NodeKill => "node-kill",
            Scenario::NodeFreeze => "node-freeze",
            Scenario::SiteDown => "site-down",
            Scenario::AllSitesDown => "all-sites-down",
            Scenario::HealthdKill => "healthd-kill",
            Scenario::SpeakerKill => "speaker-kill",
            Scenario::LinkCut => "link-cut",
            Scenario::Netem => "netem",
            Scenario::NodeFlap => "node-flap",
            Scenario::FeedsCut => "feeds-cut",
        }
    }
}

/// The feed's traffic dropped both ways at a site controller (`PORT` is the feed's port).
const FEED_CUT_TABLE: &str = "table inet lab_feed {\n  chain input {\n    type filter hook input priority 0;\n    tcp dport PORT drop\n  }\n  chain output {\n    type filter hook output priority 0;\n    tcp sport PORT drop\n  }\n}\n";

/// Loads an nftables ruleset into a namespace.
fn nft_load(ns: &str, ruleset: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run nft (Debian package nftables)")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(ruleset.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes an nftables table from a namespace; one that is not there is no error (a repair
/// runs whether or not the fault took).
fn nft_delete(ns: &str, table: &str) {
    let _ = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "delete", "table", "inet", table])
        .output();
}

/// The port a site controller's healthd serves its feed on.
fn feed_port(world: &World<'_>, controller: &str) -> Result<u16> {
    let site = world
        .lab
        .topology()
        .node(controller)
        .and_then(|n| n.label("lab.site"))
        .and_then(|s| world.deployment.site(s))
        .ok_or_else(|| anyhow!("{controller} has no lab.site label naming a deployment site"))?;
    Ok(site.healthd.feed.port())
}

/// 1% of the packets arriving at a node dropped, where tc netem is not available.
const LOSS_TABLE: &str = "table inet lab_loss {\n  chain input {\n    type filter hook input priority 0;\n    numgen random mod 100 < 1 drop\n  }\n}\n";

/// A fault, aimed: which topology nodes or interfaces it touches.
pub struct Fault {
    scenario: Scenario,
    /// Topology nodes hit.
    nodes: Vec<String>,
    /// For a link cut: the router and its interface.
    interface: Option<(String, String)>,
}

impl Fault {
    pub fn prepare(scenario: Scenario, world: &World<'_>, site: &str) -> Result<Self> {
        let stream_nodes: Vec<String> = world
            .site_nodes(site, "streamnode")
            .into_iter()
            .filter(|n| {
                world
                    .node(n)
                    .is_ok_and(|node| node.services.contains(&world.service.name))
            })
            .collect();
        let first = |list: Vec<String>, what: &str| {
            list.into_iter()
                .next()
                .ok_or_else(|| anyhow!("site {site} has no {what} node in the topology"))
        };
        let (nodes, interface) = match scenario {
            Scenario::NodeKill | Scenario::NodeFreeze | Scenario::NodeFlap => {
                (vec![first(stream_nodes, "streamnode")?], None)
            }
            Scenario::SiteDown | Scenario::Netem => {
                if stream_nodes.is_empty() {
                    bail!("site {site} has no stream node in the topology");
                }
                (stream_nodes, None)
            }
            Scenario::AllSitesDown => {
                let every: Vec<String> = world
                    .deployment
                    .sites
                    .iter()
                    .flat_map(|s| world.site_nodes(&s.name, "streamnode"))
                    .filter(|n| {
                        world
                            .node(n)
                            .is_ok_and(|node| node.services.contains(&world.service.name))
                    })
                    .collect();
                if every.is_empty() {
                    bail!("the topology has no stream node");
                }
                (every, None)
            }
            Scenario::HealthdKill => (
                vec![first(world.site_nodes(site, "healthd"), "healthd")?],
                None,
            ),
            Scenario::FeedsCut => {
                let controllers: Vec<String> = world
                    .deployment
                    .sites
                    .iter()
                    .flat_map(|s| world.site_nodes(&s.name, "speaker"))
                    .collect();
                if controllers.is_empty() {
                    bail!("the topology has no site controllers (lab.role: speaker)");
                }
                (controllers, None)
            }
            Scenario::SpeakerKill => (
                vec![first(world.site_nodes(site, "speaker"), "speaker")?],
                None,
            ),
            Scenario::LinkCut => {
                let router = first(world.site_nodes(site, "router"), "router")?;
                let topology = world.lab.topology();
                let uplink = topology
                    .links
                    .iter()
                    .find_map(|l| {
                        let [a, b] = &l.ends;
                        let transit = |n: &str| {
                            topology.node(n).and_then(|n| n.label("lab.role")) == Some("transit")
                        };
                        if a.node == router && transit(&b.node) {
                            Some(a.interface.clone())
                        } else if b.node == router && transit(&a.node) {
                            Some(b.interface.clone())
                        } else {
                            None
                        }
                    })
                    .ok_or_else(|| anyhow!("{router} has no link to a transit node"))?;
                (vec![router.clone()], Some((router, uplink)))
            }
        };
        Ok(Self {
            scenario,
            nodes,
            interface,
        })
    }

    pub fn target(&self) -> String {
        match &self.interface {
            Some((router, interface)) => format!("{router}:{interface}"),
            None => self.nodes.join(", "),
        }
    }

    pub fn describe(&self) -> String {
        let target = self.target();
        match self.scenario {
            Scenario::NodeKill | Scenario::SiteDown | Scenario::AllSitesDown => {
                format!("kill {target}")
            }
            Scenario::NodeFreeze => format!("freeze the stream of {target}"),
            Scenario::HealthdKill | Scenario::SpeakerKill => format!("kill {target}"),
            Scenario::LinkCut => format!("cut {target}"),
            Scenario::Netem => format!("netem 40ms±10ms, 1% loss on {target}"),
            Scenario::NodeFlap => format!("flap {target}"),
            Scenario::FeedsCut => format!("cut the feeds at {target}"),
        }
    }

    /// Puts the fault in. A flap keeps going for `observe`.
    pub fn inject(&self, world: &World<'_>, timeline: &Timeline, observe: Duration) -> Result<()> {
        let lab = world.lab;
        match self.scenario {
            Scenario::NodeKill
            | Scenario::SiteDown
            | Scenario::AllSitesDown
            | Scenario::HealthdKill
            | Scenario::SpeakerKill => {
                for node in &self.nodes {
                    lab.stop(node, libc::SIGKILL)?;
                }
            }
            Scenario::NodeFreeze => admin_post(world, &self.nodes[0], "/freeze")?,
            Scenario::FeedsCut => {
                for node in &self.nodes {
                    let port = feed_port(world, node)?;
                    let ruleset = FEED_CUT_TABLE.replace("PORT", &port.to_string());
                    nft_load(&lab.namespace(node)?, &ruleset)?;
                }
            }
            Scenario::LinkCut => {
                let (router, interface) = self.interface.as_ref().expect("link cut has one");
                let ns = lab.namespace(router)?;
                crate::netns::ip_in(&ns, &["link", "set", interface, "down"])?;
            }
            Scenario::Netem => {
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
                            "fault",
                            EventKind::Info,
                            format!("{node}: no sch_netem in this kernel: 1% loss by nftables, no added delay"),
                        );
                        break;
                    }
                }
            }
            Scenario::NodeFlap => {
                let node = &self.nodes[0];
                let until = timeline.now() + observe.saturating_sub(Duration::from_secs(2));
                while timeline.now() < until {
                    lab.stop(node, libc::SIGKILL)?;
                    timeline.record("fault", EventKind::Info, format!("{node} down"));
                    std::thread::sleep(Duration::from_millis(1500));
                    lab.start(node)?;
                    timeline.record("fault", EventKind::Info, format!("{node} up"));
                    std::thread::sleep(Duration::from_millis(1500));
                }
            }
        }
        Ok(())
    }

    /// Notes what the fault has done by the end of the observation, before the repair.
    pub fn before_repair(&self, world: &World<'_>, timeline: &Timeline) {
        if self.scenario != Scenario::FeedsCut {
            return;
        }
        for node in world.lab.topology().nodes_labelled("lab.role", "geodns") {
            let Some(admin) = world.deployment.dns.as_ref().map(|d| d.admin) else {
                return;
            };
            let Ok(ns) = world.lab.namespace(&node.name) else {
                continue;
            };
            // The admin endpoint may listen on every address: ask it on the node's loopback.
            let admin = if admin.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], admin.port()))
            } else {
                admin
            };
            let metrics = std::thread::spawn(move || -> Result<String> {
                crate::netns::enter(&ns)?;
                http_get(admin, "/metrics")
            })
            .join()
            .map_err(|_| anyhow!("metrics request panicked"))
            .and_then(|r| r);
            let text = match metrics {
                Ok(text) => text,
                Err(e) => {
                    timeline.record("fault", EventKind::Error, format!("{}: {e:#}", node.name));
                    continue;
                }
            };
            let ages: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("dns_site_feed_age_seconds{"))
                .collect();
            let stale = ages.iter().filter(|l| l.ends_with(" -1")).count();
            timeline.record(
                "fault",
                EventKind::Info,
                format!(
                    "geodns sees {stale} of {} feeds past their grace at {}",
                    ages.len(),
                    node.name
                ),
            );
        }
    }

    /// Takes the fault out again.
    pub fn restore(&self, world: &World<'_>) -> Result<()> {
        let lab = world.lab;
        match self.scenario {
            Scenario::NodeKill
            | Scenario::SiteDown
            | Scenario::AllSitesDown
            | Scenario::HealthdKill
            | Scenario::SpeakerKill => {
                for node in &self.nodes {
                    lab.start(node)?;
                }
            }
            Scenario::NodeFlap => {}
            Scenario::NodeFreeze => admin_post(world, &self.nodes[0], "/unfreeze")?,
            Scenario::FeedsCut => {
                for node in &self.nodes {
                    nft_delete(&lab.namespace(node)?, "lab_feed");
                }
            }
            Scenario::LinkCut => {
                let (router, interface) = self.interface.as_ref().expect("link cut has one");
                let ns = lab.namespace(router)?;
                crate::netns::ip_in(&ns, &["link", "set", interface, "up"])?;
            }
            Scenario::Netem => {
                for node in &self.nodes {
                    let ns = lab.namespace(node)?;
                    for interface in interfaces(lab.topology(), node) {
                        let _ = Command::new("tc")
                            .args(["-n", &ns, "qdisc", "del", "dev", &interface, "root"])
                            .output();
                    }
                    nft_delete(&ns, "lab_loss");
                }
            }
        }
        Ok(())
    }
}

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

/// One GET from the calling thread's namespace; the body of a 2xx answer.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let response = daemon::http::blocking(
        daemon::http::Method::GET,
        &addr.to_string(),
        path,
        None,
        Duration::from_secs(2),
    )?;
    if !response.ok() {
        bail!("GET {path} from {addr}: {}", response.status);
    }
    Ok(response.body)
}

/// POSTs to a stream node's admin endpoint from inside the site (the node's namespace), with
/// the node's admin token.
fn admin_post(world: &World<'_>, node: &str, path: &str) -> Result<()> {
    let config = world.node(node)?;
    let admin: SocketAddr = config
        .admin
        .ok_or_else(|| anyhow!("node {node} has no admin address in the deployment"))?;
    let token = config
        .admin_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()?;
    let ns = world.lab.namespace(node)?;
    let path = path.to_string();
    std::thread::spawn(move || -> Result<()> {
        crate::netns::enter(&ns)?;
        let response = daemon::http::blocking(
            daemon::http::Method::POST,
            &admin.to_string(),
            &path,
            token.as_deref(),
            Duration::from_secs(2),
        )?;
        if !response.ok() {
            bail!(
                "POST {path} to {admin}: {} {}",
                response.status,
                response.body.trim()
            );
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("admin request panicked"))?
}

/// How long a scenario must be watched for its bounds to be checkable: past the lease for a
/// dead healthd, past hold time plus restart time for a dead speaker.
pub fn observe_at_least(scenario: Scenario, world: &World<'_>, site: &str) -> Duration {
    let Some(s) = world.deployment.site(site) else {
        return Duration::ZERO;
    };
    match scenario {
        Scenario::HealthdKill => s.healthd.lease.0 + Duration::from_secs(2),
        Scenario::FeedsCut => {
            world
                .deployment
                .dns
                .as_ref()
                .map_or(Duration::from_secs(30), |d| d.feed_grace.0)
                + Duration::from_secs(3)
        }
        Scenario::SpeakerKill => {
            let hold = s.peers.iter().map(|p| p.hold_time).max().unwrap_or(90);
            Duration::from_secs(u64::from(hold) + u64::from(s.speaker.restart_time) + 1)
        }
        _ => Duration::ZERO,
    }
}

/// The failure table's requirements for a scenario, checked against what was seen.
pub fn checks(
    scenario: Scenario,
    world: &World<'_>,
    site: &str,
    fault: &Fault,
    timeline: &Timeline,
    (fault_at, restore_at): (Duration, Duration),
    viewers: &[(String, Experience)],
) -> Result<Vec<Check>> {
    let events = timeline.events();
    let routers = world.site_nodes(site, "router");
    let mut checks = Vec::new();
    let ms = |d: Duration| format!("{} ms", d.as_millis());

    // When each of the site's routers lost the route, after the fault.
    let withdrawals: Vec<(String, Option<Duration>)> = routers
        .iter()
        .map(|r| {
            let lane = format!("route {r}");
            let at = events
                .iter()
                .find(|e| {
                    e.lane == lane
                        && e.at >= fault_at
                        && e.at <= restore_at
                        && e.text.starts_with("withdrawn")
                })
                .map(|e| e.at - fault_at);
            (r.clone(), at)
        })
        .collect();
    let mut withdrawn_within = |bound: Duration, what: &str| {
        for (router, at) in &withdrawals {
            checks.push(Check {
                what: format!("{what}: withdrawn at {router}"),
                bound: format!("< {}", ms(bound)),
                measured: at.map_or("not withdrawn".into(), ms),
                passed: at.is_some_and(|a| a < bound),
            });
        }
    };
    let stays_announced = |checks: &mut Vec<Check>| {
        for (router, at) in &withdrawals {
            checks.push(Check {
                what: format!("the site stays announced at {router}"),
                bound: "no withdraw".into(),
                measured: at.map_or("announced throughout".into(), |a| {
                    format!("withdrawn after {}", ms(a))
                }),
                passed: at.is_none(),
            });
        }
    };

    // The cities whose answers came from this site just before the fault.
    let served: Vec<String> = world
        .viewers
        .iter()
        .filter(|p| {
            let lane = format!("dns {}", p.city);
            events
                .iter()
                .rfind(|e| e.lane == lane && e.at < fault_at)
                .is_some_and(|e| {
                    e.text
                        .split(':')
                        .next()
                        .is_some_and(|s| s.split('+').any(|s| s == site))
                })
        })
        .map(|p| p.city.clone())
        .collect();
    let answer_change = |city: &str, pred: &dyn Fn(&str) -> bool| {
        let lane = format!("dns {city}");
        events
            .iter()
            .find(|e| e.lane == lane && e.at >= fault_at && e.at <= restore_at && pred(&e.text))
            .map(|e| e.at - fault_at)
    };
    let never_empty = |checks: &mut Vec<Check>| {
        let bad: Vec<String> = events
            .iter()
            .filter(|e| {
                (e.lane.starts_with("dns ") || e.lane.starts_with("resolver "))
                    && e.kind == EventKind::Error
                    && e.at >= fault_at
            })
            .map(|e| format!("{}: {}", e.lane, e.text))
            .collect();
        checks.push(Check {
            what: "DNS never answers empty or fails".into(),
            bound: "never".into(),
            measured: if bad.is_empty() {
                "always answered".into()
            } else {
                bad.join("; ")
            },
            passed: bad.is_empty(),
        });
    };
    let viewers_unharmed = |checks: &mut Vec<Check>, allowed_stall: Duration| {
        for (city, seen) in viewers {
            checks.push(Check {
                what: format!("viewer in {city} keeps playing"),
                bound: format!("stall ≤ {}", ms(allowed_stall)),
                measured: format!(
                    "stalled {}, {} errors, {} segments, startup {}",
                    ms(seen.stalled),
                    seen.errors,
                    seen.segments,
                    seen.startup.map_or("never".into(), ms)
                ),
                passed: seen.stalled <= allowed_stall && seen.segments > 0,
            });
        }
    };
    let node_ips: Vec<String> = fault
        .nodes
        .iter()
        .filter_map(|n| {
            world
                .node(n)
                .ok()
                .and_then(|n| n.ipv4)
                .map(|ip| ip.to_string())
        })
        .collect();
    let dropped_from_dns = |checks: &mut Vec<Check>, bound: Duration| {
        for city in &served {
            let at = answer_change(city, &|text| {
                !node_ips
                    .iter()
                    .any(|ip| text.split([' ', ',']).any(|w| w == ip))
            });
            checks.push(Check {
                what: format!("{} leaves the answers for {city}", node_ips.join(", ")),
                bound: format!("< {}", ms(bound)),
                measured: at.map_or("still answered".into(), ms),
                passed: at.is_some_and(|a| a < bound),
            });
        }
    };

    // Never a black hole: the transit network has a route to the prefix throughout the fault.
    let transit_keeps_route = |checks: &mut Vec<Check>, condition: &str| {
        let lanes: Vec<String> = world
            .lab
            .topology()
            .nodes_labelled("lab.role", "transit")
            .map(|n| format!("route {}", n.name))
            .collect();
        let lost = events.iter().find(|e| {
            lanes.contains(&e.lane)
                && e.at >= fault_at
                && e.at <= restore_at
                && e.text == "no route"
        });
        checks.push(Check {
            what: format!(
                "the transit network keeps a route to {}{condition}",
                world.prefix
            ),
            bound: "never without".into(),
            measured: lost.map_or("kept".into(), |e| {
                format!("lost after {}", ms(e.at - fault_at))
            }),
            passed: lost.is_none(),
        });
    };

    match scenario {
        Scenario::NodeKill => {
            stays_announced(&mut checks);
            dropped_from_dns(&mut checks, Duration::from_millis(1500));
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::NodeFreeze => {
            stays_announced(&mut checks);
            // A freeze shows after 1.5 target durations without a new segment, then fall.
            dropped_from_dns(&mut checks, Duration::from_millis(5000));
            never_empty(&mut checks);
            // A frozen node still answers 200: its viewers leave only when their player finds
            // the playlist stuck (3.5 target durations), which a 3-segment buffer nearly covers.
            viewers_unharmed(&mut checks, Duration::from_secs(2));
        }
        Scenario::SiteDown => {
            withdrawn_within(Duration::from_secs(1), "every node down");
            for city in &served {
                let at = answer_change(city, &|text| {
                    !text
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .split('+')
                        .any(|s| s == site)
                });
                checks.push(Check {
                    what: format!("answers for {city} move to another site"),
                    bound: "< 1500 ms".into(),
                    measured: at.map_or("not moved".into(), ms),
                    passed: at.is_some_and(|a| a < Duration::from_millis(1500)),
                });
            }
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::AllSitesDown => {
            // Never a black hole: the transit network always has a route to the prefix. The
            // first site to lose its last node may withdraw while another still looks
            // healthy, but once every site is known down each announces again (fail open).
            transit_keeps_route(&mut checks, "");
            for other in &world.deployment.sites {
                for router in world.site_nodes(&other.name, "router") {
                    let lane = format!("route {router}");
                    let last = events
                        .iter()
                        .rfind(|e| e.lane == lane && e.at <= restore_at)
                        .map(|e| e.text.clone());
                    let announced = last.as_deref().is_some_and(|t| !t.starts_with("withdrawn"));
                    checks.push(Check {
                        what: format!(
                            "{} announced at {router} while every site is down (fail open)",
                            other.name
                        ),
                        bound: "announced".into(),
                        measured: last.unwrap_or_else(|| "no route seen".into()),
                        passed: announced,
                    });
                }
            }
            never_empty(&mut checks);
        }
        Scenario::HealthdKill => {
            let lease = world
                .deployment
                .site(site)
                .map_or(Duration::from_secs(3), |s| s.healthd.lease.0);
            withdrawn_within(lease + Duration::from_secs(1), "lease expired");
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::SpeakerKill => {
            // Upstreams notice when the kernel closes the TCP session, at the latest at the
            // hold timer; with graceful restart (RFC 4724) they then keep the routes as stale
            // for the restart time the speaker advertised before dropping them.
            let site_config = world
                .deployment
                .site(site)
                .ok_or_else(|| anyhow!("no site `{site}`"))?;
            let hold = site_config
                .peers
                .iter()
                .map(|p| p.hold_time)
                .max()
                .unwrap_or(90);
            let bound = if site_config.peers.iter().any(|p| p.graceful_restart) {
                u64::from(hold) + u64::from(site_config.speaker.restart_time)
            } else {
                u64::from(hold)
            };
            withdrawn_within(Duration::from_secs(bound), "session lost");
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::LinkCut => {
            let cut = fault
                .interface
                .as_ref()
                .map(|(r, _)| r.clone())
                .unwrap_or_default();
            transit_keeps_route(&mut checks, &format!(" without {cut}"));
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::Netem => {
            stays_announced(&mut checks);
            for city in &served {
                let at = answer_change(city, &|_| true);
                checks.push(Check {
                    what: format!("answers for {city} unchanged (no false positive)"),
                    bound: "unchanged".into(),
                    measured: at.map_or("unchanged".into(), |a| format!("changed after {}", ms(a))),
                    passed: at.is_none(),
                });
            }
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::NodeFlap => {
            stays_announced(&mut checks);
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
        Scenario::FeedsCut => {
            // Every node stays up: losing the feeds must not move anyone, within the grace
            // (last state kept) or after it (as if all were up).
            for place in &world.viewers {
                let at = answer_change(&place.city, &|_| true);
                checks.push(Check {
                    what: format!(
                        "answers for {} unchanged while the feeds are cut",
                        place.city
                    ),
                    bound: "unchanged".into(),
                    measured: at.map_or("unchanged".into(), |a| format!("changed after {}", ms(a))),
                    passed: at.is_none(),
                });
            }
            let stale = events
                .iter()
                .filter(|e| e.lane == "fault" && e.text.starts_with("geodns sees"))
                .map(|e| e.text.clone())
                .collect::<Vec<_>>();
            let sites = world.deployment.sites.len();
            checks.push(Check {
                what: "geodns counts the silent feeds as past their grace".into(),
                bound: format!("{sites} sites stale"),
                measured: if stale.is_empty() {
                    "not seen".into()
                } else {
                    stale.join("; ")
                },
                passed: !stale.is_empty()
                    && stale
                        .iter()
                        .all(|t| t.contains(&format!("{sites} of {sites}"))),
            });
            never_empty(&mut checks);
            viewers_unharmed(&mut checks, Duration::ZERO);
        }
    }
    if checks.is_empty() {
        bail!("no checks for {}", scenario.name());
    }
    Ok(checks)
}
