//! A peer as the session layer sees it. The session knows nothing of the deployment file: the
//! speaker builds this from a `[[sites.peers]]` entry in one place ([`crate::speaker`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use config::types::{Community, LargeCommunity};

use super::fsm::FsmConfig;
use crate::packet::open::Open;

/// One upstream router and what we do with it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub remote_asn: u32,
    /// Hold time we propose (seconds; 0 disables it).
    pub hold_time: u16,
    /// Keepalive interval; a third of the negotiated hold time when `None`.
    pub keepalive: Option<u16>,
    /// Only accept connections.
    pub passive: bool,
    /// First delay before connecting again (it doubles up to a minute).
    pub connect_retry: Duration,
    /// Next hops announced instead of our session address.
    pub next_hop: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    pub export: Export,
    pub import: Import,
}

/// What goes to the peer, on top of what the table holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Export {
    /// Services whose prefixes go to this peer; all when `None`.
    pub services: Option<Vec<String>>,
    pub prepend: u8,
    pub med: Option<u32>,
    /// iBGP only.
    pub local_pref: Option<u32>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

/// What happens to routes the peer sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// Keep them (otherwise count and discard).
    pub enabled: bool,
    pub max_prefixes: Option<u32>,
    /// Past `max_prefixes`: close with a Cease and reconnect after `restart_after` (else warn).
    pub restart_on_max: bool,
    pub restart_after: Duration,
}

impl Default for Import {
    fn default() -> Self {
        Self {
            enabled: false,
            max_prefixes: None,
            restart_on_max: false,
            restart_after: Duration::from_secs(60),
        }
    }
}

impl PeerConfig {
    /// The state machine's settings for a session with this peer.
    pub fn fsm(&self, local: Open) -> FsmConfig {
        FsmConfig {
            local,
            remote_asn: self.remote_asn,
            passive: self.passive,
            keepalive: self.keepalive,
            connect_retry: self.connect_retry,
        }
    }
}
