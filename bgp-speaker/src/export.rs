//! Per-peer export policy: which of our routes go to a peer, and with which attributes.
//!
//! Upstreams use different community schemes and some are backup paths, so prepends,
//! communities and MED are applied per peer on top of what healthd asked for.

use std::net::IpAddr;

use config::types::Community;
use ipnet::IpNet;

use crate::rib::Originated;
use crate::route::WireAttrs;
use crate::session::peer::PeerConfig;

/// What export needs to know about one established session.
#[derive(Debug, Clone)]
pub struct ExportContext<'a> {
    pub peer: &'a PeerConfig,
    pub local_asn: u32,
    /// Our end of the TCP connection: the default next hop.
    pub local_addr: IpAddr,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
}

impl ExportContext<'_> {
    fn ibgp(&self) -> bool {
        self.peer.remote_asn == self.local_asn
    }

    /// The attributes `prefix` goes out with to this peer, or `None` when it is not exported.
    pub fn export(&self, prefix: &IpNet, route: &Originated) -> Option<WireAttrs> {
        if let (Some(allowed), Some(service)) = (&self.peer.export.services, &route.service)
            && !allowed.contains(service)
        {
            return None;
        }
        let attrs = route.effective_attrs();
        let next_hop = match prefix {
            IpNet::V4(_) if self.ipv4_unicast => attrs
                .next_hop
                .filter(IpAddr::is_ipv4)
                .or(self.peer.next_hop.map(IpAddr::V4))
                .or(Some(self.local_addr).filter(IpAddr::is_ipv4))?,
            IpNet::V6(_) if self.ipv6_unicast => attrs
                .next_hop
                .filter(IpAddr::is_ipv6)
                .or(self.peer.next_hop_v6.map(IpAddr::V6))
                .or(Some(self.local_addr).filter(IpAddr::is_ipv6))?,
            _ => return None,
        };
        if route.withdrawn_by_drain() {
            return None;
        }
        let draining = route.draining();
        let as_path = if self.ibgp() {
            Vec::new()
        } else {
            let copies = 1 + usize::from(attrs.prepend) + usize::from(self.peer.export.prepend);
            vec![self.local_asn; copies]
        };
        let local_pref = self.ibgp().then(|| {
            if draining {
                // RFC 8326 section 4: lower LOCAL_PREF to 0 towards iBGP peers while draining.
                0
            } else {
                attrs
                    .local_pref
                    .or(self.peer.export.local_pref)
                    .unwrap_or(100)
            }
        });
        let mut communities: Vec<u32> = attrs
            .communities
            .iter()
            .chain(&self.peer.export.communities)
            .map(|c: &Community| c.0)
            .collect();
        communities.sort_unstable();
        communities.dedup();
        let mut large: Vec<[u32; 3]> = attrs
            .large_communities
            .iter()
            .chain(&self.peer.export.large_communities)
            .map(|c| [c.global, c.local1, c.local2])
            .collect();
        large.sort_unstable();
        large.dedup();
        Some(WireAttrs {
            origin: attrs.origin,
            as_path,
            next_hop,
            med: attrs.med.or(self.peer.export.med),
            local_pref,
            communities,
            large_communities: large,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use speaker_control::RouteAttrs;

    fn peer(toml: &str) -> PeerConfig {
        let base = "name = \"r1\"\naddress = \"127.0.0.2\"\nremote_asn = 65000\n";
        let peer: config::site::Peer = toml::from_str(&format!("{base}{toml}")).unwrap();
        crate::speaker::peer_config(&peer)
    }

    fn route(attrs: RouteAttrs, service: Option<&str>) -> Originated {
        Originated {
            attrs,
            service: service.map(str::to_owned),
            expires: None,
            drain: None,
        }
    }

    fn ctx(peer: &PeerConfig) -> ExportContext<'_> {
        ExportContext {
            peer,
            local_asn: 65001,
            local_addr: "127.0.0.1".parse().unwrap(),
            ipv4_unicast: true,
            ipv6_unicast: true,
        }
    }

    #[test]
    fn ebgp_path_has_our_asn_with_route_and_peer_prepends() {
        let p = peer("export = { prepend = 2, communities = [\"65000:100\"] }\n");
        let attrs = RouteAttrs {
            prepend: 1,
            communities: vec![Community::new(65001, 7)],
            ..Default::default()
        };
        let w = ctx(&p)
            .export(&"198.51.100.0/24".parse().unwrap(), &route(attrs, None))
            .unwrap();
        assert_eq!(w.as_path, vec![65001; 4]);
        assert_eq!(w.next_hop, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            w.communities,
            vec![Community::new(65000, 100).0, Community::new(65001, 7).0]
        );
        assert_eq!(w.local_pref, None, "no LOCAL_PREF to eBGP peers");
    }

    #[test]
    fn services_not_exported_to_a_peer_are_filtered() {
        let p = peer("export = { services = [\"live\"] }\n");
        let prefix = "198.51.100.0/24".parse().unwrap();
        assert!(
            ctx(&p)
                .export(&prefix, &route(RouteAttrs::default(), Some("live")))
                .is_some()
        );
        assert!(
            ctx(&p)
                .export(&prefix, &route(RouteAttrs::default(), Some("vod")))
                .is_none()
        );
    }

    #[test]
    fn ipv6_over_ipv4_session_needs_a_configured_next_hop() {
        let prefix = "2001:db8:100::/48".parse().unwrap();
        let p = peer("");
        assert!(
            ctx(&p)
                .export(&prefix, &route(RouteAttrs::default(), None))
                .is_none()
        );
        let p = peer("next_hop_v6 = \"2001:db8::1\"\n");
        let w = ctx(&p)
            .export(&prefix, &route(RouteAttrs::default(), None))
            .unwrap();
        assert_eq!(w.next_hop, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn draining_routes_carry_graceful_shutdown_and_zero_local_pref_on_ibgp() {
        let p = peer("").clone();
        let mut ibgp = ctx(&p);
        ibgp.local_asn = 65000;
        let mut r = route(RouteAttrs::default(), None);
        r.drain = Some(crate::rib::DrainMark {
            by: "test".into(),
            at: std::time::SystemTime::now(),
            withdraw_at: std::time::Instant::now() + std::time::Duration::from_secs(30),
            withdrawn: false,
        });
        let w = ibgp
            .export(&"198.51.100.0/24".parse().unwrap(), &r)
            .unwrap();
        assert!(w.communities.contains(&Community::GRACEFUL_SHUTDOWN.0));
        assert_eq!(w.local_pref, Some(0));
        assert!(w.as_path.is_empty());
        r.drain.as_mut().unwrap().withdrawn = true;
        assert_eq!(
            ibgp.export(&"198.51.100.0/24".parse().unwrap(), &r),
            None,
            "withdrawn once the drain delay is over"
        );
    }
}
