//! `lab chaos SCENARIO`: inject one fault into a running lab, measure what the control plane
//! did and what viewers saw, and check it against the failure table (docs/ARCHITECTURE.md).
//!
//! A run: viewers start playing in every city and monitors start watching (each site router's
//! route for the service prefix, the transit network's choice, geodns's answer for each city,
//! the resolver's answer for each city); after a settling time the fault goes in; after the
//! observation time it is repaired and recovery is watched. Times are measured from the fault.

mod checks;
mod faults;
mod monitor;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use config::Deployment;
use ipnet::IpNet;

pub use faults::Scenario;

use crate::netns::Lab;
use crate::prepare::ViewerPlace;
use crate::timeline::{Event, Timeline, What, lane};
use crate::topology::Topology;
use crate::viewer::{Experience, Viewer};

/// How a run is paced and aimed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The site the fault hits.
    pub site: String,
    /// Viewers play this long before the fault.
    pub settle: Duration,
    /// Watched this long after the fault, before the repair.
    pub observe: Duration,
    /// Watched this long after the repair.
    pub recover: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            site: "ams".into(),
            settle: Duration::from_secs(8),
            observe: Duration::from_secs(10),
            recover: Duration::from_secs(6),
        }
    }
}

/// One requirement of the failure table, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: String,
    pub bound: String,
    pub measured: String,
    pub passed: bool,
}

impl Check {
    /// The time it measured, when it measured one.
    pub fn time(&self) -> Option<Duration> {
        checks::parse_ms(&self.measured)
    }
}

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub site: String,
    pub target: String,
    pub fault_at: Duration,
    pub restore_at: Duration,
    pub end: Duration,
    pub events: Vec<Event>,
    pub checks: Vec<Check>,
    pub viewers: Vec<(String, Experience)>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// What the lab's deployment says, as a run needs it.
pub(crate) struct World<'a> {
    pub lab: &'a Lab<'a>,
    pub deployment: Deployment,
    /// The streaming service the viewers watch and the fault is measured on.
    pub service: config::service::Service,
    pub prefix: IpNet,
    pub dns_server: SocketAddr,
    pub resolver: SocketAddr,
    pub viewers: Vec<ViewerPlace>,
}

impl<'a> World<'a> {
    fn load(lab: &'a Lab<'a>) -> Result<Self> {
        let topology: &Topology = lab.topology();
        let path: PathBuf = topology
            .path
            .with_file_name(format!("{}/deployment.toml", topology.name));
        let deployment = Deployment::load(&path).map_err(|e| anyhow!("{e}"))?;
        let service = deployment
            .services
            .iter()
            .find(|s| s.answer == config::service::AnswerMode::Nodes && !s.channels.is_empty())
            .cloned()
            .ok_or_else(|| anyhow!("{}: no service answering stream nodes", path.display()))?;
        let prefix = *service
            .prefixes
            .first()
            .ok_or_else(|| anyhow!("service {} announces no prefix", service.name))?;
        let dns_server = *deployment
            .dns
            .as_ref()
            .and_then(|d| d.listen.first())
            .ok_or_else(|| anyhow!("{}: no [dns] listen address", path.display()))?;
        let resolver_node = topology
            .nodes_labelled("lab.role", "resolver")
            .next()
            .ok_or_else(|| anyhow!("the topology has no node labelled lab.role: resolver"))?;
        let resolver_ip = topology
            .links
            .iter()
            .flat_map(|l| l.ends.iter())
            .find(|e| e.node == resolver_node.name)
            .and_then(|e| e.addresses.first())
            .map(IpNet::addr)
            .ok_or_else(|| anyhow!("the resolver node has no addressed link"))?;
        Ok(Self {
            lab,
            service,
            prefix,
            dns_server,
            resolver: SocketAddr::new(resolver_ip, 53),
            viewers: crate::prepare::places(topology)?,
            deployment,
        })
    }

    /// Topology nodes of a site with a role.
    pub fn site_nodes(&self, site: &str, role: &str) -> Vec<String> {
        self.lab
            .topology()
            .nodes
            .iter()
            .filter(|n| n.label("lab.role") == Some(role) && n.label("lab.site") == Some(site))
            .map(|n| n.name.clone())
            .collect()
    }

    /// The address a site's speaker announces from (the next hop at its routers).
    pub fn speaker_address(&self, site: &str) -> Result<IpAddr> {
        let s = self
            .deployment
            .site(site)
            .ok_or_else(|| anyhow!("no site `{site}` in the deployment"))?;
        s.peers
            .iter()
            .find_map(|p| p.local_address)
            .ok_or_else(|| anyhow!("site {site}: peers have no local_address"))
    }

    /// The deployment node behind a topology node (`lab.node` label).
    pub fn node(&self, topology_node: &str) -> Result<&config::site::Node> {
        let name = self
            .lab
            .topology()
            .node(topology_node)
            .and_then(|n| n.label("lab.node"))
            .ok_or_else(|| anyhow!("node {topology_node} has no lab.node label"))?;
        self.deployment
            .nodes()
            .find(|(_, n)| n.name == name)
            .map(|(_, n)| n)
            .ok_or_else(|| anyhow!("no node `{name}` in the deployment"))
    }

    /// The playlist path a viewer asks for: with a subscriber token for the whole channel,
    /// valid for `valid_for`, when the channel is protected (minted as the middleware would).
    pub fn playlist(&self, channel: &str, valid_for: Duration) -> Result<String> {
        let path = format!("/{channel}/index.m3u8");
        let Some(profile) = self
            .deployment
            .channels
            .iter()
            .find(|c| c.name == channel)
            .and_then(|c| c.token.as_deref())
        else {
            return Ok(path);
        };
        let config = self
            .deployment
            .token_profile(profile)
            .ok_or_else(|| anyhow!("channel {channel}: no token profile {profile:?}"))?;
        let signer =
            tokens::Profile::new(config).with_context(|| format!("token profile {profile:?}"))?;
        let acl = format!("/{channel}/*");
        let minted = signer
            .mint(&tokens::Mint {
                acl: Some(&acl),
                end: Some(tokens::now() + valid_for.as_secs().max(1)),
                ..Default::default()
            })
            .with_context(|| format!("minting a token of profile {profile:?}"))?;
        Ok(format!("{path}?{}", minted.query))
    }

    /// The anycast origin edges fetch from: a service with anycast addresses carrying
    /// channels, and its prefix.
    pub fn origin(&self) -> Option<(&config::service::Service, IpNet)> {
        self.deployment
            .services
            .iter()
            .filter(|s| !s.anycast_addresses.is_empty() && !s.channels.is_empty())
            .find_map(|s| Some((s, *s.prefixes.first()?)))
    }

    /// The sites whose stream nodes for the viewers' service are all edges.
    pub fn edge_sites(&self) -> Vec<String> {
        self.deployment
            .sites
            .iter()
            .filter(|site| {
                let mut carrying = site
                    .nodes
                    .iter()
                    .filter(|n| n.services.contains(&self.service.name))
                    .peekable();
                carrying.peek().is_some()
                    && carrying.all(|n| n.role == config::site::NodeRole::Edge)
            })
            .map(|site| site.name.clone())
            .collect()
    }

    /// The channel's target duration, as its playlists state it.
    pub fn target_duration(&self, channel: &str) -> Duration {
        self.deployment
            .channels
            .iter()
            .find(|c| c.name == channel)
            .map_or(Duration::from_secs(2), |c| c.segment_duration.get())
    }

    /// A viewer of the service in `namespace`, recording on `lane`, starting at `playlist`.
    pub fn viewer(&self, lane: String, namespace: String, playlist: String) -> Result<Viewer> {
        let hostname = self
            .service
            .hostnames
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("service {} has no hostname", self.service.name))?;
        Ok(Viewer {
            lane,
            namespace,
            resolver: self.resolver,
            hostname,
            port: self.playlist_port()?,
            playlist,
        })
    }

    fn playlist_port(&self) -> Result<u16> {
        self.deployment
            .nodes()
            .find(|(_, n)| n.services.contains(&self.service.name))
            .map(|(_, n)| n.listen.port())
            .ok_or_else(|| anyhow!("no node carries service {}", self.service.name))
    }
}

/// Runs one scenario against a lab that is up.
pub fn run(lab: &Lab<'_>, scenario: Scenario, options: &Options) -> Result<Outcome> {
    let world = World::load(lab)?;
    if world.deployment.site(&options.site).is_none() {
        bail!("no site `{}` in the deployment", options.site);
    }
    let timeline = Timeline::new();
    let stop = Arc::new(AtomicBool::new(false));

    monitor::wait_converged(&world, Duration::from_secs(60))
        .context("the lab did not converge: is it up (`lab up`)?")?;

    let mut monitors = monitor::start(&world, &timeline, &stop)?;
    let mut viewers = Vec::new();
    let channel = &world.service.channels[0];
    for place in &world.viewers {
        let viewer = world.viewer(
            crate::timeline::lane::viewer(&place.city),
            lab.namespace(&place.node)?,
            // A subscription for longer than any run.
            world.playlist(channel, Duration::from_secs(24 * 3600))?,
        )?;
        viewers.push((
            place.city.clone(),
            viewer.spawn(timeline.clone(), stop.clone()),
        ));
    }

    std::thread::sleep(options.settle);
    let fault = scenario.prepare(&world, &options.site)?;
    let fault_at = timeline.now();
    timeline.record(lane::FAULT, What::Fault(fault.describe()));
    let observe = options
        .observe
        .max(fault.observe_at_least(&world, &options.site));
    let injected = fault.inject(&world, &timeline, observe);
    std::thread::sleep(observe.saturating_sub(timeline.now() - fault_at));
    fault.before_repair(&world, &timeline);
    let restore_at = timeline.now();
    let restored = fault.restore(&world);
    timeline.record(lane::FAULT, What::Restore);
    std::thread::sleep(options.recover);
    stop.store(true, Ordering::Relaxed);

    let mut experiences = Vec::new();
    for (city, handle) in viewers {
        let experience = handle
            .join()
            .map_err(|_| anyhow!("viewer {city} panicked"))??;
        experiences.push((city, experience));
    }
    for handle in monitors.drain() {
        let _ = handle.join();
    }
    injected?;
    restored?;
    let end = timeline.now();
    let run = checks::Run {
        world: &world,
        site: &options.site,
        events: timeline.events(),
        fault_at,
        restore_at,
        viewers: &experiences,
    };
    let checks = fault.checks(&run)?;
    if checks.is_empty() {
        bail!("no checks for {}", scenario.name());
    }
    Ok(Outcome {
        scenario,
        site: options.site.clone(),
        target: fault.target(),
        fault_at,
        restore_at,
        end,
        events: timeline.events(),
        checks,
        viewers: experiences,
    })
}
