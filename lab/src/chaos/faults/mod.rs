//! The faults `lab chaos` injects: each a type carrying what it aims at, knowing how to put
//! itself in and take itself out, and which rows of the failure table it must be checked
//! against ([`super::checks`]).

mod dns;
mod edge;
mod network;
mod processes;
mod streams;
mod upgrade;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::checks::Run;
use super::{Check, World};
use crate::timeline::Timeline;

/// A fault, aimed.
pub(crate) trait Fault {
    /// What it does, for the timeline and the report.
    fn describe(&self) -> String;
    /// What it hits.
    fn target(&self) -> String;
    /// How long the fault must last for its bounds to be checkable.
    fn observe_at_least(&self, _world: &World<'_>, _site: &str) -> Duration {
        Duration::ZERO
    }
    /// Puts the fault in; may keep going (a flap) until `observe` has passed.
    fn inject(&self, world: &World<'_>, timeline: &Timeline, observe: Duration) -> Result<()>;
    /// Notes what the fault has done by the end of the observation, before the repair.
    fn before_repair(&self, _world: &World<'_>, _timeline: &Timeline) {}
    /// Takes the fault out again.
    fn restore(&self, world: &World<'_>) -> Result<()>;
    /// The failure table's requirements for this fault, checked against what was seen.
    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>>;
}

/// The faults, by the name `lab chaos` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Kill one stream node of the site.
    NodeKill,
    /// Freeze one node's stream while its HTTP server keeps answering 200.
    NodeFreeze,
    /// Kill every stream node of the site.
    SiteDown,
    /// Cut the ingest of every stream node of the site: the nodes keep serving, but have
    /// nothing new to serve.
    IngestLoss,
    /// Kill every stream node of every site, whatever `--site` says: nothing can be played,
    /// but the prefix must stay announced somewhere and DNS must keep answering (fail open).
    AllSitesDown,
    /// Kill the site's healthd.
    HealthdKill,
    /// Restart the site's healthd while one of its nodes comes back: geodns must follow the
    /// new healthd at once (its generations start over), and nothing may be withdrawn.
    HealthdRestart,
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
    /// Stop (SIGSTOP) the site's first upstream router, then take the site down: the other
    /// upstream must get the withdraw in time, and the site's feed must keep flowing.
    RouterStall,
    /// Send fuzzed datagrams and over-long names at every geodns instance while viewers play:
    /// every city's answers stay right and every instance keeps serving.
    DnsGarbage,
    /// Kill every origin node of the site (the nodes carrying the anycast origin service)
    /// while viewers play through another site's edges: routing must move the anycast origin,
    /// and the edges with it, before any viewer stalls.
    OriginDown,
    /// A viewer near the edge site plays with a token expiring 5 s into the fault, whatever
    /// `--site` says: it plays until then, and its next playlist request is refused with 403.
    TokenExpiry,
    /// Upgrade the site in place: drain it, replace every daemon of it (`replace`: the new
    /// process takes the old one's sockets and state), check it is whole, undrain: the
    /// procedure of a rolling upgrade, for one site.
    SiteUpgrade,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NodeKill => "node-kill",
            Scenario::NodeFreeze => "node-freeze",
            Scenario::SiteDown => "site-down",
            Scenario::IngestLoss => "ingest-loss",
            Scenario::AllSitesDown => "all-sites-down",
            Scenario::HealthdKill => "healthd-kill",
            Scenario::HealthdRestart => "healthd-restart",
            Scenario::SpeakerKill => "speaker-kill",
            Scenario::LinkCut => "link-cut",
            Scenario::Netem => "netem",
            Scenario::NodeFlap => "node-flap",
            Scenario::FeedsCut => "feeds-cut",
            Scenario::RouterStall => "router-stall",
            Scenario::DnsGarbage => "dns-garbage",
            Scenario::SiteUpgrade => "site-upgrade",
            Scenario::OriginDown => "origin-down",
            Scenario::TokenExpiry => "token-expiry",
        }
    }

    /// The fault, aimed at `site` of `world`.
    pub(crate) fn prepare(self, world: &World<'_>, site: &str) -> Result<Box<dyn Fault>> {
        use processes::{Kill, KillWhat};
        Ok(match self {
            Scenario::NodeKill => Box::new(Kill::new(world, site, KillWhat::OneNode)?),
            Scenario::SiteDown => Box::new(Kill::new(world, site, KillWhat::SiteNodes)?),
            Scenario::AllSitesDown => Box::new(Kill::new(world, site, KillWhat::EveryNode)?),
            Scenario::HealthdKill => Box::new(Kill::new(world, site, KillWhat::Healthd)?),
            Scenario::SpeakerKill => Box::new(Kill::new(world, site, KillWhat::Speaker)?),
            Scenario::HealthdRestart => Box::new(processes::HealthdRestart::new(world, site)?),
            Scenario::NodeFlap => Box::new(processes::NodeFlap::new(world, site)?),
            Scenario::NodeFreeze => Box::new(streams::NodeFreeze::new(world, site)?),
            Scenario::IngestLoss => Box::new(streams::IngestLoss::new(world, site)?),
            Scenario::LinkCut => Box::new(network::LinkCut::new(world, site)?),
            Scenario::Netem => Box::new(network::Netem::new(world, site)?),
            Scenario::FeedsCut => Box::new(network::FeedsCut::new(world)?),
            Scenario::RouterStall => Box::new(network::RouterStall::new(world, site)?),
            Scenario::DnsGarbage => Box::new(dns::DnsGarbage::new(world)?),
            Scenario::SiteUpgrade => Box::new(upgrade::SiteUpgrade::new(world, site)?),
            Scenario::OriginDown => Box::new(edge::OriginDown::new(world, site)?),
            Scenario::TokenExpiry => Box::new(edge::TokenExpiry::new(world)?),
        })
    }
}

/// The site's stream nodes carrying the service the viewers watch.
fn stream_nodes(world: &World<'_>, site: &str) -> Vec<String> {
    world
        .site_nodes(site, "streamnode")
        .into_iter()
        .filter(|n| {
            world
                .node(n)
                .is_ok_and(|node| node.services.contains(&world.service.name))
        })
        .collect()
}

/// The first of `list`, or an error naming what the site lacks.
fn first(list: Vec<String>, site: &str, what: &str) -> Result<String> {
    list.into_iter()
        .next()
        .ok_or_else(|| anyhow!("site {site} has no {what} node in the topology"))
}

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

/// One request from inside a namespace, on a thread of its own (entering a namespace is per
/// thread); the status and body.
fn http_in(
    ns: String,
    method: daemon::http::Method,
    addr: SocketAddr,
    path: &str,
    token: Option<String>,
) -> Result<(u16, String)> {
    http_in_within(ns, method, addr, path, token, Duration::from_secs(2))
}

/// [`http_in`], waiting up to `within` for the answer.
fn http_in_within(
    ns: String,
    method: daemon::http::Method,
    addr: SocketAddr,
    path: &str,
    token: Option<String>,
    within: Duration,
) -> Result<(u16, String)> {
    let path = path.to_string();
    std::thread::spawn(move || -> Result<(u16, String)> {
        crate::netns::enter(&ns)?;
        let response =
            daemon::http::blocking(method, &addr.to_string(), &path, token.as_deref(), within)?;
        Ok((response.status, response.body))
    })
    .join()
    .map_err(|_| anyhow!("HTTP request panicked"))?
}

/// BFD sessions that went down and took a BGP session with them, summed over every site's
/// speaker (`bgp_peer_bfd_down_total`, read from inside each site's controller).
fn bfd_downs(world: &World<'_>) -> Result<u64> {
    let mut total = 0;
    for site in &world.deployment.sites {
        let controller = first(
            world.site_nodes(&site.name, "speaker"),
            &site.name,
            "speaker",
        )?;
        let ns = world.lab.namespace(&controller)?;
        let admin = site.speaker.admin;
        let (status, body) = http_in(ns, daemon::http::Method::GET, admin, "/metrics", None)?;
        if status != 200 {
            bail!(
                "GET /metrics from the speaker of {} at {admin}: {status}",
                site.name
            );
        }
        total += body
            .lines()
            .filter(|l| l.starts_with("bgp_peer_bfd_down_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
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
    let (status, body) = http_in(ns, daemon::http::Method::POST, admin, path, token)?;
    if !(200..300).contains(&status) {
        bail!("POST {path} to {admin}: {status} {}", body.trim());
    }
    Ok(())
}

/// Asks every geodns instance's admin endpoint from inside its node (it may listen on every
/// address: then asked on the node's loopback): `ask` gets the node's name and a GET.
fn each_geodns(
    world: &World<'_>,
    mut ask: impl FnMut(&str, &dyn Fn(&str) -> Result<(u16, String)>),
) {
    let Some(admin) = world.deployment.dns.as_ref().map(|d| d.admin) else {
        return;
    };
    let admin = if admin.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], admin.port()))
    } else {
        admin
    };
    for node in world.lab.topology().nodes_labelled("lab.role", "geodns") {
        let Ok(ns) = world.lab.namespace(&node.name) else {
            continue;
        };
        let get = |path: &str| http_in(ns.clone(), daemon::http::Method::GET, admin, path, None);
        ask(&node.name, &get);
    }
}

/// Kills topology nodes.
fn kill(world: &World<'_>, nodes: &[String]) -> Result<()> {
    for node in nodes {
        world.lab.stop(node, libc::SIGKILL)?;
    }
    Ok(())
}

/// Starts topology nodes again.
fn start(world: &World<'_>, nodes: &[String]) -> Result<()> {
    for node in nodes {
        world.lab.start(node)?;
    }
    Ok(())
}
