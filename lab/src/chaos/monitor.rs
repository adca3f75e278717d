//! Watchers for a chaos run: routes at the upstream routers and the transit network (from the
//! kernel's own change notifications, so that no polling delays or loads the measurement), and
//! DNS answers per city, asked of geodns directly (with the city's subnet as ECS) and of the
//! viewers' resolver.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::World;
use crate::dnsquery::ask_a;
use crate::timeline::{Timeline, What, lane};

/// How often DNS answers are asked for.
const DNS_INTERVAL: Duration = Duration::from_millis(50);
const RESOLVER_INTERVAL: Duration = Duration::from_millis(200);

/// Where a router sends the service prefix.
pub(crate) fn route_state(namespace: &str, prefix: &str) -> String {
    Command::new("ip")
        .args(["-n", namespace, "route", "show", "exact", prefix])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The next hops of a route line (`via A dev X ...`, or several `nexthop via A ...`).
pub(crate) fn next_hops(route: &str) -> Vec<String> {
    let words: Vec<&str> = route.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    if hops.is_empty()
        && let Some(dev) = words.windows(2).find(|w| w[0] == "dev")
    {
        hops.push(format!("dev {}", dev[1]));
    }
    hops
}

/// Waits until every site router of a site with stream nodes carries the service prefix from
/// its site's speaker, and geodns answers.
pub fn wait_converged(world: &World<'_>, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let prefix = world.prefix.to_string();
    let sites: Vec<String> = world
        .deployment
        .sites
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut waiting: Vec<String>;
    loop {
        waiting = Vec::new();
        for site in &sites {
            let speaker = world.speaker_address(site)?.to_string();
            for router in world.site_nodes(site, "router") {
                let ns = world.lab.namespace(&router)?;
                if !next_hops(&route_state(&ns, &prefix)).contains(&speaker) {
                    waiting.push(format!("{router} has no route for {prefix} via {speaker}"));
                }
            }
        }
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("after {within:?}: {}", waiting.join("; "));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // geodns answers for every city, from the city.
    for place in &world.viewers {
        let ns = world.lab.namespace(&place.node)?;
        let (server, name) = (world.dns_server, world.service.hostnames[0].clone());
        let subnet = place.network;
        let answered = std::thread::spawn(move || -> Result<()> {
            crate::netns::enter(&ns)?;
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            loop {
                match ask_a(
                    &socket,
                    server,
                    &name,
                    Some(subnet),
                    false,
                    Duration::from_millis(500),
                ) {
                    Ok(a) if !a.addresses.is_empty() => return Ok(()),
                    _ if Instant::now() > deadline => {
                        bail!("geodns {server} does not answer {name} from {subnet}")
                    }
                    _ => std::thread::sleep(Duration::from_millis(250)),
                }
            }
        });
        answered
            .join()
            .map_err(|_| anyhow!("DNS check panicked"))??;
    }
    Ok(())
}

/// Watchers that run until `stop`; route watchers end when their `ip monitor` is killed,
/// which the returned guard does on drop.
pub struct Monitors {
    threads: Vec<JoinHandle<()>>,
    children: Vec<Child>,
}

impl Monitors {
    pub fn drain(&mut self) -> std::vec::Drain<'_, JoinHandle<()>> {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        self.threads.drain(..)
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts every watcher.
pub fn start(world: &World<'_>, timeline: &Timeline, stop: &Arc<AtomicBool>) -> Result<Monitors> {
    let mut monitors = Monitors {
        threads: Vec::new(),
        children: Vec::new(),
    };
    let prefix = world.prefix.to_string();
    for site in world.deployment.sites.iter().map(|s| s.name.clone()) {
        let speaker = world.speaker_address(&site)?.to_string();
        for router in world.site_nodes(&site, "router") {
            let ns = world.lab.namespace(&router)?;
            let lane = lane::route(&router);
            let speaker = speaker.clone();
            let describe = move |route: &str| {
                let hops = next_hops(route);
                What::SiteRoute {
                    announced: hops.contains(&speaker),
                    hops,
                }
            };
            watch_routes(&mut monitors, ns, prefix.clone(), lane, timeline, describe)?;
        }
    }
    for transit in world
        .lab
        .topology()
        .nodes_labelled("lab.role", "transit")
        .map(|n| n.name.clone())
        .collect::<Vec<_>>()
    {
        let ns = world.lab.namespace(&transit)?;
        let describe = |route: &str| What::TransitRoute {
            hops: next_hops(route),
        };
        watch_routes(
            &mut monitors,
            ns,
            prefix.clone(),
            lane::route(&transit),
            timeline,
            describe,
        )?;
    }
    for place in &world.viewers {
        let ns = world.lab.namespace(&place.node)?;
        let sites: Vec<(IpAddr, String)> = world
            .deployment
            .nodes()
            .filter_map(|(s, n)| n.ipv4.map(|ip| (IpAddr::V4(ip), s.name.clone())))
            .collect();
        let name = world.service.hostnames[0].clone();
        for (lane, server, subnet, interval) in [
            (
                lane::dns(&place.city),
                world.dns_server,
                Some(place.network),
                DNS_INTERVAL,
            ),
            (
                lane::resolver(&place.city),
                world.resolver,
                None,
                RESOLVER_INTERVAL,
            ),
        ] {
            let (ns, name, sites, timeline, stop) = (
                ns.clone(),
                name.clone(),
                sites.clone(),
                timeline.clone(),
                stop.clone(),
            );
            monitors.threads.push(std::thread::spawn(move || {
                if let Err(e) = crate::netns::enter(&ns) {
                    timeline.record(&lane, What::Error(format!("cannot enter {ns}: {e}")));
                    return;
                }
                let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
                    return;
                };
                let site_of = |ip: &IpAddr| {
                    sites
                        .iter()
                        .find(|(a, _)| a == ip)
                        .map_or("?", |(_, s)| s.as_str())
                        .to_string()
                };
                let mut last: Option<What> = None;
                let ask = || {
                    ask_a(
                        &socket,
                        server,
                        &name,
                        subnet,
                        subnet.is_none(),
                        Duration::from_millis(500),
                    )
                };
                while !stop.load(Ordering::Relaxed) {
                    let asked = std::time::Instant::now();
                    // Asked again once when nothing came back, as any resolver does: a query lost
                    // in flight while routes change is noted, not counted as a failure.
                    let answer = match ask() {
                        Ok(a) => Ok(a),
                        Err(first) => match ask() {
                            Ok(a) => {
                                timeline.record(&lane, What::Retried(format!("{first:#}")));
                                Ok(a)
                            }
                            Err(e) => Err(e),
                        },
                    };
                    let what = match answer {
                        Ok(a) if a.addresses.is_empty() => What::Error("empty answer".into()),
                        Ok(mut a) => {
                            // Rotation is not a change: compare the sets.
                            a.addresses.sort();
                            let mut where_: Vec<String> = a.addresses.iter().map(site_of).collect();
                            where_.dedup();
                            What::Answer {
                                sites: where_,
                                addresses: a.addresses,
                            }
                        }
                        Err(e) => What::Error(format!("{e:#}")),
                    };
                    if last.as_ref() != Some(&what) {
                        timeline.record(&lane, what.clone());
                        last = Some(what);
                    }
                    std::thread::sleep(interval.saturating_sub(asked.elapsed()));
                }
            }));
        }
    }
    Ok(monitors)
}

/// Records the route for `prefix` in `ns` now and at every change the kernel reports.
fn watch_routes(
    monitors: &mut Monitors,
    ns: String,
    prefix: String,
    lane: String,
    timeline: &Timeline,
    describe: impl Fn(&str) -> What + Send + 'static,
) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", &ns, "monitor", "route"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run `ip monitor route`")?;
    let stdout = child.stdout.take().expect("piped");
    monitors.children.push(child);
    let timeline = timeline.clone();
    monitors.threads.push(std::thread::spawn(move || {
        let mut last = None;
        let note = |timeline: &Timeline, last: &mut Option<What>| {
            let what = describe(&route_state(&ns, &prefix));
            if last.as_ref() != Some(&what) {
                timeline.record(&lane, what.clone());
                *last = Some(what);
            }
        };
        note(&timeline, &mut last);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = line.trim_start_matches("Deleted ").trim_start();
            if line.starts_with(&prefix) {
                note(&timeline, &mut last);
            }
        }
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_of_route_lines() {
        assert_eq!(
            next_hops("198.51.100.0/24 via 10.1.0.10 dev eth1 proto bird metric 32"),
            ["10.1.0.10"]
        );
        assert_eq!(
            next_hops(
                "198.51.100.0/24 proto bgp metric 20\n\tnexthop via 10.1.0.2 dev eth1 weight 1\n\tnexthop via 10.1.0.3 dev eth1 weight 1"
            ),
            ["10.1.0.2", "10.1.0.3"]
        );
        assert!(next_hops("").is_empty());
    }
}
