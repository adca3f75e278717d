//! OPEN messages and capability negotiation (RFC 4271 section 4.2, RFC 5492).
//!
//! Encoding and capability parsing use `zettabgp`; the checks that decide which OPEN Message
//! Error a peer gets (section 6.2) are ours.

use std::net::Ipv4Addr;

use zettabgp::prelude::{
    BgpCapGR, BgpCapability, BgpMessage, BgpOpenMessage, BgpSessionParams, BgpTransportMode,
};

use super::{MessageType, Notification, frame};

/// AS_TRANS (RFC 6793): the 2-octet AS field of a speaker whose ASN does not fit.
pub const AS_TRANS: u16 = 23456;

/// Capabilities we advertise or a peer advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// The 4-octet AS number (RFC 6793), when the capability is present.
    pub four_octet_as: Option<u32>,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// Graceful restart (RFC 4724), when advertised.
    pub graceful_restart: Option<GracefulRestart>,
    /// Capabilities we do not use, by code (reported, otherwise ignored: RFC 5492 section 3).
    pub other: Vec<String>,
}

/// The graceful restart capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GracefulRestart {
    pub restart_time: u16,
    /// The R bit: the sender has just restarted.
    pub restarting: bool,
    /// (AFI, SAFI, forwarding preserved) per family.
    pub families: Vec<(u16, u8, bool)>,
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The speaker's ASN (the 4-octet one when the capability is present).
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub caps: Capabilities,
}

fn session_params() -> BgpSessionParams {
    BgpSessionParams::new(
        0,
        0,
        BgpTransportMode::IPv4,
        Ipv4Addr::UNSPECIFIED,
        Vec::new(),
    )
}

impl Open {
    /// The wire form, header included.
    pub fn encode(&self) -> Vec<u8> {
        let mut caps = Vec::new();
        if self.caps.ipv4_unicast {
            caps.push(BgpCapability::SafiIPv4u);
        }
        if self.caps.ipv6_unicast {
            caps.push(BgpCapability::SafiIPv6u);
        }
        if self.caps.route_refresh {
            caps.push(BgpCapability::CapRR);
        }
        if self.caps.enhanced_route_refresh {
            caps.push(BgpCapability::CapEnhancedRR);
        }
        caps.push(BgpCapability::CapASN32(self.asn));
        if let Some(gr) = &self.caps.graceful_restart {
            caps.push(BgpCapability::CapGR {
                restart_time: gr.restart_time,
                restart_state: gr.restarting,
                afis: gr
                    .families
                    .iter()
                    .map(|(afi, safi, fwd)| BgpCapGR {
                        afi: *afi,
                        safi: *safi,
                        forwarding_state: *fwd,
                    })
                    .collect(),
            });
        }
        let msg = BgpOpenMessage {
            as_num: self.asn,
            hold_time: self.hold_time,
            router_id: self.router_id,
            caps,
        };
        let mut body = [0u8; 1024];
        // A handful of capabilities always fits; zettabgp reports any overflow as an error.
        let len = msg.encode_to(&session_params(), &mut body).unwrap_or(0);
        frame(MessageType::Open, &body[..len])
    }

    /// Decodes an OPEN body (after the header); errors are the NOTIFICATION to send.
    pub fn decode(body: &[u8]) -> Result<Self, Notification> {
        if body.len() < 10 {
            return Err(Notification::new(
                1,
                2,
                ((body.len() + 19) as u16).to_be_bytes().to_vec(),
            ));
        }
        if body[0] != 4 {
            // Data: the largest version we support (section 6.2).
            return Err(Notification::new(2, 1, vec![0, 4]));
        }
        let opt_len = usize::from(body[9]);
        if 10 + opt_len != body.len() {
            return Err(Notification::new(
                1,
                2,
                ((body.len() + 19) as u16).to_be_bytes().to_vec(),
            ));
        }
        // Capabilities are read here rather than by zettabgp: its OPEN decoder does not check
        // parameter lengths, and it rejects the whole OPEN when a hostname capability carries
        // a domain name, which would keep sessions with such routers from ever coming up.
        let mut caps = Capabilities::default();
        let mut pos = 10;
        while pos < body.len() {
            let (Some(&ptype), Some(&plen)) = (body.get(pos), body.get(pos + 1)) else {
                return Err(Notification::new(2, 0, Vec::new()));
            };
            if ptype != 2 {
                // Only the Capabilities parameter exists (RFC 5492); others are unsupported.
                return Err(Notification::new(2, 4, Vec::new()));
            }
            let end = pos + 2 + usize::from(plen);
            let Some(mut params) = body.get(pos + 2..end) else {
                return Err(Notification::new(2, 0, Vec::new()));
            };
            while let [code, len, rest @ ..] = params {
                let Some(value) = rest.get(..usize::from(*len)) else {
                    return Err(Notification::new(2, 0, Vec::new()));
                };
                capability(&mut caps, *code, value);
                params = &rest[usize::from(*len)..];
            }
            if !params.is_empty() {
                return Err(Notification::new(2, 0, Vec::new()));
            }
            pos = end;
        }
        let two_octet_as = u32::from(u16::from_be_bytes([body[1], body[2]]));
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        let asn = caps.four_octet_as.unwrap_or(two_octet_as);
        Ok(Self {
            asn,
            hold_time,
            router_id,
            caps,
        })
    }
}

/// Records one capability (RFC 5492 section 4); unknown or malformed ones are noted and ignored.
fn capability(caps: &mut Capabilities, code: u8, value: &[u8]) {
    match (code, value) {
        // Multiprotocol extensions (RFC 4760): AFI, reserved, SAFI.
        (1, [0, 1, _, 1]) => caps.ipv4_unicast = true,
        (1, [0, 2, _, 1]) => caps.ipv6_unicast = true,
        (2, []) => caps.route_refresh = true,
        (70, []) => caps.enhanced_route_refresh = true,
        (65, [a, b, c, d]) => caps.four_octet_as = Some(u32::from_be_bytes([*a, *b, *c, *d])),
        // Graceful restart (RFC 4724 section 3): R bit and restart time, then families.
        (64, [flags, time, families @ ..]) if families.len() % 4 == 0 => {
            caps.graceful_restart = Some(GracefulRestart {
                restart_time: u16::from_be_bytes([flags & 0x0F, *time]),
                restarting: flags & 0x80 != 0,
                families: families
                    .chunks_exact(4)
                    .map(|f| (u16::from_be_bytes([f[0], f[1]]), f[2], f[3] & 0x80 != 0))
                    .collect(),
            })
        }
        _ => caps
            .other
            .push(format!("capability {code} ({} bytes)", value.len())),
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    /// Hold time in seconds; 0 disables keepalives and the hold timer.
    pub hold_time: u16,
    pub keepalive: u16,
    pub four_octet_as: bool,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    pub route_refresh: bool,
    /// The peer's graceful restart capability, when both sides advertised one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    pub peer_router_id: Ipv4Addr,
    pub peer_asn: u32,
}

/// Checks a received OPEN against what we expect (section 6.2) and negotiates the session.
pub fn negotiate(
    ours: &Open,
    theirs: &Open,
    expected_asn: u32,
    keepalive: Option<u16>,
) -> Result<Negotiated, Notification> {
    if theirs.asn != expected_asn {
        return Err(Notification::new(2, 2, Vec::new()));
    }
    if theirs.router_id.is_unspecified()
        || (theirs.router_id == ours.router_id && theirs.asn == ours.asn)
    {
        return Err(Notification::new(2, 3, Vec::new()));
    }
    if theirs.hold_time == 1 || theirs.hold_time == 2 {
        return Err(Notification::new(2, 6, Vec::new()));
    }
    let hold_time = ours.hold_time.min(theirs.hold_time);
    let keepalive = match (hold_time, keepalive) {
        (0, _) => 0,
        (h, Some(k)) => k.min(h / 3).max(1),
        (h, None) => (h / 3).max(1),
    };
    // Without multiprotocol capabilities on either side, IPv4 unicast is implied (RFC 4760 s. 8).
    let mp = |c: &Capabilities| c.ipv4_unicast || c.ipv6_unicast;
    let v4 = if mp(&ours.caps) && mp(&theirs.caps) {
        ours.caps.ipv4_unicast && theirs.caps.ipv4_unicast
    } else {
        true
    };
    Ok(Negotiated {
        hold_time,
        keepalive,
        four_octet_as: theirs.caps.four_octet_as.is_some(),
        ipv4_unicast: v4,
        ipv6_unicast: ours.caps.ipv6_unicast && theirs.caps.ipv6_unicast,
        route_refresh: theirs.caps.route_refresh,
        peer_graceful_restart: ours
            .caps
            .graceful_restart
            .as_ref()
            .and(theirs.caps.graceful_restart.clone()),
        peer_router_id: theirs.router_id,
        peer_asn: theirs.asn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Open {
        Open {
            asn: 4_200_000_001,
            hold_time: 9,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            caps: Capabilities {
                ipv4_unicast: true,
                ipv6_unicast: true,
                route_refresh: true,
                graceful_restart: Some(GracefulRestart {
                    restart_time: 120,
                    restarting: false,
                    families: vec![(1, 1, true), (2, 1, true)],
                }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn open_round_trips_with_four_octet_asn() {
        let wire = ours().encode();
        // The 2-octet field carries AS_TRANS.
        assert_eq!(&wire[20..22], &AS_TRANS.to_be_bytes());
        let back = Open::decode(&wire[19..]).unwrap();
        assert_eq!(back.asn, 4_200_000_001);
        assert!(back.caps.ipv6_unicast && back.caps.route_refresh);
        assert_eq!(
            back.caps.graceful_restart.as_ref().unwrap().families.len(),
            2
        );
    }

    /// An OPEN laid out the way BIRD 2 sends one: every capability in one optional parameter
    /// (MP v4, route refresh, extended message, GR, AS4, enhanced RR, long-lived GR, hostname).
    #[test]
    fn decodes_a_bird_style_open() {
        let body: Vec<u8> = vec![
            0x04, 0xfd, 0xe8, 0x00, 0xf0, 0x7f, 0x00, 0x00, 0x02, 0x20, 0x02, 0x1e, 0x01, 0x04,
            0x00, 0x01, 0x00, 0x01, 0x02, 0x00, 0x06, 0x00, 0x40, 0x02, 0x00, 0x78, 0x41, 0x04,
            0x00, 0x00, 0xfd, 0xe8, 0x46, 0x00, 0x47, 0x00, 0x49, 0x04, 0x02, 0x68, 0x6f, 0x00,
        ];
        let open = Open::decode(&body).unwrap();
        assert_eq!(open.asn, 65000);
        assert_eq!(open.hold_time, 240);
        assert_eq!(open.router_id, Ipv4Addr::new(127, 0, 0, 2));
        assert!(open.caps.ipv4_unicast);
        assert_eq!(open.caps.four_octet_as, Some(65000));
        assert!(open.caps.graceful_restart.is_some());
    }

    #[test]
    fn hostname_capability_with_a_domain_does_not_break_the_open() {
        // MP v4, AS4 65000, hostname "r1" domain "example.net" (as FRR sends with `domainname`).
        let mut caps = vec![
            1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfd, 0xe8, 73, 15, 2, b'r', b'1', 11,
        ];
        caps.extend_from_slice(b"example.net");
        let mut body = vec![
            4,
            0xfd,
            0xe8,
            0,
            90,
            10,
            0,
            0,
            2,
            (caps.len() + 2) as u8,
            2,
            caps.len() as u8,
        ];
        body.extend_from_slice(&caps);
        let open = Open::decode(&body).unwrap();
        assert_eq!(open.asn, 65000);
        assert!(open.caps.ipv4_unicast);
        assert_eq!(open.caps.other.len(), 1);
    }

    #[test]
    fn negotiation_takes_the_smaller_hold_time() {
        let mut theirs = ours();
        theirs.router_id = Ipv4Addr::new(10, 0, 0, 2);
        theirs.asn = 65000;
        theirs.hold_time = 90;
        theirs.caps.four_octet_as = Some(65000);
        let n = negotiate(&ours(), &theirs, 65000, None).unwrap();
        assert_eq!((n.hold_time, n.keepalive), (9, 3));
        assert!(n.ipv6_unicast && n.four_octet_as);
    }

    #[test]
    fn wrong_peer_as_and_bad_hold_time_are_refused() {
        let mut theirs = ours();
        theirs.router_id = Ipv4Addr::new(10, 0, 0, 2);
        theirs.asn = 65000;
        assert_eq!(
            negotiate(&ours(), &theirs, 65001, None).unwrap_err(),
            Notification::new(2, 2, vec![])
        );
        theirs.hold_time = 2;
        assert_eq!(
            negotiate(&ours(), &theirs, 65000, None).unwrap_err(),
            Notification::new(2, 6, vec![])
        );
    }

    #[test]
    fn malformed_opens_get_notifications_not_panics() {
        assert_eq!(
            Open::decode(&[3, 0, 1, 0, 9, 1, 2, 3, 4, 0])
                .unwrap_err()
                .subcode,
            1
        );
        // Optional parameters length pointing past the end.
        assert_eq!(
            Open::decode(&[4, 0, 1, 0, 9, 1, 2, 3, 4, 5, 2])
                .unwrap_err()
                .code,
            1
        );
        // A capability whose length runs past its parameter.
        assert!(Open::decode(&[4, 0, 1, 0, 9, 1, 2, 3, 4, 4, 2, 2, 65, 9]).is_err());
        for len in 0..40 {
            let _ = Open::decode(&ours().encode()[19..19 + len.min(ours().encode().len() - 19)]);
        }
    }
}
