//! The site feed: what healthd knows about its site, published to every geodns.
//!
//! The document is versioned by a generation number that grows with every change. It is
//! readable whole (`GET /feed`) and as a stream (`GET /feed/stream`, server-sent events): one
//! event with the whole document at once and after every change, and a comment line every
//! second so a reader notices a silent feed within a second or two. Documents are small (a
//! site has a handful of nodes), so each event carries the whole document rather than a diff:
//! a reader that missed events is never out of step.

pub mod client;
pub mod server;

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// One site's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteFeed {
    pub site: String,
    /// Grows by one with every change.
    pub generation: u64,
    pub services: Vec<ServiceState>,
    pub nodes: Vec<NodeState>,
}

/// The site verdict for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    pub healthy: bool,
    /// Whether its prefixes are announced (and how: "announced", "degraded", "withdrawn").
    pub announcement: String,
    /// Why, in words an operator understands.
    pub reason: String,
}

/// One stream node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    pub services: Vec<String>,
    pub healthy: bool,
    /// Egress over capacity, 0..1.
    pub load: f64,
    pub capacity_mbps: u32,
    #[serde(default)]
    pub draining: bool,
}
