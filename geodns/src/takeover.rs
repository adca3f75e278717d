//! Replacing a running geodns without a lost query (`geodns replace`, or `geodns
//! --take-over` started by hand): the running process offers its sockets on `dns.handover`
//! ([`daemon::handover`]); the replacement receives its UDP workers' sockets, its TCP,
//! steering and admin listeners, and the state to start from (operators' overrides and every
//! node's health as the feeds last said), applies the state before it answers, serves on the
//! same sockets, and says so. The old process then stops reading, lets its TCP connections
//! finish, and exits. If the replacement fails before it says it serves, the old one goes on
//! serving.

use std::net::SocketAddr;
use std::sync::Arc;

use daemon::handover::{Captured, Carry};
use serde::{Deserialize, Serialize};

use crate::admin_state::Saved;
use crate::health::HealthState;
use crate::state::Shared;
/// What the replacement starts from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Operators' overrides and withdrawn canaries (a process from before canaries sends only
    /// the overrides).
    #[serde(flatten)]
    pub admin: Saved,
    pub nodes: Vec<NodeHealth>,
}

/// One node's health as the old process last heard it from its site's feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub site: String,
    pub node: String,
    pub healthy: bool,
    pub load: f64,
}

impl State {
    pub fn capture(health: &HealthState) -> Self {
        Self {
            admin: crate::admin_state::current(health),
            nodes: health
                .sites
                .iter()
                .flat_map(|s| {
                    s.nodes.iter().map(|n| NodeHealth {
                        site: s.name.clone(),
                        node: n.name.clone(),
                        healthy: n.healthy,
                        load: n.load,
                    })
                })
                .collect(),
        }
    }

    /// Applies the state to `health`, by name (sites, nodes and canaries `deployment` no longer
    /// has are skipped).
    pub fn apply(&self, health: &mut HealthState, deployment: &config::Deployment) {
        crate::admin_state::apply(health, deployment, &self.admin);
        for n in &self.nodes {
            let node = health
                .sites
                .iter_mut()
                .filter(|s| s.name == n.site)
                .flat_map(|s| s.nodes.iter_mut())
                .find(|node| node.name == n.node);
            if let Some(node) = node {
                node.healthy = n.healthy;
                node.load = n.load;
            }
        }
    }
}

/// The state a geodns hands its replacement: read from the running answers at hand-over.
pub struct Carried(pub Arc<Shared>);

impl Carry for Carried {
    fn capture(&self) -> Result<Captured, String> {
        Ok(Captured {
            state: serde_json::to_value(State::capture(&self.0.health()))
                .map_err(|e| e.to_string())?,
            payload: Vec::new(),
        })
    }
}

/// The name a UDP worker's socket on `addr` is handed over under (one per worker).
pub fn udp_name(addr: SocketAddr) -> String {
    daemon::handover::name("dns udp", addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> config::Deployment {
        let mut text = include_str!("../../config/examples/three-sites.toml").to_owned();
        text = text.replacen(
            "name = \"ams-2\"\n",
            "name = \"ams-2\"\nversion = \"2.4.0\"\n",
            1,
        );
        text = text.replacen(
            "check = \"stream\"\n",
            "check = \"stream\"\ncanary = { version = \"2.4.0\", share = 0.1 }\n",
            1,
        );
        config::Deployment::parse(&text, std::path::Path::new("three-sites.toml")).unwrap()
    }

    #[test]
    fn overrides_withdrawn_canaries_and_health_reach_the_replacement() {
        let d = deployment();
        let mut old = HealthState::from_deployment(&d);
        old.set_admin("lon", None, Some(crate::health::AdminState::Down));
        old.sites[0].nodes[1].healthy = false;
        old.withdrawn_canaries.insert(crate::canary::Withdrawal {
            service: "live".into(),
            version: "2.4.0".into(),
        });
        let wire = serde_json::to_value(State::capture(&old)).unwrap();
        let state: State = serde_json::from_value(wire).unwrap();
        let mut new = HealthState::from_deployment(&d);
        state.apply(&mut new, &d);
        assert_eq!(new.sites[2].admin, old.sites[2].admin);
        assert!(!new.sites[0].nodes[1].healthy);
        assert_eq!(new.withdrawn_canaries, old.withdrawn_canaries);
    }

    #[test]
    fn a_process_from_before_canaries_hands_over_its_overrides() {
        let wire = serde_json::json!({
            "overrides": [{"site": "ams", "state": "down"}],
            "nodes": [{"site": "fra", "node": "fra-1", "healthy": false, "load": 0.5}],
        });
        let state: State = serde_json::from_value(wire).unwrap();
        assert_eq!(state.admin.overrides.len(), 1);
        assert!(state.admin.withdrawn_canaries.is_empty());
        assert_eq!(state.nodes.len(), 1);
    }
}
