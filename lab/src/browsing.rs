//! What a browser playing from the demo needs: every host name its players meet (the services'
//! names, the steering servers', each site's pathway), resolved by geodns once as a browser
//! would, given to Chromium as `--host-resolver-rules`; and which site a fragment's host leads
//! to, to follow a player from site to site.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result};
use config::Deployment;

/// Host names and the address geodns answered for each.
#[derive(Debug, Clone)]
pub struct Resolved {
    hosts: Vec<(String, IpAddr)>,
    /// (node address, site name).
    sites: Vec<(IpAddr, String)>,
}

impl Resolved {
    /// Asks geodns at `dns` for every host name a player of `d`'s services meets, as an
    /// unlocated client (the browser's own address).
    pub fn ask(d: &Deployment, dns: SocketAddr) -> Result<Self> {
        let mut names: Vec<String> = Vec::new();
        for service in &d.services {
            names.extend(service.hostnames.iter().cloned());
            if let Some(steering) = &service.content_steering {
                let server = url_host(&steering.server);
                names.extend(server);
                names.extend(
                    d.sites
                        .iter()
                        .filter_map(|s| steering.pathway_host(&s.name)),
                );
            }
        }
        names.sort();
        names.dedup();
        let socket = UdpSocket::bind(SocketAddr::new(dns.ip(), 0)).context("a UDP socket")?;
        let mut hosts = Vec::new();
        for name in names {
            let answer =
                crate::dnsquery::ask_a(&socket, dns, &name, None, false, Duration::from_secs(2))
                    .with_context(|| format!("geodns at {dns} does not answer {name}"))?;
            if let Some(address) = answer.addresses.first() {
                hosts.push((name, *address));
            }
        }
        let sites = d
            .nodes()
            .flat_map(|(s, n)| {
                [n.ipv4.map(IpAddr::V4), n.ipv6.map(IpAddr::V6)]
                    .into_iter()
                    .flatten()
                    .map(|a| (a, s.name.clone()))
            })
            .collect();
        Ok(Self { hosts, sites })
    }

    /// Chromium's `--host-resolver-rules` switch for these answers.
    pub fn chromium_switch(&self) -> String {
        let rules: Vec<String> = self
            .hosts
            .iter()
            .map(|(host, address)| format!("MAP {host} {address}"))
            .collect();
        format!("--host-resolver-rules={}", rules.join(","))
    }

    /// The site whose node `authority` (`HOST` or `HOST:PORT`, as a player's fragment URL has
    /// it) was resolved to; the authority itself when it leads to no node.
    pub fn site_of(&self, authority: &str) -> String {
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        let address = self
            .hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| *a)
            .or_else(|| host.parse().ok());
        address
            .and_then(|a| self.sites.iter().find(|(n, _)| *n == a))
            .map_or_else(|| authority.to_owned(), |(_, site)| site.clone())
    }
}

/// The host of an absolute URL.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Some(host.to_ascii_lowercase())
}

/// Whether every site's feed is live at the geodns whose admin endpoint is `admin` (its
/// console's state), as a test waits for the demo to come up.
pub fn every_feed_live(admin: SocketAddr) -> bool {
    let Some((200, text)) = testkit::http::get(admin, "/console/state") else {
        return false;
    };
    let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    state["sites"]
        .as_array()
        .is_some_and(|sites| sites.iter().all(|c| c["feed"] == "live"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("http://Steer.example.net:8085/steer/live?x=1").as_deref(),
            Some("steer.example.net")
        );
        assert_eq!(
            url_host("https://steer.example.net").as_deref(),
            Some("steer.example.net")
        );
        assert_eq!(url_host("steer.example.net"), None);
    }
}

/// A fault that takes a whole site out from under its players.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteFault {
    /// Every node's HTTP server goes away (connections refused, open ones closed), as when
    /// the site's hosts die.
    Down,
    /// Every node's streams stop advancing while HTTP still answers 200.
    Freeze,
}

impl SiteFault {
    pub fn name(self) -> &'static str {
        match self {
            Self::Down => "site-down",
            Self::Freeze => "site-freeze",
        }
    }

    /// The node admin routes that set and clear the fault (fault injection).
    fn routes(self) -> (&'static str, &'static str) {
        match self {
            Self::Down => ("/stop-serving", "/start-serving"),
            Self::Freeze => ("/freeze", "/unfreeze"),
        }
    }

    /// Sets (`on`) or clears the fault on every node of `site`.
    pub fn apply(self, site: &config::Site, on: bool) -> Result<()> {
        let (set, clear) = self.routes();
        for node in &site.nodes {
            let admin = node
                .admin
                .with_context(|| format!("node {} has no admin endpoint", node.name))?;
            let route = if on { set } else { clear };
            match testkit::http::post(admin, route) {
                Some((200, _)) => {}
                other => anyhow::bail!("{} {route}: {other:?}", node.name),
            }
        }
        Ok(())
    }
}

/// How one player fared after a fault.
#[derive(Debug, Clone)]
pub struct Fared {
    /// When its fragments first came from another site, after the fault.
    pub moved: Option<Duration>,
    /// That site.
    pub to: Option<String>,
    /// Errors hls.js reported, and how many of them were fatal.
    pub errors: Vec<String>,
    pub fatal: usize,
    /// Time its position stood still, in all and at the longest.
    pub stalled: Duration,
    pub longest_stall: Duration,
    /// The least it had buffered ahead.
    pub lowest_buffer: f64,
    /// Its whole account, for a failing test's message.
    pub report: serde_json::Value,
}

/// What one trial saw.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The site the players were on, which the fault hit.
    pub site: String,
    /// What the steered player had buffered when it did.
    pub buffer_at_fault: f64,
    /// When the steering server stopped putting that site first (asked as a player).
    pub steering_moved: Option<Duration>,
    /// The player steered by content steering.
    pub steered: Fared,
    /// The player of the same stream by DNS alone.
    pub dns: Fared,
    /// Console errors and exceptions of the page.
    pub problems: Vec<String>,
}

/// A trial: in a fresh headless Chromium resolving names as `resolved` says, on the page of
/// `page` (another origin), two hls.js players play `channel` of service `service` of `d`:
/// `steered` its master playlist (content steering), `dns` its first rendition's media
/// playlist at the service's host name (DNS steering alone: a browser keeps an answer for a
/// minute and a player its connection). Once both have played 4 s, `fault` hits the site they
/// play from and both are watched for `window`; the fault is then cleared (the site comes back
/// when healthd has seen it healthy again, later when flap damping holds it out).
pub fn trial(
    d: &Deployment,
    resolved: &Resolved,
    page: &testkit::hlsjs::Site,
    (service, channel): (&str, &str),
    fault: SiteFault,
    window: Duration,
) -> Result<Trial> {
    use serde_json::json;
    use std::time::{Instant, SystemTime};
    use testkit::hlsjs;

    let svc = d.service(service).context("no such service")?;
    let steering = svc
        .content_steering
        .as_ref()
        .context("the service has no content steering")?;
    let listen = d
        .dns
        .as_ref()
        .and_then(|d| d.content_steering.as_ref())
        .and_then(|s| s.listen.first().copied())
        .context("no steering server")?;
    let host = svc
        .hostnames
        .first()
        .context("the service has no host name")?;
    let port = d
        .nodes()
        .next()
        .map(|(_, n)| n.listen.port())
        .context("no node")?;
    let rendition = d
        .channel(channel)
        .and_then(|c| c.renditions.first())
        .context("the channel has no renditions")?;
    let mut browser = testkit::browser::Browser::launch_with(
        800,
        600,
        &[
            resolved.chromium_switch(),
            "--autoplay-policy=no-user-gesture-required".into(),
        ],
    )
    .context("chromium starts")?;
    let mut tab = browser.open(&page.url()).map_err(anyhow::Error::msg)?;
    let steered_url = format!("http://{host}:{port}/{channel}/index.m3u8");
    let dns_url = format!(
        "http://{host}:{port}/{channel}/{}/index.m3u8",
        rendition.name
    );
    hlsjs::play(&mut tab, "steered", &steered_url, &json!({})).map_err(anyhow::Error::msg)?;
    hlsjs::play(&mut tab, "dns", &dns_url, &json!({})).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let before = loop {
        let s = hlsjs::report(&mut tab, "steered").map_err(anyhow::Error::msg)?;
        let n = hlsjs::report(&mut tab, "dns").map_err(anyhow::Error::msg)?;
        if s.current_time() > 4.0 && n.current_time() > 4.0 {
            break s;
        }
        if started.elapsed() > Duration::from_secs(40) {
            anyhow::bail!(
                "the players did not start:\nsteered {}\ndns {}\nproblems {:?}",
                s.0,
                n.0,
                tab.problems()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let site = resolved.site_of(before.host().unwrap_or_default());
    let hit = d
        .site(&site)
        .with_context(|| format!("the players play from {site:?}, not a site"))?;
    fault.apply(hit, true)?;
    let (fault_wall, fault_at) = (SystemTime::now(), Instant::now());
    for id in ["steered", "dns"] {
        hlsjs::mark(&mut tab, id).map_err(anyhow::Error::msg)?;
    }
    let buffer_at_fault = hlsjs::report(&mut tab, "steered")
        .map_err(anyhow::Error::msg)?
        .ahead();
    let path = path_of(&steering.server);
    let mut steering_moved = None;
    while fault_at.elapsed() < window {
        if steering_moved.is_none() && first_pathway(listen, &path).is_some_and(|p| p != site) {
            steering_moved = Some(fault_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fared = |tab: &mut testkit::browser::Page<'_>, id: &str| -> Result<Fared> {
        let r = hlsjs::report(tab, id).map_err(anyhow::Error::msg)?;
        let moved = r
            .switches()
            .into_iter()
            .find(|(at, host)| *at >= fault_wall && resolved.site_of(host) != site);
        let errors = r.errors_since(fault_wall);
        Ok(Fared {
            moved: moved
                .as_ref()
                .map(|(at, _)| at.duration_since(fault_wall).unwrap_or_default()),
            to: moved.map(|(_, host)| resolved.site_of(&host)),
            fatal: errors.iter().filter(|(_, fatal)| *fatal).count(),
            errors: errors.into_iter().map(|(e, _)| e).collect(),
            stalled: r.stalled_total(),
            longest_stall: r.longest_stall(),
            lowest_buffer: r.lowest_ahead().unwrap_or(0.0),
            report: r.0,
        })
    };
    let steered = fared(&mut tab, "steered")?;
    let dns = fared(&mut tab, "dns")?;
    let problems = tab.problems();
    drop(tab);
    drop(browser);
    fault.apply(hit, false)?;
    Ok(Trial {
        site,
        buffer_at_fault,
        steering_moved,
        steered,
        dns,
        problems,
    })
}

/// Waits until geodns (admin endpoint `admin`) calls every site usable for `host`; how long
/// that took.
pub fn wait_every_site_usable(
    admin: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<Duration> {
    let started = std::time::Instant::now();
    let path = format!("/explain?name={host}&client=127.0.0.1");
    loop {
        let usable = testkit::http::get(admin, &path)
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, text)| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|e| {
                let verdicts = e["steering"]["choice"]["verdicts"].as_array()?.clone();
                Some(!verdicts.is_empty() && verdicts.iter().all(|v| v["usable"] == true))
            });
        if usable == Some(true) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            anyhow::bail!("some site of {host} was still out of service after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first pathway the steering server at `listen` gives for `path`.
pub fn first_pathway(listen: SocketAddr, path: &str) -> Option<String> {
    let (200, text) = testkit::http::get(listen, path)? else {
        return None;
    };
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    manifest["PATHWAY-PRIORITY"][0].as_str().map(str::to_owned)
}

/// The path (with query) of an absolute URL.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_owned())
}
