//! What geodns knows about each site's nodes: health and load from the sites' feeds, and
//! operator overrides (admin state) that win over both.
//!
//! Until a feed has been heard from, a site's nodes count as up: geodns must never answer
//! empty, and the failure table (docs/ARCHITECTURE.md) says a lost feed fails open after its grace.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use config::Deployment;
use serde::Serialize;

/// An operator's forced state for a site or node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    Up,
    Down,
}

/// The address family a question asks for: a site without a node of that family cannot answer
/// it, so AAAA questions walk past sites whose nodes have only IPv4 addresses (and A past
/// IPv6-only ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    V4,
    V6,
}

/// One node as steering sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub services: Vec<String>,
    pub capacity_mbps: u32,
    /// Healthy according to the feed (true until a feed says otherwise).
    pub healthy: bool,
    /// Egress over capacity, 0..1.
    pub load: f64,
    pub admin: Option<AdminState>,
    /// The node's `version` label (a canary's nodes carry the canary's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl NodeView {
    /// Whether the node has an address of `family` to answer with.
    pub fn has(&self, family: Family) -> bool {
        match family {
            Family::V4 => self.ipv4.is_some(),
            Family::V6 => self.ipv6.is_some(),
        }
    }

    /// Up after admin overrides.
    pub fn up(&self) -> bool {
        match self.admin {
            Some(AdminState::Up) => true,
            Some(AdminState::Down) => false,
            None => self.healthy,
        }
    }
}

/// One site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteView {
    pub name: String,
    pub nodes: Vec<NodeView>,
    pub admin: Option<AdminState>,
    /// When the feed was last heard from; `None` before the first message.
    #[serde(skip)]
    pub last_feed: Option<Instant>,
    /// Generation of the feed document last applied.
    pub generation: u64,
    /// When the site or one of its nodes last changed state (feed or operator).
    #[serde(skip)]
    pub changed_at: Option<Instant>,
}

/// The health of every site.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthState {
    pub sites: Vec<SiteView>,
    /// Canaries an operator took out of the answers.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub withdrawn_canaries: std::collections::BTreeSet<crate::canary::Withdrawal>,
}

impl HealthState {
    /// Every node of the deployment, all up, no admin overrides.
    pub fn from_deployment(d: &Deployment) -> Self {
        let sites = d
            .sites
            .iter()
            .map(|site| SiteView {
                name: site.name.clone(),
                nodes: site
                    .nodes
                    .iter()
                    .map(|n| NodeView {
                        name: n.name.clone(),
                        ipv4: n.ipv4,
                        ipv6: n.ipv6,
                        services: n.services.clone(),
                        capacity_mbps: n.capacity_mbps,
                        healthy: true,
                        load: 0.0,
                        admin: None,
                        version: n.version.clone(),
                    })
                    .collect(),
                admin: None,
                last_feed: None,
                generation: 0,
                changed_at: None,
            })
            .collect();
        Self {
            sites,
            withdrawn_canaries: Default::default(),
        }
    }

    /// The health of a reloaded deployment: its sites and nodes, in its order, each keeping the
    /// state it had here if it had one (by name), so a reload neither forgets a failure nor an
    /// operator's override, and indices line up with the new configuration's.
    pub fn carried_over(&self, d: &Deployment) -> Self {
        let mut next = Self::from_deployment(d);
        // A withdrawal lasts while its canary is configured: the next canary starts in force.
        next.withdrawn_canaries = self
            .withdrawn_canaries
            .iter()
            .filter(|w| crate::canary::configured(d, w))
            .cloned()
            .collect();
        for site in &mut next.sites {
            let Some(old) = self.sites.iter().find(|s| s.name == site.name) else {
                continue;
            };
            site.admin = old.admin;
            site.last_feed = old.last_feed;
            site.generation = old.generation;
            site.changed_at = old.changed_at;
            for node in &mut site.nodes {
                if let Some(was) = old.nodes.iter().find(|n| n.name == node.name) {
                    node.healthy = was.healthy;
                    node.load = was.load;
                    node.admin = was.admin;
                }
            }
        }
        next
    }

    pub fn site_index(&self) -> HashMap<&str, usize> {
        self.sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect()
    }

    /// Forces a site (`node` = None) or one node up or down; `None` clears the override.
    /// Returns false when the name is unknown.
    pub fn set_admin(&mut self, site: &str, node: Option<&str>, state: Option<AdminState>) -> bool {
        let Some(s) = self.sites.iter_mut().find(|s| s.name == site) else {
            return false;
        };
        s.changed_at = Some(Instant::now());
        match node {
            None => {
                s.admin = state;
                true
            }
            Some(node) => match s.nodes.iter_mut().find(|n| n.name == node) {
                Some(n) => {
                    n.admin = state;
                    true
                }
                None => false,
            },
        }
    }
}

impl HealthState {
    /// The TTL for a service answer: the service's own, or `changing_ttl` while a site ranked at
    /// or before the chosen one changed state within three TTLs (a failover in progress, which
    /// caches should not keep for long).
    pub fn answer_ttl(
        &self,
        order: &[usize],
        chosen: usize,
        ttl: u32,
        changing_ttl: u32,
        now: Instant,
    ) -> u32 {
        let window = changing_window(ttl);
        let changing = order
            .iter()
            .take_while(|i| **i != chosen)
            .chain(std::iter::once(&chosen))
            .any(|i| {
                self.sites
                    .get(*i)
                    .and_then(|s| s.changed_at)
                    .is_some_and(|t| now.saturating_duration_since(t) < window)
            });
        if changing { ttl.min(changing_ttl) } else { ttl }
    }

    /// When a site last changed state, if ever.
    pub fn last_change(&self) -> Option<Instant> {
        self.sites.iter().filter_map(|s| s.changed_at).max()
    }
}

/// How long after a site changed state answers that depend on it count as changing: three of
/// the service's TTLs, time for caches holding the old answer to have let it go.
pub fn changing_window(ttl: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(ttl) * 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_state_by_name_in_the_new_order() {
        let text = include_str!("../../config/examples/three-sites.toml");
        let d = Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap();
        let mut health = HealthState::from_deployment(&d);
        health.set_admin("lon", None, Some(AdminState::Down));
        health.sites[1].nodes[0].healthy = false;
        let fra_node = health.sites[1].nodes[0].name.clone();
        // Amsterdam leaves the deployment: Frankfurt and London move up one place.
        let mut smaller = d.clone();
        smaller.sites.remove(0);
        let next = health.carried_over(&smaller);
        let names: Vec<&str> = next.sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fra", "lon"]);
        assert_eq!(next.sites[0].nodes[0].name, fra_node);
        assert!(!next.sites[0].nodes[0].healthy, "Frankfurt's failure kept");
        assert_eq!(next.sites[1].admin, Some(AdminState::Down), "override kept");
        // Back again: Amsterdam starts as a new site, all up.
        let again = next.carried_over(&d);
        assert!(again.sites[0].nodes.iter().all(|n| n.healthy));
        assert_eq!(again.sites[2].admin, Some(AdminState::Down));
    }
}
