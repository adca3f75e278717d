//! The routes we announce and their attributes.

use std::net::IpAddr;

use config::types::Community;
use ipnet::IpNet;
pub use speaker_control::{Origin, ShownRoute, origin_name};

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

impl WireAttrs {
    /// How `show routes advertised` shows this route.
    pub fn shown(&self, prefix: &IpNet) -> ShownRoute {
        let a = self;
        ShownRoute {
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
            communities: community_names(&a.communities),
            large_communities: large_community_names(&a.large_communities),
        }
    }
}

/// Standard communities as BIRD and FRR print them (`65000:100`, well-known names).
pub fn community_names(communities: &[u32]) -> Vec<String> {
    communities
        .iter()
        .map(|c| Community(*c).to_string())
        .collect()
}

/// Large communities as `GLOBAL:LOCAL1:LOCAL2` (RFC 8092).
pub fn large_community_names(large: &[[u32; 3]]) -> Vec<String> {
    large
        .iter()
        .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
        .collect()
}
