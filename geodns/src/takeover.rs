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

use crate::admin_state::Override;
use crate::health::HealthState;
use crate::state::Shared;
/// What the replacement starts from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub overrides: Vec<Override>,
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
            overrides: crate::admin_state::current(health),
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

    /// Applies the state to `health`, by name (sites and nodes the configuration no longer has
    /// are skipped).
    pub fn apply(&self, health: &mut HealthState) {
        crate::admin_state::apply(health, &self.overrides);
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
