//! What we do with routes a peer sends us.
//!
//! By default nothing is kept: UPDATEs are parsed (so RFC 7606 errors are still handled and
//! counted) and discarded, in constant memory. With import enabled, an Adj-RIB-In keeps each
//! prefix with a reference to an interned attribute set: peers send few distinct attribute sets
//! and many prefixes, so a full table costs a few tens of bytes per route.

use ipnet::IpNet;
use tracing::{info, warn};

use crate::adj_rib_in::AdjRibIn;
use crate::packet::Notification;
use crate::packet::notification::cease;
use crate::packet::open::Negotiated;
use crate::packet::update_rx::{Afi, ParsedAttrs, Prefix, RxContext, UpdateOutcome, parse_update};
use crate::route::{ShownRoute, community_names, large_community_names, origin_name};
use crate::session::peer::{Import, PeerConfig};

/// Why receiving must end the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveError {
    /// RFC 7606 says this UPDATE resets the session.
    Malformed(Notification),
    /// Too many prefixes, with `restart` configured: Cease, then reconnect later.
    MaxPrefixes(Notification),
}

/// Received routes and counters for one peer.
#[derive(Debug)]
pub struct Receiver {
    import: Import,
    rib_in: AdjRibIn,
    announced_total: u64,
    withdrawn_total: u64,
    treat_as_withdraw_total: u64,
    attr_discard_total: u64,
    warned: bool,
}

impl Receiver {
    pub fn new(peer: &PeerConfig) -> Self {
        Self {
            import: peer.import.clone(),
            rib_in: AdjRibIn::default(),
            announced_total: 0,
            withdrawn_total: 0,
            treat_as_withdraw_total: 0,
            attr_discard_total: 0,
            warned: false,
        }
    }

    /// Prefixes held (import enabled) or announced minus withdrawn so far (import disabled).
    pub fn prefix_count(&self) -> usize {
        if self.import.enabled {
            self.rib_in.len()
        } else {
            self.announced_total.saturating_sub(self.withdrawn_total) as usize
        }
    }

    /// Up to `limit` routes of the Adj-RIB-In after `after`, for display, in prefix order.
    pub fn shown_page(
        &self,
        after: Option<IpNet>,
        limit: usize,
    ) -> Result<Vec<(IpNet, ShownRoute)>, String> {
        if !self.import.enabled {
            return Err("import is disabled for this peer: received routes are counted, not kept (set import.enabled = true)".into());
        }
        let after = after.map(|net| Prefix::from(&net));
        Ok(self
            .rib_in
            .iter_after(after.as_ref())
            .take(limit)
            .filter_map(|(p, a)| Some((p.to_net()?, shown(&p, a))))
            .collect())
    }

    /// The session went down. With graceful restart negotiated and the connection lost (not
    /// closed with a NOTIFICATION), the routes are kept as stale for the peer's restart time
    /// (RFC 4724 section 4.2, helper mode); returns that time. Otherwise everything goes.
    pub fn session_down(
        &mut self,
        graceful_restart_time: Option<u16>,
    ) -> Option<std::time::Duration> {
        match graceful_restart_time {
            Some(secs) if self.import.enabled && !self.rib_in.is_empty() => {
                self.rib_in.mark_stale();
                info!(
                    routes = self.rib_in.len(),
                    secs, "peer restarting gracefully: keeping its routes as stale"
                );
                Some(std::time::Duration::from_secs(u64::from(secs)))
            }
            _ => {
                self.clear();
                None
            }
        }
    }

    /// The peer's restart time ran out without End-of-RIB: its stale routes go.
    pub fn restart_timer_expired(&mut self) {
        let gone = self.rib_in.sweep_stale(Afi::Ipv4) + self.rib_in.sweep_stale(Afi::Ipv6);
        if gone > 0 {
            warn!(
                gone,
                "peer did not finish its graceful restart in time: stale routes removed"
            );
        }
    }

    /// Forgets everything (session down).
    pub fn clear(&mut self) {
        self.rib_in = AdjRibIn::default();
        self.announced_total = 0;
        self.withdrawn_total = 0;
        self.warned = false;
    }

    /// Handles one UPDATE body.
    pub fn receive(
        &mut self,
        body: &[u8],
        negotiated: Option<&Negotiated>,
        local_asn: u32,
    ) -> Result<(), ReceiveError> {
        let ctx = RxContext {
            four_octet_as: negotiated.is_some_and(|n| n.four_octet_as),
            ibgp: negotiated.is_some_and(|n| n.peer_asn == local_asn),
            ipv4_unicast: negotiated.is_none_or(|n| n.ipv4_unicast),
            ipv6_unicast: negotiated.is_some_and(|n| n.ipv6_unicast),
        };
        if let Some(afi) = end_of_rib(body) {
            let gone = self.rib_in.sweep_stale(afi);
            if gone > 0 {
                info!(
                    gone,
                    ?afi,
                    "End-of-RIB: stale routes the peer did not announce again removed"
                );
            }
        }
        match parse_update(body, &ctx) {
            UpdateOutcome::SessionReset {
                subcode,
                data,
                reason,
            } => {
                warn!("malformed UPDATE resets the session: {reason}");
                Err(ReceiveError::Malformed(Notification::new(3, subcode, data)))
            }
            UpdateOutcome::TreatAsWithdraw { withdrawn, reason } => {
                self.treat_as_withdraw_total += 1;
                warn!(
                    prefixes = withdrawn.len(),
                    "malformed UPDATE treated as withdraw (RFC 7606): {}", reason.description
                );
                self.withdraw(&withdrawn);
                Ok(())
            }
            UpdateOutcome::Routes {
                announced,
                withdrawn,
                attrs,
                discarded,
            } => {
                for d in &discarded {
                    self.attr_discard_total += 1;
                    info!(
                        "attribute {} discarded (RFC 7606): {}",
                        d.code, d.description
                    );
                }
                self.withdraw(&withdrawn);
                self.announce(&announced, attrs)
            }
        }
    }

    fn withdraw(&mut self, prefixes: &[Prefix]) {
        self.withdrawn_total += prefixes.len() as u64;
        if self.import.enabled {
            for p in prefixes {
                self.rib_in.remove(p);
            }
        }
    }

    fn announce(&mut self, prefixes: &[Prefix], attrs: ParsedAttrs) -> Result<(), ReceiveError> {
        if prefixes.is_empty() {
            return Ok(());
        }
        self.announced_total += prefixes.len() as u64;
        if self.import.enabled {
            self.rib_in.insert(prefixes, &attrs);
        }
        self.check_limit()
    }

    fn check_limit(&mut self) -> Result<(), ReceiveError> {
        let Some(limit) = self.import.max_prefixes else {
            return Ok(());
        };
        let count = self.prefix_count();
        if count <= limit as usize {
            self.warned = false;
            return Ok(());
        }
        match self.import.restart_on_max {
            false => {
                if !self.warned {
                    warn!(count, limit, "peer exceeds its prefix limit");
                    self.warned = true;
                }
                Ok(())
            }
            true => {
                // RFC 4486 section 4: AFI, SAFI and the limit as data.
                let mut data = vec![0, 1, 1];
                data.extend_from_slice(&limit.to_be_bytes());
                Err(ReceiveError::MaxPrefixes(Notification::new(
                    6,
                    cease::MAX_PREFIXES,
                    data,
                )))
            }
        }
    }
}

fn shown(prefix: &Prefix, a: &ParsedAttrs) -> ShownRoute {
    let as_path = a
        .as_path
        .iter()
        .map(|seg| {
            let asns: Vec<String> = seg.asns.iter().map(ToString::to_string).collect();
            // AS_SET and AS_CONFED_SET in braces, as BIRD prints them.
            if seg.kind == 1 || seg.kind == 4 {
                format!("{{{}}}", asns.join(" "))
            } else {
                asns.join(" ")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let next_hop = match (a.next_hop, &a.mp_next_hop) {
        (Some(nh), _) => nh.to_string(),
        (None, Some(raw)) if raw.len() >= 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&raw[..16]);
            std::net::Ipv6Addr::from(b).to_string()
        }
        (None, Some(raw)) if raw.len() == 4 => {
            std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string()
        }
        _ => "-".into(),
    };
    ShownRoute {
        prefix: prefix.to_string(),
        origin: a.origin.map_or("-".into(), origin_name),
        as_path,
        next_hop,
        med: a.med,
        local_pref: a.local_pref,
        communities: community_names(&a.communities),
        large_communities: large_community_names(&a.large_communities),
    }
}

/// Recognises End-of-RIB markers (RFC 4724 section 2): an empty UPDATE for IPv4 unicast, an
/// UPDATE whose only attribute is an empty MP_UNREACH_NLRI for other families.
fn end_of_rib(body: &[u8]) -> Option<Afi> {
    let afi = match body {
        [0, 0, 0, 0] => return Some(Afi::Ipv4),
        // Optional attribute 15, with a 1- or 2-byte length, carrying only AFI/SAFI.
        [0, 0, 0, 6, flags, 15, 3, 0, afi, 1] if flags & 0x80 != 0 => afi,
        [0, 0, 0, 7, flags, 15, 0, 3, 0, afi, 1] if flags & 0x80 != 0 => afi,
        _ => return None,
    };
    match afi {
        1 => Some(Afi::Ipv4),
        2 => Some(Afi::Ipv6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_rib_markers_are_recognised() {
        assert_eq!(end_of_rib(&[0, 0, 0, 0]), Some(Afi::Ipv4));
        assert_eq!(
            end_of_rib(&[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]),
            Some(Afi::Ipv6)
        );
        assert_eq!(
            end_of_rib(&[0, 0, 0, 7, 0x90, 15, 0, 3, 0, 2, 1]),
            Some(Afi::Ipv6)
        );
        assert_eq!(end_of_rib(&[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 4]), None);
    }
}
