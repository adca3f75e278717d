//! What an announcement carries, before per-peer export policy.

use std::net::IpAddr;

use config::types::{Community, LargeCommunity};
use serde::{Deserialize, Serialize};

/// ORIGIN attribute values (RFC 4271 section 5.1.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

/// Attributes of an announcement, before per-peer export policy is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteAttrs {
    #[serde(default)]
    pub origin: Origin,
    /// Extra copies of our ASN (on top of per-peer prepends).
    #[serde(default)]
    pub prepend: u8,
    /// Next hop; the session's local address (or the peer's configured next hop) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// Sent to iBGP peers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<LargeCommunity>,
}
