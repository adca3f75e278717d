//! The routes we announce and their attributes.

use std::net::IpAddr;

use config::types::{Community, LargeCommunity};
use ipnet::IpNet;
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

/// The attributes as they go to one peer: policy applied, AS path built, next hop resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WireAttrs {
    pub origin: Origin,
    pub as_path: Vec<u32>,
    pub next_hop: IpAddr,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

/// A prefix with the attributes it goes out with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpNet,
    pub attrs: RouteAttrs,
}

/// A route as the CLI and the control API show it, sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownRoute {
    pub prefix: String,
    pub origin: String,
    pub as_path: String,
    pub next_hop: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<String>,
}

impl ShownRoute {
    pub fn advertised(prefix: &IpNet, a: &WireAttrs) -> Self {
        Self {
            prefix: prefix.to_string(),
            origin: origin_name(match a.origin {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            }),
            as_path: a
                .as_path
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            next_hop: a.next_hop.to_string(),
            med: a.med,
            local_pref: a.local_pref,
            communities: a
                .communities
                .iter()
                .map(|c| Community(*c).to_string())
                .collect(),
            large_communities: a
                .large_communities
                .iter()
                .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
                .collect(),
        }
    }
}

/// ORIGIN code as BIRD and FRR print it.
pub fn origin_name(code: u8) -> String {
    match code {
        0 => "IGP",
        1 => "EGP",
        _ => "incomplete",
    }
    .to_owned()
}
