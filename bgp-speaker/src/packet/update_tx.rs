//! Outgoing UPDATE messages, encoded with `zettabgp`.
//!
//! Prefixes sharing the same attributes are packed into as few messages as fit in 4096 bytes;
//! IPv4 goes in the classic NLRI field, IPv6 in MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use zettabgp::prelude::*;

use super::{HEADER_LEN, MAX_MESSAGE_LEN, MessageType, frame};
use crate::packet::open::AS_TRANS;
use crate::route::{Origin, WireAttrs};

/// How the peer decodes what we send.
#[derive(Debug, Clone, Copy)]
pub struct TxContext {
    pub four_octet_as: bool,
}

fn params(ctx: TxContext) -> BgpSessionParams {
    let mut p = BgpSessionParams::new(
        0,
        0,
        BgpTransportMode::IPv4,
        Ipv4Addr::UNSPECIFIED,
        Vec::new(),
    );
    p.has_as32bit = ctx.four_octet_as;
    p
}

fn v4(prefix: &IpNet) -> Option<BgpAddrV4> {
    match prefix {
        IpNet::V4(p) => Some(BgpAddrV4::new(p.network(), p.prefix_len())),
        IpNet::V6(_) => None,
    }
}

fn v6(prefix: &IpNet) -> Option<BgpAddrV6> {
    match prefix {
        IpNet::V6(p) => Some(BgpAddrV6::new(p.network(), p.prefix_len())),
        IpNet::V4(_) => None,
    }
}

fn path_attrs(ctx: TxContext, attrs: &WireAttrs) -> Vec<BgpAttrItem> {
    let origin = match attrs.origin {
        Origin::Igp => BgpAttrOrigin::Igp,
        Origin::Egp => BgpAttrOrigin::Egp,
        Origin::Incomplete => BgpAttrOrigin::Incomplete,
    };
    let mut items = vec![BgpAttrItem::Origin(BgpOrigin::new(origin))];
    items.extend(as_path_attrs(&attrs.as_path, ctx.four_octet_as));
    if let Some(med) = attrs.med {
        items.push(BgpAttrItem::MED(BgpMED::new(med)));
    }
    if let Some(lp) = attrs.local_pref {
        items.push(BgpAttrItem::LocalPref(BgpLocalpref::new(lp)));
    }
    if !attrs.communities.is_empty() {
        let mut list = BgpCommunityList::new();
        list.value = attrs
            .communities
            .iter()
            .map(|c| BgpCommunity::new(*c))
            .collect::<BTreeSet<_>>();
        items.push(BgpAttrItem::CommunityList(list));
    }
    if !attrs.large_communities.is_empty() {
        let mut list = BgpLargeCommunityList::new();
        list.value = attrs
            .large_communities
            .iter()
            .map(|[ga, ldp1, ldp2]| BgpLargeCommunity {
                ga: *ga,
                ldp1: *ldp1,
                ldp2: *ldp2,
            })
            .collect();
        items.push(BgpAttrItem::LargeCommunityList(list));
    }
    items
}

/// Encodes AS_PATH segments of AS_SEQUENCE type (at most 255 ASNs each).
fn as_sequence(path: &[u32], four_octet: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in path.chunks(255) {
        out.push(2); // AS_SEQUENCE (RFC 4271 section 4.3)
        out.push(chunk.len() as u8);
        for asn in chunk {
            if four_octet {
                out.extend_from_slice(&asn.to_be_bytes());
            } else {
                let two = u16::try_from(*asn).unwrap_or(AS_TRANS);
                out.extend_from_slice(&two.to_be_bytes());
            }
        }
    }
    out
}

/// AS_PATH, plus AS4_PATH when a 2-octet peer cannot carry our 4-octet ASNs (RFC 6793 s. 4.2.2).
///
/// Built by hand and passed to `zettabgp` as a raw attribute: zettabgp 0.6 writes segment type
/// 1 (AS_SET) for its `Seq` variant, which peers read as an AS_SET, and its AS_SET type dedups,
/// so prepends could not be expressed through it.
fn as_path_attrs(path: &[u32], four_octet: bool) -> Vec<BgpAttrItem> {
    let raw = |code: u8, flags: u8, value: Vec<u8>| {
        let mut attr = BgpAttrUnknown::new(code, flags);
        attr.value = value;
        BgpAttrItem::Unknown(attr)
    };
    // Well-known transitive; optional transitive for AS4_PATH.
    let mut items = vec![raw(2, 0x40, as_sequence(path, four_octet))];
    if !four_octet && path.iter().any(|a| *a > u32::from(u16::MAX)) {
        items.push(raw(17, 0xC0, as_sequence(path, true)));
    }
    items
}

/// Encodes one UPDATE, or `None` when it does not fit in a message.
fn encode(ctx: TxContext, msg: &BgpUpdateMessage) -> Option<Vec<u8>> {
    // Encode into a buffer far larger than any message so zettabgp never runs out of room,
    // then enforce the real limit ourselves.
    let mut body = vec![0u8; 4 * MAX_MESSAGE_LEN];
    let len = msg.encode_to(&params(ctx), &mut body).ok()?;
    (HEADER_LEN + len <= MAX_MESSAGE_LEN).then(|| frame(MessageType::Update, &body[..len]))
}

/// Splits `items` into chunks that each encode to one message, halving on overflow.
fn chunked<T: Clone>(items: &[T], build: &dyn Fn(&[T]) -> Option<Vec<u8>>, out: &mut Vec<Vec<u8>>) {
    if items.is_empty() {
        return;
    }
    // Start optimistic: 700 IPv4 /24s fit in one message with typical attributes.
    let mut start = 0;
    let mut size = items.len().min(700);
    while start < items.len() {
        let end = (start + size).min(items.len());
        match build(&items[start..end]) {
            Some(msg) => {
                out.push(msg);
                start = end;
            }
            None if size > 1 => size /= 2,
            // A single prefix that does not fit means the attributes alone are too big.
            None => start = end,
        }
    }
}

/// UPDATEs announcing `prefixes` with `attrs`.
pub fn announce(ctx: TxContext, attrs: &WireAttrs, prefixes: &[IpNet]) -> Vec<Vec<u8>> {
    let v4s: Vec<BgpAddrV4> = prefixes.iter().filter_map(v4).collect();
    let v6s: Vec<BgpAddrV6> = prefixes.iter().filter_map(v6).collect();
    let mut out = Vec::new();
    let base = path_attrs(ctx, attrs);
    if !v4s.is_empty() {
        let next_hop = match attrs.next_hop {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let build = |chunk: &[BgpAddrV4]| {
            let mut attrs = base.clone();
            attrs.push(BgpAttrItem::NextHop(BgpNextHop::new(IpAddr::V4(next_hop))));
            let msg = BgpUpdateMessage {
                updates: BgpAddrs::IPV4U(chunk.to_vec()),
                withdraws: BgpAddrs::None,
                attrs,
            };
            encode(ctx, &msg)
        };
        chunked(&v4s, &build, &mut out);
    }
    if !v6s.is_empty() {
        let next_hop = match attrs.next_hop {
            IpAddr::V6(a) => a,
            // An IPv4 session address as IPv6 next hop: the IPv4-mapped form (RFC 4291).
            IpAddr::V4(a) => a.to_ipv6_mapped(),
        };
        let build = |chunk: &[BgpAddrV6]| {
            let mut attrs = base.clone();
            attrs.push(BgpAttrItem::MPUpdates(BgpMPUpdates {
                nexthop: BgpAddr::V6(next_hop),
                addrs: BgpAddrs::IPV6U(chunk.to_vec()),
            }));
            let msg = BgpUpdateMessage {
                updates: BgpAddrs::None,
                withdraws: BgpAddrs::None,
                attrs,
            };
            encode(ctx, &msg)
        };
        chunked(&v6s, &build, &mut out);
    }
    out
}

/// UPDATEs withdrawing `prefixes`.
pub fn withdraw(ctx: TxContext, prefixes: &[IpNet]) -> Vec<Vec<u8>> {
    let v4s: Vec<BgpAddrV4> = prefixes.iter().filter_map(v4).collect();
    let v6s: Vec<BgpAddrV6> = prefixes.iter().filter_map(v6).collect();
    let mut out = Vec::new();
    let build4 = |chunk: &[BgpAddrV4]| {
        let msg = BgpUpdateMessage {
            updates: BgpAddrs::None,
            withdraws: BgpAddrs::IPV4U(chunk.to_vec()),
            attrs: vec![],
        };
        encode(ctx, &msg)
    };
    chunked(&v4s, &build4, &mut out);
    let build6 = |chunk: &[BgpAddrV6]| {
        let msg = BgpUpdateMessage {
            updates: BgpAddrs::None,
            withdraws: BgpAddrs::None,
            attrs: vec![BgpAttrItem::MPWithdraws(BgpMPWithdraws::new(
                BgpAddrs::IPV6U(chunk.to_vec()),
            ))],
        };
        encode(ctx, &msg)
    };
    chunked(&v6s, &build6, &mut out);
    out
}

/// End-of-RIB markers (RFC 4724 section 2) for the negotiated families.
pub fn end_of_rib(ipv4: bool, ipv6: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if ipv4 {
        // An UPDATE with no withdrawn routes, no attributes and no NLRI.
        out.push(frame(MessageType::Update, &[0, 0, 0, 0]));
    }
    if ipv6 {
        // MP_UNREACH_NLRI for IPv6 unicast with no prefixes: flags optional, type 15, len 3.
        out.push(frame(
            MessageType::Update,
            &[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1],
        ));
    }
    out
}

/// Unused-address guard: an IPv6 next hop of `::` is never valid to send.
pub fn usable_v6_next_hop(addr: Ipv6Addr) -> bool {
    !addr.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::next_message;

    fn attrs() -> WireAttrs {
        WireAttrs {
            origin: Origin::Igp,
            as_path: vec![65001, 65001, 65001],
            next_hop: "192.0.2.1".parse().unwrap(),
            med: Some(10),
            local_pref: None,
            communities: vec![(65000 << 16) | 100],
            large_communities: vec![[65000, 1, 2]],
        }
    }

    #[test]
    fn announces_fit_in_messages() {
        let prefixes: Vec<IpNet> = (0..5000u32)
            .map(|i| {
                IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
            })
            .collect();
        let msgs = announce(
            TxContext {
                four_octet_as: true,
            },
            &attrs(),
            &prefixes,
        );
        assert!(msgs.len() >= 5000 * 4 / 4000);
        for m in &msgs {
            assert!(m.len() <= MAX_MESSAGE_LEN);
            assert_eq!(next_message(m).unwrap().unwrap().1, m.len());
        }
    }

    #[test]
    fn ipv6_goes_in_mp_reach() {
        let p: IpNet = "2001:db8:100::/48".parse().unwrap();
        let mut a = attrs();
        a.next_hop = "2001:db8::1".parse().unwrap();
        let msgs = announce(
            TxContext {
                four_octet_as: true,
            },
            &a,
            &[p],
        );
        assert_eq!(msgs.len(), 1);
        // MP_REACH_NLRI type code 14 appears, no classic NLRI follows the attributes.
        assert!(msgs[0].windows(2).any(|w| w[1] == 14 && (w[0] & 0x80) != 0));
        let w = withdraw(
            TxContext {
                four_octet_as: true,
            },
            &[p],
        );
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn as_path_is_an_as_sequence_with_every_prepend() {
        let wire = as_sequence(&[65001, 65001, 65001], true);
        assert_eq!(wire[..2], [2, 3]);
        assert_eq!(wire.len(), 2 + 12);
        let two = as_sequence(&[4_200_000_000, 65001], false);
        assert_eq!(two, vec![2, 2, 0x5b, 0xa0, 0xfd, 0xe9]);
        assert_eq!(
            as_path_attrs(&[4_200_000_000], false).len(),
            2,
            "AS4_PATH added"
        );
    }

    #[test]
    fn end_of_rib_markers_are_well_formed() {
        for m in end_of_rib(true, true) {
            assert_eq!(next_message(&m).unwrap().unwrap().1, m.len());
        }
    }
}
