//! Faults seen through the edge tier: the origin site the edges fetch from goes down (routing
//! must move the anycast origin, and the edges with it, before their viewers notice), and a
//! subscriber's token expires while it plays (its next playlist request must be refused
//! cleanly, 403, nothing else).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::super::checks::{Run, ms};
use super::super::monitor::{next_hops, route_state};
use super::super::{Check, World};
use super::{Fault, kill, start, stream_nodes};
use crate::timeline::{Timeline, What, lane};
use crate::viewer::Experience;

/// The transit network's next hops for `prefix`.
fn transit_hops(world: &World<'_>, prefix: &str) -> Result<Vec<String>> {
    let transit = world
        .lab
        .topology()
        .nodes_labelled("lab.role", "transit")
        .next()
        .ok_or_else(|| anyhow!("the topology has no node labelled lab.role: transit"))?;
    let ns = world.lab.namespace(&transit.name)?;
    Ok(next_hops(&route_state(&ns, prefix)))
}

/// The addresses of a site's routers on their links to the transit network: where the
/// transit sends what the site announces.
fn uplinks(world: &World<'_>, site: &str) -> Vec<String> {
    let routers = world.site_nodes(site, "router");
    world
        .lab
        .topology()
        .links
        .iter()
        .filter(|l| {
            l.ends.iter().any(|e| {
                world
                    .lab
                    .topology()
                    .node(&e.node)
                    .and_then(|n| n.label("lab.role"))
                    == Some("transit")
            })
        })
        .flat_map(|l| l.ends.iter())
        .filter(|e| routers.contains(&e.node))
        .filter_map(|e| e.addresses.first().map(|a| a.addr().to_string()))
        .collect()
}

/// The fault-lane notes of [`OriginDown`].
const ORIGIN_HERE: &str = "the transit network routes the anycast origin to the site";
const ORIGIN_LEFT: &str = "the transit network's route to the anycast origin left the site";

/// Every origin node of a site killed while viewers play through another site's edges: the
/// site withdraws the anycast origin prefix, the transit network moves it to the next origin
/// site, and the edges, which fetch from the anycast address, follow with it. Their viewers
/// must see nothing: the edges' caches and the viewers' buffers span the move.
pub struct OriginDown {
    nodes: Vec<String>,
    prefix: String,
    uplinks: Vec<String>,
}

impl OriginDown {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        let (origin, prefix) = world.origin().ok_or_else(|| {
            anyhow!(
                "the deployment has no anycast origin (a service with anycast_addresses and channels)"
            )
        })?;
        let nodes: Vec<String> = stream_nodes(world, site)
            .into_iter()
            .filter(|n| {
                world
                    .node(n)
                    .is_ok_and(|node| node.services.contains(&origin.name))
            })
            .collect();
        if nodes.is_empty() {
            bail!(
                "site {site} has no node carrying the origin service {}",
                origin.name
            );
        }
        if world.edge_sites().is_empty() {
            bail!("no site serves its viewers from edges: nothing to watch through an edge");
        }
        Ok(Self {
            nodes,
            prefix: prefix.to_string(),
            uplinks: uplinks(world, site),
        })
    }

    fn via_site(&self, hops: &[String]) -> bool {
        hops.iter().any(|h| self.uplinks.contains(h))
    }
}

/// From the site's origins dying to the transit network routing the anycast origin elsewhere:
/// the site's withdraw (as for any site going down) and one more BGP hop.
const ORIGIN_MOVE_BOUND: Duration = Duration::from_millis(1000);

impl Fault for OriginDown {
    fn describe(&self) -> String {
        format!("kill the origins {}", self.nodes.join(", "))
    }

    fn target(&self) -> String {
        self.nodes.join(", ")
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, _: Duration) -> Result<()> {
        if self.via_site(&transit_hops(world, &self.prefix)?) {
            timeline.record(lane::FAULT, What::Info(ORIGIN_HERE.into()));
        }
        kill(world, &self.nodes)?;
        let until = timeline.now() + Duration::from_secs(5);
        while timeline.now() < until {
            let hops = transit_hops(world, &self.prefix)?;
            if !hops.is_empty() && !self.via_site(&hops) {
                timeline.record(lane::FAULT, What::Info(ORIGIN_LEFT.into()));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        start(world, &self.nodes)
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let here = run.noted(ORIGIN_HERE);
        let left = run.noted(ORIGIN_LEFT);
        let mut checks = vec![Check {
            what: format!("the anycast origin moves away from {}", run.site),
            bound: format!("< {}", ms(ORIGIN_MOVE_BOUND)),
            measured: match (here, left) {
                (None, _) => format!("not routed to {} before the fault", run.site),
                (Some(_), None) => "not moved".into(),
                (Some(_), Some(at)) => ms(at.saturating_sub(run.fault_at)),
            },
            passed: here.is_some()
                && left.is_some_and(|at| at.saturating_sub(run.fault_at) < ORIGIN_MOVE_BOUND),
        }];
        let edge_sites = run.world.edge_sites();
        let edge_cities = run.cities_served_by(&edge_sites);
        if edge_cities.is_empty() {
            bail!(
                "no city was answered with the edges of {} before the fault",
                edge_sites.join(", ")
            );
        }
        checks.extend(run.answers_unchanged(&edge_cities, " (the edges keep serving)"));
        let edges: Vec<IpAddr> = run
            .world
            .deployment
            .sites
            .iter()
            .filter(|s| edge_sites.contains(&s.name))
            .flat_map(|s| s.nodes.iter().filter_map(|n| n.ipv4.map(IpAddr::V4)))
            .collect();
        let moved = left.unwrap_or(run.restore_at);
        for city in &edge_cities {
            let lane = lane::viewer(city);
            let through_edges = |at: &dyn Fn(Duration) -> bool| {
                run.events
                    .iter()
                    .filter(|e| e.lane == lane && at(e.at))
                    .filter_map(|e| match e.what {
                        What::Segment { server, sequence } if edges.contains(&server) => {
                            Some(sequence)
                        }
                        _ => None,
                    })
                    .collect::<std::collections::BTreeSet<u64>>()
            };
            // Segments newer than any the viewer had before the fault were packaged after
            // it: by the next origin, the dead ones being dead.
            let newest = through_edges(&|at| at < run.fault_at).last().copied();
            let fresh = through_edges(&|at| at > moved && at <= run.restore_at)
                .into_iter()
                .filter(|s| newest.is_some_and(|n| *s > n))
                .count();
            checks.push(Check {
                what: format!(
                    "viewer in {city} gets new segments through the edges from the next origin"
                ),
                bound: "at least 1 packaged after the fault".into(),
                measured: match newest {
                    Some(_) => format!("{fresh} segments"),
                    None => "no segment through the edges before the fault".into(),
                },
                passed: fresh >= 1,
            });
        }
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}

/// How long after the fault the expiring token is valid: time to start and play a few
/// segments first.
const TOKEN_LIFETIME: Duration = Duration::from_secs(5);

/// A viewer playing on its own thread, and what stops it.
type Player = (Arc<AtomicBool>, JoinHandle<Result<Experience>>);

/// A viewer near an edge site plays with a token that expires a few seconds into the fault,
/// as a subscription ending or a token the middleware stopped renewing would.
pub struct TokenExpiry {
    city: String,
    namespace: String,
    /// When the token expires, on the run's clock; set when injected.
    expiry: Mutex<Option<Duration>>,
    player: Mutex<Option<Player>>,
    seen: Mutex<Option<Experience>>,
}

impl TokenExpiry {
    pub fn new(world: &World<'_>) -> Result<Self> {
        let channel = world
            .service
            .channels
            .first()
            .ok_or_else(|| anyhow!("service {} has no channel", world.service.name))?;
        let protected = world
            .deployment
            .channels
            .iter()
            .any(|c| &c.name == channel && c.token.is_some());
        if !protected {
            bail!("channel {channel} takes no token: nothing can expire");
        }
        // The viewer nearest the first edge site (or any site, without edges).
        let sites = world.edge_sites();
        let site = sites
            .first()
            .and_then(|s| world.deployment.site(s))
            .or_else(|| world.deployment.sites.first())
            .ok_or_else(|| anyhow!("the deployment has no site"))?;
        let distance = |lat: f64, lon: f64| {
            (lat - site.latitude).powi(2)
                + ((lon - site.longitude) * lat.to_radians().cos()).powi(2)
        };
        let place = world
            .viewers
            .iter()
            .min_by(|a, b| {
                distance(a.latitude, a.longitude).total_cmp(&distance(b.latitude, b.longitude))
            })
            .ok_or_else(|| anyhow!("the topology has no viewer"))?;
        Ok(Self {
            city: place.city.clone(),
            namespace: world.lab.namespace(&place.node)?,
            expiry: Mutex::new(None),
            player: Mutex::new(None),
            seen: Mutex::new(None),
        })
    }

    fn lane(&self) -> String {
        lane::viewer(&format!("{} (token expiring)", self.city))
    }
}

/// How long past its expiry a token is still honoured: the profile's clock skew.
fn token_skew(world: &World<'_>) -> Duration {
    world
        .service
        .channels
        .first()
        .and_then(|channel| {
            world
                .deployment
                .channels
                .iter()
                .find(|c| &c.name == channel)
        })
        .and_then(|c| c.token.as_deref())
        .and_then(|p| world.deployment.token_profile(p))
        .map_or(Duration::ZERO, |p| p.clock_skew.get())
}

/// From a token's expiry to its viewer's first refusal at the latest: the clock skew, then
/// the next playlist request (players ask twice per target duration), and a second of margin
/// for the token's whole-second expiry.
fn refusal_bound(world: &World<'_>) -> Duration {
    let target = world
        .service
        .channels
        .first()
        .map_or(Duration::from_secs(2), |c| world.target_duration(c));
    token_skew(world) + target / 2 + Duration::from_secs(1)
}

impl Fault for TokenExpiry {
    /// Past the expiry and the refusal, with a few refusals to look at.
    fn observe_at_least(&self, world: &World<'_>, _: &str) -> Duration {
        TOKEN_LIFETIME + refusal_bound(world) + Duration::from_secs(2)
    }

    fn describe(&self) -> String {
        format!(
            "a viewer in {} plays with a token expiring {} s later",
            self.city,
            TOKEN_LIFETIME.as_secs()
        )
    }

    fn target(&self) -> String {
        format!("viewer in {}", self.city)
    }

    fn inject(&self, world: &World<'_>, timeline: &Timeline, _: Duration) -> Result<()> {
        let channel = &world.service.channels[0];
        let playlist = world.playlist(channel, TOKEN_LIFETIME)?;
        // Tokens expire on a whole Unix second.
        let expires = std::time::UNIX_EPOCH + Duration::from_secs(tokens::now()) + TOKEN_LIFETIME;
        let left = expires
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let viewer = world.viewer(self.lane(), self.namespace.clone(), playlist)?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = viewer.spawn(timeline.clone(), stop.clone());
        *self.expiry.lock().unwrap_or_else(|e| e.into_inner()) = Some(timeline.now() + left);
        *self.player.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, handle));
        Ok(())
    }

    fn before_repair(&self, _: &World<'_>, _: &Timeline) {
        let player = self.player.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, handle)) = player {
            stop.store(true, Ordering::Relaxed);
            let seen = handle.join().ok().and_then(Result::ok);
            *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        }
    }

    fn restore(&self, _: &World<'_>) -> Result<()> {
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let expiry = self
            .expiry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or_else(|| anyhow!("the expiring token was never minted"))?;
        let bound = refusal_bound(run.world);
        let lane = self.lane();
        let ours: Vec<_> = run.events.iter().filter(|e| e.lane == lane).collect();
        let before = ours
            .iter()
            .filter(|e| e.at < expiry && matches!(e.what, What::Segment { .. }))
            .count();
        let early: Vec<String> = ours
            .iter()
            .filter(|e| e.at < expiry && matches!(e.what, What::Error(_)))
            .map(|e| e.text())
            .collect();
        let refusals: Vec<(Duration, String)> = ours
            .iter()
            .filter_map(|e| match &e.what {
                What::Error(text) if e.at >= expiry => Some((e.at - expiry, text.clone())),
                _ => None,
            })
            .collect();
        let first = refusals.first();
        let unclean: Vec<&String> = refusals
            .iter()
            .map(|(_, text)| text)
            .filter(|text| !text.ends_with("HTTP 403"))
            .collect();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut checks = vec![
            Check {
                what: format!(
                    "viewer in {} plays with its token until it expires",
                    self.city
                ),
                bound: "segments, no error".into(),
                measured: if early.is_empty() {
                    format!("{before} segments")
                } else {
                    format!("{before} segments; {}", early.join("; "))
                },
                passed: before > 0 && early.is_empty(),
            },
            Check {
                what: "its first request past the expiry is refused with 403".into(),
                bound: format!("< {} after the expiry", ms(bound)),
                measured: match first {
                    Some((at, text)) => format!("{} after the expiry: {}", ms(*at), short(text)),
                    None => "never refused".into(),
                },
                passed: first.is_some_and(|(at, text)| *at < bound && text.ends_with("HTTP 403")),
            },
            Check {
                what: "every request past the expiry refused 403, never another failure".into(),
                bound: "403 only".into(),
                measured: match (refusals.len(), unclean.first()) {
                    (n, None) => format!("{n} refusals, all 403"),
                    (n, Some(text)) => format!("{} of {n} not 403: {}", unclean.len(), short(text)),
                },
                passed: !refusals.is_empty() && unclean.is_empty(),
            },
        ];
        if let Some(seen) = seen {
            checks.push(Check {
                what: format!(
                    "the token's viewer in {} started before the expiry",
                    self.city
                ),
                bound: format!("< {}", ms(TOKEN_LIFETIME)),
                measured: seen.startup.map_or("never".into(), ms),
                passed: seen.startup.is_some_and(|s| s < TOKEN_LIFETIME),
            });
        }
        checks.push(run.never_empty());
        checks.extend(run.viewers_unharmed(Duration::ZERO));
        Ok(checks)
    }
}

/// An error's text without the token in its URL.
fn short(text: &str) -> String {
    match (text.find('?'), text.rfind(": ")) {
        (Some(q), Some(c)) if q < c => format!("{}{}", &text[..q], &text[c..]),
        _ => text.to_string(),
    }
}
