//! The site feed: what healthd knows about its site, published to every geodns.
//!
//! The document is versioned by the publisher's instance (an id chosen when healthd starts)
//! and a generation number that grows with every change, so a reader tells a newer document
//! from an old one and a restarted publisher from a stale one. It is readable whole
//! (`GET /feed`) and as a stream (`GET /feed/stream`, server-sent events): one event with the
//! whole document at once and after every change, and a comment line every [`HEARTBEAT`] so a
//! reader notices a silent feed ([`follower::SILENCE`]). Documents are small (a site has a
//! handful of nodes), so each event carries the whole document rather than a diff: a reader
//! that missed events is never out of step.
//!
//! [`site_health`] is the rule that says whether a site can serve a service, which the
//! publisher and every reader share.

pub mod follower;
pub mod fuzzing;
pub mod server;
pub mod site_health;

/// How often the stream carries a heartbeat while nothing changes.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// One site's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteFeed {
    pub site: String,
    /// The publisher's instance, chosen when it starts: a new one starts its generations over.
    #[serde(default)]
    pub instance: String,
    /// Grows by one with every change.
    pub generation: u64,
    pub services: Vec<ServiceState>,
    pub nodes: Vec<NodeState>,
    /// The site speaker's BGP sessions, as healthd last heard them (for operators: steering
    /// does not read them). Absent from publishers that do not know them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerState>,
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
    /// Why the node is not healthy (failed probes, its status stream gone, ingest lost); absent
    /// while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One BGP session of the site's speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub name: String,
    pub address: String,
    /// The session's state as BGP names it (`Established`, `Active`, ...).
    pub state: String,
    /// When it entered that state, in seconds since the Unix epoch.
    pub since: u64,
    pub prefixes_advertised: u64,
    /// The BFD session's state, when the peer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<String>,
}

impl SiteFeed {
    pub fn version(&self) -> Version {
        Version {
            instance: self.instance.clone(),
            generation: self.generation,
        }
    }
}

/// Which document of which publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub instance: String,
    pub generation: u64,
}

impl Version {
    /// Whether a document of this version replaces one of `other`: from another publisher
    /// instance (a restart), or a later generation of the same one.
    pub fn newer_than(&self, other: &Version) -> bool {
        self.instance != other.instance || self.generation > other.generation
    }
}

/// An id for a publisher instance: unique across restarts and hosts for all practical purposes.
pub fn new_instance() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
