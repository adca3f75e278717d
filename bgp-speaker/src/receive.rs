//! What we do with routes a peer sends us.
//!
//! By default nothing is kept: UPDATEs are parsed (so RFC 7606 errors are still handled and
//! counted) and discarded, in constant memory. With import enabled, an Adj-RIB-In keeps each
//! prefix with a reference to an interned attribute set: peers send few distinct attribute sets
//! and many prefixes, so a full table costs a few tens of bytes per route.

use config::site::{ImportPolicy, MaxPrefixAction, Peer};
use tracing::{info, warn};

use crate::adj_rib_in::AdjRibIn;
use crate::packet::Notification;
use crate::packet::notification::cease;
use crate::packet::open::Negotiated;
use crate::packet::update_rx::{ParsedAttrs, Prefix, RxContext, UpdateOutcome, parse_update};
use crate::route::{ShownRoute, origin_name};

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
    import: ImportPolicy,
    rib_in: AdjRibIn,
    announced_total: u64,
    withdrawn_total: u64,
    treat_as_withdraw_total: u64,
    attr_discard_total: u64,
    warned: bool,
}

impl Receiver {
    pub fn new(peer: &Peer) -> Self {
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

    pub fn counters(&self) -> (u64, u64, u64, u64) {
        (
            self.announced_total,
            self.withdrawn_total,
            self.treat_as_withdraw_total,
            self.attr_discard_total,
        )
    }

    /// The Adj-RIB-In for display, sorted by prefix.
    pub fn shown_routes(&self) -> Result<Vec<ShownRoute>, String> {
        if !self.import.enabled {
            return Err("import is disabled for this peer: received routes are counted, not kept (set import.enabled = true)".into());
        }
        Ok(self.rib_in.iter().map(|(p, a)| shown(&p, a)).collect())
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
        match self.import.on_max_prefixes {
            MaxPrefixAction::Warn => {
                if !self.warned {
                    warn!(count, limit, "peer exceeds its prefix limit");
                    self.warned = true;
                }
                Ok(())
            }
            MaxPrefixAction::Restart => {
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
        communities: a
            .communities
            .iter()
            .map(|c| config::types::Community(*c).to_string())
            .collect(),
        large_communities: a
            .large_communities
            .iter()
            .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
            .collect(),
    }
}
