//! Received UPDATE messages, parsed with RFC 7606 revised error handling.
//!
//! A malformed UPDATE must not take down a session that carries a whole table when the damage is
//! local to some routes, so each error gets the mildest treatment that is still safe:
//!
//! * **attribute discard** – the attribute is dropped, the routes are kept (it cannot change
//!   route selection: ATOMIC_AGGREGATE, AGGREGATOR, AS4_*, iBGP-only attributes from eBGP);
//! * **treat-as-withdraw** – every prefix in the message is withdrawn (the attributes cannot be
//!   trusted, but the NLRI can still be found);
//! * **session reset** – the NLRI cannot be located reliably (inconsistent lengths, malformed
//!   MP_REACH_NLRI/MP_UNREACH_NLRI, bad prefixes), so a NOTIFICATION is the only safe answer.
//!
//! When several errors occur the most severe wins (section 3h). This is a hand-written parser
//! rather than `zettabgp`'s: it must classify every error per attribute and still recover the
//! NLRI, which an all-or-nothing decoder cannot do, and it must never panic on any input.

use std::net::Ipv4Addr;

/// What the session negotiated that changes how an UPDATE is read.
#[derive(Debug, Clone, Copy)]
pub struct RxContext {
    pub four_octet_as: bool,
    pub ibgp: bool,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
}

/// Address family of a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

/// A received prefix: the address padded to 16 bytes, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub afi: Afi,
    pub len: u8,
    pub addr: [u8; 16],
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.afi {
            Afi::Ipv4 => write!(
                f,
                "{}/{}",
                Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3]),
                self.len
            ),
            Afi::Ipv6 => write!(f, "{}/{}", std::net::Ipv6Addr::from(self.addr), self.len),
        }
    }
}

impl From<&ipnet::IpNet> for Prefix {
    fn from(net: &ipnet::IpNet) -> Self {
        match net {
            ipnet::IpNet::V4(n) => {
                let mut addr = [0u8; 16];
                addr[..4].copy_from_slice(&n.network().octets());
                Self {
                    afi: Afi::Ipv4,
                    len: n.prefix_len(),
                    addr,
                }
            }
            ipnet::IpNet::V6(n) => Self {
                afi: Afi::Ipv6,
                len: n.prefix_len(),
                addr: n.network().octets(),
            },
        }
    }
}

impl Prefix {
    /// As an `IpNet`; `None` for a length past the family's (never stored).
    pub fn to_net(&self) -> Option<ipnet::IpNet> {
        match self.afi {
            Afi::Ipv4 => {
                let a = Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3]);
                ipnet::Ipv4Net::new(a, self.len).ok().map(ipnet::IpNet::V4)
            }
            Afi::Ipv6 => ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(self.addr), self.len)
                .ok()
                .map(ipnet::IpNet::V6),
        }
    }
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    /// 1 AS_SET, 2 AS_SEQUENCE, 3 AS_CONFED_SEQUENCE, 4 AS_CONFED_SET.
    pub kind: u8,
    pub asns: Vec<u32>,
}

/// An attribute kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttr {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

/// Why an attribute was discarded or the message treated as withdraw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    pub code: u8,
    pub description: String,
}

/// Path attributes of a valid UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedAttrs {
    pub origin: Option<u8>,
    pub as_path: Vec<AsSegment>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    /// MP_REACH_NLRI next hop as received (16 or 32 bytes for IPv6).
    pub mp_next_hop: Option<Vec<u8>>,
    /// Every other attribute, raw.
    pub other: Vec<RawAttr>,
    /// The attribute bytes minus MP_REACH/MP_UNREACH, plus the MP next hop: identical for
    /// routes that share attributes, so callers can intern on it.
    pub raw: Vec<u8>,
}

/// The result of parsing one UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Routes {
        announced: Vec<Prefix>,
        withdrawn: Vec<Prefix>,
        attrs: ParsedAttrs,
        discarded: Vec<AttrError>,
    },
    TreatAsWithdraw {
        withdrawn: Vec<Prefix>,
        reason: AttrError,
    },
    /// Send NOTIFICATION UPDATE Message Error (3) with this subcode and data.
    SessionReset {
        subcode: u8,
        data: Vec<u8>,
        reason: String,
    },
}

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED: u8 = 0x10;

mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH: u8 = 14;
    pub const MP_UNREACH: u8 = 15;
    pub const EXT_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Subcodes of UPDATE Message Error used for session resets.
mod subcode {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
}

/// Severity ladder of section 3h.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Fine,
    Withdraw(AttrError),
    Reset {
        subcode: u8,
        data: Vec<u8>,
        reason: String,
    },
}

impl Verdict {
    fn withdraw(&mut self, code: u8, description: impl Into<String>) {
        if *self == Verdict::Fine {
            *self = Verdict::Withdraw(AttrError {
                code,
                description: description.into(),
            });
        }
    }

    fn reset(&mut self, subcode: u8, data: Vec<u8>, reason: impl Into<String>) {
        if !matches!(self, Verdict::Reset { .. }) {
            *self = Verdict::Reset {
                subcode,
                data,
                reason: reason.into(),
            };
        }
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses a run of prefixes (RFC 4271 section 4.3 encoding). `None` when malformed.
fn parse_prefixes(mut buf: &[u8], afi: Afi) -> Option<Vec<Prefix>> {
    let max = match afi {
        Afi::Ipv4 => 32,
        Afi::Ipv6 => 128,
    };
    let mut out = Vec::with_capacity(buf.len() / 4);
    while let Some((&len, rest)) = buf.split_first() {
        if len > max {
            return None;
        }
        let bytes = usize::from(len).div_ceil(8);
        let body = rest.get(..bytes)?;
        let mut addr = [0u8; 16];
        addr[..bytes].copy_from_slice(body);
        // Clear bits past the length so equal prefixes compare equal.
        if len % 8 != 0 {
            addr[bytes - 1] &= 0xFFu8 << (8 - len % 8);
        }
        out.push(Prefix { afi, len, addr });
        buf = &rest[bytes..];
    }
    Some(out)
}

/// One attribute located in the attribute block.
struct Located<'a> {
    flags: u8,
    code: u8,
    value: &'a [u8],
    /// The attribute as on the wire (header included), for NOTIFICATION data.
    wire: &'a [u8],
}

/// Splits the attribute block into attributes. Framing errors (section 4) are treat-as-withdraw:
/// the NLRI is still found through the Total Path Attribute Length.
fn locate<'a>(mut block: &'a [u8], verdict: &mut Verdict) -> Vec<Located<'a>> {
    let mut out = Vec::new();
    while !block.is_empty() {
        let Some(&[flags, code]) = block.get(..2) else {
            verdict.withdraw(0, "attribute list ends inside an attribute header");
            break;
        };
        let (header, len) = if flags & EXTENDED != 0 {
            match block.get(2..4) {
                Some(l) => (4, usize::from(be16(l))),
                None => {
                    verdict.withdraw(code, "attribute list ends inside an attribute header");
                    break;
                }
            }
        } else {
            match block.get(2) {
                Some(l) => (3, usize::from(*l)),
                None => {
                    verdict.withdraw(code, "attribute list ends inside an attribute header");
                    break;
                }
            }
        };
        let Some(value) = block.get(header..header + len) else {
            verdict.withdraw(
                code,
                format!("attribute {code} length {len} runs past the attribute list"),
            );
            break;
        };
        out.push(Located {
            flags,
            code,
            value,
            wire: &block[..header + len],
        });
        block = &block[header + len..];
    }
    out
}

/// Parses an UPDATE body (after the 19-byte header).
pub fn parse_update(body: &[u8], ctx: &RxContext) -> UpdateOutcome {
    let reset = |subcode: u8, reason: &str| UpdateOutcome::SessionReset {
        subcode,
        data: Vec::new(),
        reason: reason.to_owned(),
    };
    let Some(wlen) = body.get(..2).map(be16).map(usize::from) else {
        return reset(
            subcode::MALFORMED_ATTRIBUTE_LIST,
            "UPDATE too short for the withdrawn routes length",
        );
    };
    let Some(withdrawn_field) = body.get(2..2 + wlen) else {
        return reset(
            subcode::MALFORMED_ATTRIBUTE_LIST,
            "withdrawn routes length exceeds the message",
        );
    };
    let Some(alen) = body.get(2 + wlen..4 + wlen).map(be16).map(usize::from) else {
        return reset(
            subcode::MALFORMED_ATTRIBUTE_LIST,
            "UPDATE too short for the path attribute length",
        );
    };
    let Some(block) = body.get(4 + wlen..4 + wlen + alen) else {
        return reset(
            subcode::MALFORMED_ATTRIBUTE_LIST,
            "total path attribute length exceeds the message",
        );
    };
    let nlri_field = &body[4 + wlen + alen..];

    // Section 5.3: prefixes we cannot parse mean we cannot find the routes: session reset.
    let Some(mut withdrawn) = parse_prefixes(withdrawn_field, Afi::Ipv4) else {
        return reset(
            subcode::INVALID_NETWORK_FIELD,
            "malformed prefix in withdrawn routes",
        );
    };
    let Some(mut announced) = parse_prefixes(nlri_field, Afi::Ipv4) else {
        return reset(subcode::INVALID_NETWORK_FIELD, "malformed prefix in NLRI");
    };

    let mut verdict = Verdict::Fine;
    let located = locate(block, &mut verdict);
    let mut attrs = ParsedAttrs::default();
    let mut discarded = Vec::new();
    let mut seen = [false; 256];
    let classic_nlri = !announced.is_empty();

    for attr in &located {
        let first = !std::mem::replace(&mut seen[usize::from(attr.code)], true);
        if !first {
            // Section 3g: duplicate MP attributes reset; other duplicates keep the first.
            if matches!(attr.code, code::MP_REACH | code::MP_UNREACH) {
                verdict.reset(
                    subcode::MALFORMED_ATTRIBUTE_LIST,
                    Vec::new(),
                    format!("attribute {} appears twice", attr.code),
                );
            } else {
                discarded.push(AttrError {
                    code: attr.code,
                    description: "duplicate attribute discarded".into(),
                });
            }
            continue;
        }
        if matches!(attr.code, code::MP_REACH | code::MP_UNREACH)
            && !flags_ok(attr.flags, true, false)
        {
            // Section 3c: wrong flags make the attribute malformed, but its prefixes can still
            // be found, so they are withdrawn rather than the session reset.
            verdict.withdraw(
                attr.code,
                "MP_REACH_NLRI/MP_UNREACH_NLRI with wrong attribute flags",
            );
        }
        match attr.code {
            code::MP_REACH => match parse_mp_reach(attr, ctx) {
                Ok((next_hop, prefixes)) => {
                    attrs.mp_next_hop = Some(next_hop);
                    announced.extend(prefixes);
                }
                Err(reason) => verdict.reset(
                    subcode::OPTIONAL_ATTRIBUTE_ERROR,
                    attr.wire.to_vec(),
                    reason,
                ),
            },
            code::MP_UNREACH => match parse_mp_unreach(attr) {
                Ok(prefixes) => withdrawn.extend(prefixes),
                Err(reason) => verdict.reset(
                    subcode::OPTIONAL_ATTRIBUTE_ERROR,
                    attr.wire.to_vec(),
                    reason,
                ),
            },
            _ => attribute(
                attr,
                ctx,
                classic_nlri,
                &mut attrs,
                &mut verdict,
                &mut discarded,
            ),
        }
        if !matches!(attr.code, code::MP_REACH | code::MP_UNREACH) {
            attrs.raw.extend_from_slice(attr.wire);
        }
    }
    if let Some(nh) = &attrs.mp_next_hop {
        attrs.raw.extend_from_slice(nh);
    }

    // Section 3d: missing well-known mandatory attributes when there is something to install.
    if !announced.is_empty() {
        let mut missing = Vec::new();
        if !seen[usize::from(code::ORIGIN)] {
            missing.push("ORIGIN");
        }
        if !seen[usize::from(code::AS_PATH)] {
            missing.push("AS_PATH");
        }
        if classic_nlri && !seen[usize::from(code::NEXT_HOP)] {
            missing.push("NEXT_HOP");
        }
        if ctx.ibgp && !seen[usize::from(code::LOCAL_PREF)] {
            missing.push("LOCAL_PREF");
        }
        if !missing.is_empty() {
            verdict.withdraw(
                0,
                format!("missing well-known attribute(s): {}", missing.join(", ")),
            );
        }
    }

    match verdict {
        Verdict::Fine => UpdateOutcome::Routes {
            announced,
            withdrawn,
            attrs,
            discarded,
        },
        Verdict::Withdraw(reason) => {
            withdrawn.extend(announced);
            UpdateOutcome::TreatAsWithdraw { withdrawn, reason }
        }
        Verdict::Reset {
            subcode,
            data,
            reason,
        } => UpdateOutcome::SessionReset {
            subcode,
            data,
            reason,
        },
    }
}

/// MP_REACH_NLRI (RFC 4760 section 3): next hop and prefixes of the families we handle.
fn parse_mp_reach(attr: &Located<'_>, ctx: &RxContext) -> Result<(Vec<u8>, Vec<Prefix>), String> {
    let v = attr.value;
    let (Some(afi), Some(&safi), Some(&nh_len)) = (v.get(..2).map(be16), v.get(2), v.get(3)) else {
        return Err("MP_REACH_NLRI too short".into());
    };
    let nh_end = 4 + usize::from(nh_len);
    let Some(next_hop) = v.get(4..nh_end) else {
        return Err("MP_REACH_NLRI next hop runs past the attribute".into());
    };
    // One reserved octet follows the next hop (formerly SNPAs).
    let Some(nlri) = v.get(nh_end + 1..) else {
        return Err("MP_REACH_NLRI ends before its NLRI".into());
    };
    let family = match (afi, safi) {
        (1, 1) => Afi::Ipv4,
        (2, 1) => Afi::Ipv6,
        // Families we did not negotiate or do not handle are ignored, not errors.
        _ => return Ok((next_hop.to_vec(), Vec::new())),
    };
    // Section 7.11: a next hop length that cannot be right makes the NLRI unlocatable.
    let valid_nh = match family {
        Afi::Ipv4 => matches!(nh_len, 4 | 16 | 32),
        Afi::Ipv6 => matches!(nh_len, 16 | 32),
    };
    if !valid_nh {
        return Err(format!(
            "MP_REACH_NLRI next hop length {nh_len} invalid for AFI {afi}"
        ));
    }
    let prefixes = parse_prefixes(nlri, family).ok_or("malformed prefix in MP_REACH_NLRI")?;
    let wanted = match family {
        Afi::Ipv4 => ctx.ipv4_unicast,
        Afi::Ipv6 => ctx.ipv6_unicast,
    };
    Ok((
        next_hop.to_vec(),
        if wanted { prefixes } else { Vec::new() },
    ))
}

/// MP_UNREACH_NLRI (RFC 4760 section 4).
fn parse_mp_unreach(attr: &Located<'_>) -> Result<Vec<Prefix>, String> {
    let v = attr.value;
    let (Some(afi), Some(&safi)) = (v.get(..2).map(be16), v.get(2)) else {
        return Err("MP_UNREACH_NLRI too short".into());
    };
    let family = match (afi, safi) {
        (1, 1) => Afi::Ipv4,
        (2, 1) => Afi::Ipv6,
        _ => return Ok(Vec::new()),
    };
    parse_prefixes(&v[3..], family).ok_or_else(|| "malformed prefix in MP_UNREACH_NLRI".into())
}

/// Checks the optional/transitive bits against what the attribute must have (section 3c).
fn flags_ok(flags: u8, optional: bool, transitive: bool) -> bool {
    (flags & OPTIONAL != 0) == optional && (flags & TRANSITIVE != 0) == transitive
}

/// Validates and stores one ordinary attribute, per section 7.
fn attribute(
    attr: &Located<'_>,
    ctx: &RxContext,
    classic_nlri: bool,
    attrs: &mut ParsedAttrs,
    verdict: &mut Verdict,
    discarded: &mut Vec<AttrError>,
) {
    let v = attr.value;
    let c = attr.code;
    let mut discard = |why: &str| {
        discarded.push(AttrError {
            code: c,
            description: why.to_owned(),
        })
    };
    match c {
        code::ORIGIN => {
            if !flags_ok(attr.flags, false, true) || v.len() != 1 || v[0] > 2 {
                verdict.withdraw(c, "malformed ORIGIN");
            } else {
                attrs.origin = Some(v[0]);
            }
        }
        code::AS_PATH => match (
            flags_ok(attr.flags, false, true),
            parse_as_path(v, ctx.four_octet_as),
        ) {
            (true, Some(path)) => attrs.as_path = path,
            _ => verdict.withdraw(c, "malformed AS_PATH"),
        },
        code::NEXT_HOP => {
            let nh = (v.len() == 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]));
            // RFC 4271 section 6.3: a next hop that cannot be a neighbor is a semantic error.
            let problem = match nh {
                _ if !flags_ok(attr.flags, false, true) => {
                    Some("NEXT_HOP with wrong attribute flags".to_owned())
                }
                None => Some("NEXT_HOP of the wrong length".to_owned()),
                Some(nh) if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() => {
                    Some(format!("invalid NEXT_HOP {nh}"))
                }
                Some(_) => None,
            };
            match problem {
                None => attrs.next_hop = nh,
                // Only the classic IPv4 NLRI uses NEXT_HOP; with MP_REACH_NLRI alone it is
                // ignored (RFC 4760 section 3), so a bad one is discarded.
                Some(why) if classic_nlri => verdict.withdraw(c, why),
                Some(why) => discard(&why),
            }
        }
        code::MED => {
            if !flags_ok(attr.flags, true, false) || v.len() != 4 {
                verdict.withdraw(c, "malformed MULTI_EXIT_DISC");
            } else {
                attrs.med = Some(be32(v));
            }
        }
        code::LOCAL_PREF => {
            if !ctx.ibgp {
                // RFC 4271 section 5.1.5: ignored when received from an external peer.
                discard("LOCAL_PREF from an eBGP peer");
            } else if !flags_ok(attr.flags, false, true) || v.len() != 4 {
                verdict.withdraw(c, "malformed LOCAL_PREF");
            } else {
                attrs.local_pref = Some(be32(v));
            }
        }
        code::ATOMIC_AGGREGATE => {
            if !flags_ok(attr.flags, false, true) || !v.is_empty() {
                discard("malformed ATOMIC_AGGREGATE");
            } else {
                attrs.atomic_aggregate = true;
            }
        }
        code::AGGREGATOR => {
            let len = if ctx.four_octet_as { 8 } else { 6 };
            if !flags_ok(attr.flags, true, true) || v.len() != len {
                discard("malformed AGGREGATOR");
            } else {
                attrs.other.push(raw(attr));
            }
        }
        code::COMMUNITIES => {
            if !flags_ok(attr.flags, true, true) || v.is_empty() || !v.len().is_multiple_of(4) {
                verdict.withdraw(c, "malformed COMMUNITIES");
            } else {
                attrs.communities = v.chunks_exact(4).map(be32).collect();
            }
        }
        code::LARGE_COMMUNITIES => {
            // RFC 8092 section 6.
            if !flags_ok(attr.flags, true, true) || v.is_empty() || !v.len().is_multiple_of(12) {
                verdict.withdraw(c, "malformed LARGE_COMMUNITY");
            } else {
                attrs.large_communities = v
                    .chunks_exact(12)
                    .map(|x| [be32(&x[0..4]), be32(&x[4..8]), be32(&x[8..12])])
                    .collect();
            }
        }
        code::ORIGINATOR_ID | code::CLUSTER_LIST if !ctx.ibgp => {
            discard("route reflection attribute from an eBGP peer")
        }
        code::ORIGINATOR_ID => {
            if !flags_ok(attr.flags, true, false) || v.len() != 4 {
                verdict.withdraw(c, "malformed ORIGINATOR_ID");
            } else {
                attrs.other.push(raw(attr));
            }
        }
        code::CLUSTER_LIST => {
            if !flags_ok(attr.flags, true, false) || v.is_empty() || !v.len().is_multiple_of(4) {
                verdict.withdraw(c, "malformed CLUSTER_LIST");
            } else {
                attrs.other.push(raw(attr));
            }
        }
        code::EXT_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(8) || attr.flags & OPTIONAL == 0 {
                verdict.withdraw(c, "malformed EXTENDED_COMMUNITIES");
            } else {
                attrs.other.push(raw(attr));
            }
        }
        // RFC 6793 section 6: malformed AS4 attributes are discarded; from a 4-octet peer
        // they should not appear at all and are ignored.
        code::AS4_PATH | code::AS4_AGGREGATOR => {
            let ok = if c == code::AS4_PATH {
                parse_as_path(v, true).is_some()
            } else {
                v.len() == 8
            };
            if ctx.four_octet_as || !ok || !flags_ok(attr.flags, true, true) {
                discard("AS4 attribute discarded (RFC 6793)");
            } else {
                attrs.other.push(raw(attr));
            }
        }
        _ if attr.flags & OPTIONAL == 0 => {
            // An unknown well-known attribute: RFC 4271 section 6.3, not relaxed by RFC 7606.
            verdict.reset(
                subcode::UNRECOGNIZED_WELL_KNOWN,
                attr.wire.to_vec(),
                format!("unrecognized well-known attribute {c}"),
            );
        }
        _ => attrs.other.push(raw(attr)),
    }
}

fn raw(attr: &Located<'_>) -> RawAttr {
    RawAttr {
        flags: attr.flags,
        code: attr.code,
        value: attr.value.to_vec(),
    }
}

/// AS_PATH segments (section 7.2 of RFC 7606 defines what is malformed).
fn parse_as_path(mut v: &[u8], four_octet: bool) -> Option<Vec<AsSegment>> {
    let width = if four_octet { 4 } else { 2 };
    let mut segments = Vec::new();
    while !v.is_empty() {
        let (&kind, rest) = v.split_first()?;
        let (&count, rest) = rest.split_first()?;
        if !(1..=4).contains(&kind) || count == 0 {
            return None;
        }
        let bytes = usize::from(count) * width;
        let body = rest.get(..bytes)?;
        let asns = body
            .chunks_exact(width)
            .map(|a| {
                if four_octet {
                    be32(a)
                } else {
                    u32::from(be16(a))
                }
            })
            .collect();
        segments.push(AsSegment { kind, asns });
        v = &rest[bytes..];
    }
    Some(segments)
}

#[cfg(test)]
mod tests;
