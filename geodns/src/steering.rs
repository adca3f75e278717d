//! Steering: rank sites for a client and pick the first that can serve the service.
//!
//! Ranking is by great-circle distance from the client's location, unless an override from the
//! deployment file (network, country, continent, first match) or the default order applies.
//! The first site with enough healthy nodes and load under the spill threshold wins. When no
//! site qualifies the answer fails open to the least-bad site: never an empty answer.

use std::net::IpAddr;

use config::Deployment;
use config::dns::Override;
use config::service::Service;
use ipnet::IpNet;
use serde::Serialize;

use crate::geo::{Location, distance_km};
use feed::site_health::{NodeHealth, Operator, Reason, SiteHealth, Thresholds, site_health};

use crate::health::{AdminState, Family, HealthState, NodeView, SiteView};

/// Why sites were ranked the way they were.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum RankReason {
    /// Override rule `index` matched.
    Override { index: usize },
    /// Great-circle distance from the client's coordinates.
    Distance,
    /// No location: the default order.
    Default,
}

/// The ranking of sites for one client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    /// Site indices, best first.
    pub order: Vec<usize>,
    /// Distance in km per site index, when known.
    pub distances: Vec<Option<f64>>,
    pub reason: RankReason,
}

/// Site coordinates and the rules, prepared once per configuration.
#[derive(Debug, Clone)]
pub struct Steering {
    coordinates: Vec<(f64, f64)>,
    overrides: Vec<(Override, Vec<usize>)>,
    default_order: Vec<usize>,
    /// Every network named by an override, flattened once.
    override_networks: Vec<IpNet>,
}

impl Steering {
    pub fn new(d: &Deployment) -> Self {
        let index = |name: &str| d.sites.iter().position(|s| s.name == name);
        let dns = d.dns.clone().unwrap_or_default();
        let overrides = dns
            .overrides
            .iter()
            .map(|o| (o.clone(), o.sites.iter().filter_map(|s| index(s)).collect()))
            .collect();
        let mut default_order: Vec<usize> =
            dns.default_order.iter().filter_map(|s| index(s)).collect();
        for i in 0..d.sites.len() {
            if !default_order.contains(&i) {
                default_order.push(i);
            }
        }
        let override_networks = dns
            .overrides
            .iter()
            .flat_map(|o| o.networks.iter().copied())
            .collect();
        Self {
            coordinates: d.sites.iter().map(|s| (s.latitude, s.longitude)).collect(),
            overrides,
            default_order,
            override_networks,
        }
    }

    /// Ranks every site for a client at `ip` whose location is `location` (its country,
    /// continent and coordinates; its network does not matter). This is the rule itself: the
    /// atlas ranks every database network with it when compiling.
    pub fn rank(&self, ip: IpAddr, location: Option<&Location>) -> Ranking {
        let distances: Vec<Option<f64>> = self
            .coordinates
            .iter()
            .map(|site| {
                location
                    .and_then(|l| l.coordinates)
                    .map(|c| distance_km(c, *site))
            })
            .collect();
        for (index, (rule, order)) in self.overrides.iter().enumerate() {
            if rule.networks.iter().any(|n| n.contains(&ip)) {
                return Ranking {
                    order: complete(order, &self.default_order),
                    distances,
                    reason: RankReason::Override { index },
                };
            }
            let by_place = location.is_some_and(|l| {
                l.country.is_some_and(|c| rule.countries.contains(&c))
                    || l.continent.is_some_and(|c| rule.continents.contains(&c))
            });
            if by_place {
                return Ranking {
                    order: complete(order, &self.default_order),
                    distances,
                    reason: RankReason::Override { index },
                };
            }
        }
        if distances.iter().all(Option::is_some) && !distances.is_empty() {
            let mut order: Vec<usize> = (0..self.coordinates.len()).collect();
            order.sort_by(|a, b| {
                distances[*a]
                    .partial_cmp(&distances[*b])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            return Ranking {
                order,
                distances,
                reason: RankReason::Distance,
            };
        }
        Ranking {
            order: self.default_order.clone(),
            distances,
            reason: RankReason::Default,
        }
    }

    /// Every network named by an override.
    pub fn override_networks(&self) -> impl Iterator<Item = &IpNet> {
        self.override_networks.iter()
    }
}

/// An override's order followed by every other site in default order (so failover continues
/// past the listed sites).
fn complete(first: &[usize], default: &[usize]) -> Vec<usize> {
    let mut order = first.to_vec();
    order.extend(default.iter().filter(|i| !first.contains(i)));
    order
}

/// Whether `node` counts for `service` in questions of `family`.
pub(crate) fn serves(node: &NodeView, service: &Service, family: Family) -> bool {
    node.has(family) && node.services.contains(&service.name)
}

/// What the chosen site can offer for a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteVerdict {
    pub site: String,
    pub healthy_nodes: usize,
    pub load: f64,
    pub usable: bool,
    pub why: String,
}

/// The site-health rule for `site`, `service` and the question's `family`.
///
/// geodns applies the rule itself rather than take the verdict healthd publishes: it decides
/// per address family (a site healthy for A may have no node with an IPv6 address), applies
/// operators' overrides made here, and must answer while a feed is silent (its nodes then count
/// as up). The rule is the same one healthd uses (`feed::site_health`).
pub fn health_of(site: &SiteView, service: &Service, family: Family) -> SiteHealth {
    let operator = match site.admin {
        Some(AdminState::Down) => Operator::ForcedDown,
        Some(AdminState::Up) => Operator::ForcedUp,
        None => Operator::None,
    };
    let nodes = site
        .nodes
        .iter()
        .filter(|n| serves(n, service, family))
        .map(|n| NodeHealth {
            up: n.up(),
            load: n.load,
            capacity_mbps: n.capacity_mbps,
        });
    site_health(nodes, thresholds(service), operator)
}

/// A service's thresholds for the site-health rule.
pub fn thresholds(service: &Service) -> Thresholds {
    Thresholds {
        min_healthy_nodes: service.min_healthy_nodes,
        spill_load: service.spill_load,
    }
}

/// A site's verdict for `service` in questions of `family`, as `explain` shows it.
pub fn verdict(site: &SiteView, service: &Service, family: Family) -> SiteVerdict {
    let health = health_of(site, service, family);
    let why = match (health.reason, family) {
        (Reason::NoNodes, Family::V4) => {
            "no node with an IPv4 address carries the service".to_owned()
        }
        (Reason::NoNodes, Family::V6) => {
            "no node with an IPv6 address carries the service".to_owned()
        }
        (reason, _) => reason.to_string(),
    };
    SiteVerdict {
        site: site.name.clone(),
        healthy_nodes: health.up as usize,
        load: health.load,
        usable: health.usable,
        why,
    }
}

/// The site to answer with, and whether that is a fail-open choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// The site's index in the configuration (`explain` names it: `Steered::site`).
    #[serde(skip)]
    pub site: usize,
    pub fail_open: bool,
    pub verdicts: Vec<SiteVerdict>,
}

/// Walks the ranking and picks the first usable site; when none is usable, the nearest site
/// with any healthy node, else the nearest site at all (fail open, as the failure table says).
pub fn choose(
    ranking: &Ranking,
    health: &HealthState,
    service: &Service,
    family: Family,
) -> Option<Choice> {
    let verdicts: Vec<SiteVerdict> = ranking
        .order
        .iter()
        .map(|&i| verdict(&health.sites[i], service, family))
        .collect();
    let pick = pick_site(&ranking.order, |i| {
        site_state(&health.sites[i], service, family)
    });
    pick.map(|(site, fail_open)| Choice {
        site,
        fail_open,
        verdicts,
    })
}

/// What a site can do for a service and an address family, from health alone (the same
/// for every client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteState {
    /// It has nodes for the service with an address of the family.
    pub carrying: bool,
    /// At least one of them is up.
    pub any_up: bool,
    /// It may be chosen: admin state, enough healthy nodes, load under the spill threshold.
    pub usable: bool,
}

/// The [`SiteState`] of `site`.
pub fn site_state(site: &SiteView, service: &Service, family: Family) -> SiteState {
    let health = health_of(site, service, family);
    SiteState {
        carrying: health.total > 0,
        any_up: health.up > 0,
        usable: health.usable,
    }
}

/// Walks `order` with each site's state: the first usable site, else (fail open) the first
/// with a node up, else the first carrying the service at all.
pub fn pick_site(order: &[usize], state: impl Fn(usize) -> SiteState) -> Option<(usize, bool)> {
    let mut first_with_nodes = None;
    let mut first_carrying = None;
    for &i in order {
        let s = state(i);
        if !s.carrying {
            continue;
        }
        if s.usable {
            return Some((i, false));
        }
        first_carrying.get_or_insert(i);
        if s.any_up {
            first_with_nodes.get_or_insert(i);
        }
    }
    first_with_nodes.or(first_carrying).map(|i| (i, true))
}

/// Every site carrying the service, in the order a player should try them: the usable ones as
/// ranked, then (fail open) those with a node up, then the rest. Its head is what
/// [`pick_site`] chooses, so a player steered by it and a resolver answered by DNS are sent to
/// the same site.
pub fn preference(order: &[usize], state: impl Fn(usize) -> SiteState) -> Vec<usize> {
    let states: Vec<(usize, SiteState)> = order
        .iter()
        .map(|&i| (i, state(i)))
        .filter(|(_, s)| s.carrying)
        .collect();
    let tier = |s: &SiteState| {
        if s.usable {
            0
        } else if s.any_up {
            1
        } else {
            2
        }
    };
    let mut ranked = states;
    // Stable: within a tier, the ranking's order.
    ranked.sort_by_key(|(_, s)| tier(s));
    ranked.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthState;

    #[test]
    fn the_preference_starts_with_the_chosen_site_and_keeps_the_ranking_within_tiers() {
        let state = |usable: bool, any_up: bool, carrying: bool| SiteState {
            carrying,
            any_up,
            usable,
        };
        let states = [
            state(false, true, true),   // 0: overloaded, nodes up
            state(false, false, true),  // 1: every node down
            state(true, true, true),    // 2: usable
            state(false, false, false), // 3: does not carry the service
            state(true, true, true),    // 4: usable
        ];
        let order = [1, 0, 3, 4, 2];
        let preference = preference(&order, |i| states[i]);
        assert_eq!(preference, [4, 2, 0, 1]);
        assert_eq!(
            pick_site(&order, |i| states[i]).map(|(site, _)| site),
            preference.first().copied()
        );
        // Nothing usable: the fail-open choice leads, as in DNS.
        let down = |i: usize| SiteState {
            usable: false,
            ..states[i]
        };
        let preference = super::preference(&order, down);
        assert_eq!(preference, [0, 4, 2, 1]);
        assert_eq!(
            pick_site(&order, down).map(|(site, _)| site),
            preference.first().copied()
        );
    }

    /// The chosen site and whether it fails open, as the fast path's table decides.
    fn choose_site(
        ranking: &Ranking,
        health: &HealthState,
        service: &Service,
        family: Family,
    ) -> Option<(usize, bool)> {
        let table = pick_site(&ranking.order, |i| {
            site_state(&health.sites[i], service, family)
        });
        let verbose = choose(ranking, health, service, family).map(|c| (c.site, c.fail_open));
        assert_eq!(table, verbose, "the table and the explained choice agree");
        table
    }

    fn example() -> Deployment {
        let text = include_str!("../../config/examples/three-sites.toml");
        Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap()
    }

    fn amsterdam() -> Location {
        Location {
            network: "198.51.100.0/24".parse().unwrap(),
            country: None,
            continent: None,
            coordinates: Some((52.37, 4.90)),
        }
    }

    #[test]
    fn a_site_over_its_spill_load_sends_viewers_to_the_next() {
        let d = example();
        let steering = Steering::new(&d);
        let mut health = HealthState::from_deployment(&d);
        let live = d.service("live").unwrap();
        let ranking = steering.rank("198.51.100.1".parse().unwrap(), Some(&amsterdam()));
        assert_eq!(
            choose_site(&ranking, &health, live, Family::V4),
            Some((0, false))
        );
        for node in &mut health.sites[0].nodes {
            node.load = 0.95; // above live's spill_load of 0.85
        }
        let (site, fail_open) = choose_site(&ranking, &health, live, Family::V4).unwrap();
        assert_eq!((d.sites[site].name.as_str(), fail_open), ("lon", false));
        let verbose = choose(&ranking, &health, live, Family::V4).unwrap();
        assert!(
            verbose.verdicts[0].why.contains("spill threshold"),
            "{:?}",
            verbose.verdicts[0]
        );
        assert_eq!(verbose.site, site, "the verbose and fast choices agree");
    }

    #[test]
    fn min_healthy_nodes_and_fail_open() {
        let d = example();
        let steering = Steering::new(&d);
        let mut health = HealthState::from_deployment(&d);
        let live = d.service("live").unwrap();
        let ranking = steering.rank("198.51.100.1".parse().unwrap(), Some(&amsterdam()));
        for site in &mut health.sites {
            for node in &mut site.nodes {
                node.healthy = false;
            }
        }
        // Nothing healthy anywhere: the nearest site, flagged as fail open.
        assert_eq!(
            choose_site(&ranking, &health, live, Family::V4),
            Some((0, true))
        );
        health.sites[2].nodes[0].healthy = true; // one London node back
        assert_eq!(
            choose_site(&ranking, &health, live, Family::V4),
            Some((2, false))
        );
    }

    #[test]
    fn aaaa_walks_past_sites_without_ipv6_nodes() {
        // Only ams-1 has an IPv6 address in the example deployment.
        let d = example();
        let steering = Steering::new(&d);
        let mut health = HealthState::from_deployment(&d);
        let live = d.service("live").unwrap();
        let london = Location {
            network: "192.0.2.0/25".parse().unwrap(),
            country: None,
            continent: None,
            coordinates: Some((51.51, -0.13)),
        };
        let ranking = steering.rank("192.0.2.1".parse().unwrap(), Some(&london));
        let name = |i: usize| d.sites[i].name.as_str();
        let (v4, _) = choose_site(&ranking, &health, live, Family::V4).unwrap();
        assert_eq!(name(v4), "lon");
        let (v6, fail_open) = choose_site(&ranking, &health, live, Family::V6).unwrap();
        assert_eq!((name(v6), fail_open), ("ams", false));
        let verbose = choose(&ranking, &health, live, Family::V6).unwrap();
        assert_eq!(verbose.site, v6, "the verbose and fast choices agree");
        assert!(
            verbose.verdicts[0].why.contains("IPv6"),
            "{:?}",
            verbose.verdicts[0]
        );
        // The only IPv6 node down: the IPv6 question fails open to it rather than go empty.
        let ams1 = health.sites[0]
            .nodes
            .iter_mut()
            .find(|n| n.ipv6.is_some())
            .unwrap();
        ams1.healthy = false;
        assert_eq!(
            choose_site(&ranking, &health, live, Family::V6),
            Some((0, true))
        );
    }
}
