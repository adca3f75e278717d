//! The hot query shape, read and answered without a general DNS parser: an A or AAAA question
//! with or without EDNS and Client Subnet. Pure functions over bytes, tested with byte vectors.
//!
//! Why by hand: measured with `cargo bench -p geodns --bench dnsperf`, answering every query
//! through hickory's generic message types reached 0.41x gdnsd's rate on one thread. Nearly all
//! traffic is this one shape, so it is located in the datagram in place and its answer written
//! straight into the send buffer. Anything else returns `None` and takes the general path,
//! which also owns every error answer (FORMERR and the rest).

use std::net::IpAddr;
use std::ops::Range;

/// Longest name on the wire, root label included (RFC 1035 section 3.1).
pub const MAX_NAME: usize = 255;

/// Largest UDP payload we offer (the DNS flag day 2020 value, avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// A Client Subnet option as the query carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// 1 (IPv4) or 2 (IPv6).
    pub family: u16,
    pub source_prefix: u8,
    /// Where the address bytes are in the query: exactly as many as the prefix needs.
    pub address: Range<usize>,
}

/// A hot query, located in its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotQuery {
    /// End of the question (name, type, class).
    pub question_end: usize,
    /// The question name, in wire form (at most [`MAX_NAME`] bytes).
    pub name: Range<usize>,
    /// 1 (A) or 28 (AAAA).
    pub qtype: u16,
    /// An OPT record (EDNS version 0) is present.
    pub edns: bool,
    pub subnet: Option<Subnet>,
    /// A COOKIE option's data (8 bytes, or 16 to 40), where it is in the query.
    pub cookie: Option<Range<usize>>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Where the question's name is in a query: labels from byte 12 to the root, each at most 63
/// bytes, at most [`MAX_NAME`] in all, without compression (which cannot appear in the
/// question of a first-hand query); `None` otherwise.
pub fn question_name(q: &[u8]) -> Option<Range<usize>> {
    let start = 12;
    let mut at = start;
    loop {
        let len = usize::from(*q.get(at)?);
        if len > 63 {
            return None;
        }
        at += 1 + len;
        // Checked after every label, the root one included, before anything reads it.
        if at - start > MAX_NAME {
            return None;
        }
        if len == 0 {
            return Some(start..at);
        }
    }
}

/// A Client Subnet option's data at `data` in `q`, when valid (see `edns::valid_subnet`).
fn subnet(q: &[u8], data: Range<usize>) -> Option<Subnet> {
    if !super::edns::valid_subnet(q.get(data.clone())?) {
        return None;
    }
    Some(Subnet {
        family: be16(q, data.start)?,
        source_prefix: *q.get(data.start + 2)?,
        address: data.start + 4..data.end,
    })
}

impl HotQuery {
    /// Accepts only: a query (QR 0, opcode 0) with one question of type A or AAAA and class IN
    /// whose name is at most [`MAX_NAME`] bytes without compression, no answer or authority
    /// records, and at most an OPT record (version 0) whose options are at most one valid
    /// Client Subnet (RFC 7871 section 6: as many address bytes as the source prefix needs, no
    /// bits set past it, scope 0) and one COOKIE of a valid length (RFC 7873 section 4).
    /// Anything else is `None`.
    pub fn parse(q: &[u8]) -> Option<Self> {
        let flags = *q.get(2)?;
        let opcode = (flags >> 3) & 0x0F;
        if flags & 0x80 != 0
            || opcode != 0
            || be16(q, 4)? != 1
            || be16(q, 6)? != 0
            || be16(q, 8)? != 0
        {
            return None;
        }
        let additional = be16(q, 10)?;
        let name = question_name(q)?;
        let at = name.end;
        let qtype = be16(q, at)?;
        if !(qtype == 1 || qtype == 28) || be16(q, at + 2)? != 1 {
            return None;
        }
        let question_end = at + 4;
        let mut hot = Self {
            question_end,
            name,
            qtype,
            edns: false,
            subnet: None,
            cookie: None,
        };
        match additional {
            0 if question_end == q.len() => Some(hot),
            1 => {
                // OPT: root name, type 41, class = payload, TTL = ext-rcode/version/flags.
                let opt = question_end;
                if *q.get(opt)? != 0 || be16(q, opt + 1)? != 41 || *q.get(opt + 6)? != 0 {
                    return None;
                }
                let rdlen = usize::from(be16(q, opt + 9)?);
                let rdata = opt + 11;
                if rdata + rdlen != q.len() {
                    return None;
                }
                hot.edns = true;
                // Options: at most one Client Subnet and one COOKIE, in any order.
                let mut at = rdata;
                while at < q.len() {
                    let (code, len) = (be16(q, at)?, usize::from(be16(q, at + 2)?));
                    let data = at + 4..at + 4 + len;
                    if data.end > q.len() {
                        return None;
                    }
                    match code {
                        8 if hot.subnet.is_none() => hot.subnet = Some(subnet(q, data.clone())?),
                        10 if hot.cookie.is_none() && (len == 8 || (16..=40).contains(&len)) => {
                            hot.cookie = Some(data.clone());
                        }
                        _ => return None,
                    }
                    at = data.end;
                }
                Some(hot)
            }
            _ => None,
        }
    }

    pub fn is_v4(&self) -> bool {
        self.qtype == 1
    }

    /// The address to locate: the subnet's, else the source's (also for a zero-length prefix,
    /// RFC 7871 section 7.1.2).
    pub fn client(&self, q: &[u8], source: IpAddr) -> IpAddr {
        match &self.subnet {
            Some(s) if s.source_prefix > 0 => {
                let mut b = [0u8; 16];
                b[..s.address.len()].copy_from_slice(&q[s.address.clone()]);
                if s.family == 1 {
                    IpAddr::from([b[0], b[1], b[2], b[3]])
                } else {
                    IpAddr::from(b)
                }
            }
            _ => source.to_canonical(),
        }
    }

    /// Whether the answer carries a scope worth working out (a non-zero source prefix).
    pub fn wants_scope(&self) -> bool {
        self.subnet.as_ref().is_some_and(|s| s.source_prefix > 0)
    }
}

/// Writes the answer to `hot` into `out`: the addresses (all of the question's family) with
/// `ttl`, the subnet echoed with `scope`, and `cookie` (the client's cookie and ours) when the
/// query carried one. Flags: QR, AA, RD and CD copied, NOERROR.
pub fn write_answer(
    q: &[u8],
    hot: &HotQuery,
    ttl: u32,
    scope: u8,
    cookie: Option<&[u8; 24]>,
    addresses: &[IpAddr],
    out: &mut Vec<u8>,
) {
    let v4 = hot.is_v4();
    // The answer's length is known before its first byte: one resize, then plain stores.
    let rdlen = if v4 { 4 } else { 16 };
    let ecs = hot.subnet.as_ref().map_or(0, |s| 8 + s.address.len());
    let cookie_len = cookie.map_or(0, |c| 4 + c.len());
    let opt = if hot.edns { 11 + ecs + cookie_len } else { 0 };
    out.clear();
    out.resize(hot.question_end + addresses.len() * (12 + rdlen) + opt, 0);
    let mut w = Cursor { buf: out, at: 0 };
    w.put(&q[..2]);
    w.put(&[0x84 | (q[2] & 0x01), q[3] & 0x10, 0, 1]);
    w.put(&(addresses.len() as u16).to_be_bytes());
    w.put(&[0, 0, 0, u8::from(hot.edns)]);
    // The question as asked (case preserved).
    w.put(&q[12..hot.question_end]);
    for address in addresses {
        // Pointer to the question name, type, class IN.
        w.put(&[0xC0, 0x0C]);
        w.put(&hot.qtype.to_be_bytes());
        w.put(&[0, 1]);
        w.put(&ttl.to_be_bytes());
        w.put(&(rdlen as u16).to_be_bytes());
        match address {
            IpAddr::V4(a) if v4 => w.put(&a.octets()),
            IpAddr::V6(a) if !v4 => w.put(&a.octets()),
            // A caller bug, not input: keep the length right and the answer parseable.
            _ => w.put(&[0u8; 16][..rdlen]),
        }
    }
    if hot.edns {
        w.put(&[0, 0, 41]);
        w.put(&MAX_UDP_PAYLOAD.to_be_bytes());
        w.put(&[0, 0, 0, 0]);
        w.put(&((ecs + cookie_len) as u16).to_be_bytes());
        if let Some(s) = &hot.subnet {
            let len = 4 + s.address.len() as u16;
            w.put(&[0, 8]);
            w.put(&len.to_be_bytes());
            w.put(&s.family.to_be_bytes());
            w.put(&[s.source_prefix, scope]);
            w.put(&q[s.address.clone()]);
        }
        if let Some(c) = cookie {
            w.put(&crate::cookie::OPTION.to_be_bytes());
            w.put(&(c.len() as u16).to_be_bytes());
            w.put(c);
        }
    }
    debug_assert_eq!(w.at, out.len(), "answer length worked out beforehand");
}

/// Writes fields one after another into a buffer already sized for them.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dig @… live.tv.example.net A +subnet=198.51.100.0/24` as captured (id 0x1d2c, RD, AD,
    /// EDNS payload 1232, ECS 198.51.100/24).
    const DIG_ECS: &[u8] = &[
        0x1d, 0x2c, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // header
        4, b'l', b'i', b'v', b'e', 2, b't', b'v', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3,
        b'n', b'e', b't', 0, 0x00, 0x01, 0x00, 0x01, // question
        0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, // OPT, rdlen 11
        0x00, 0x08, 0x00, 0x07, 0x00, 0x01, 24, 0, 198, 51, 100, // ECS
    ];

    #[test]
    fn a_resolver_query_with_client_subnet_is_hot() {
        let hot = HotQuery::parse(DIG_ECS).unwrap();
        assert_eq!(hot.name, 12..33);
        assert_eq!(hot.question_end, 37);
        assert!(hot.is_v4() && hot.edns && hot.wants_scope());
        let source = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(hot.client(DIG_ECS, source), IpAddr::from([198, 51, 100, 0]));
    }

    #[test]
    fn the_answer_bytes_are_exact() {
        let hot = HotQuery::parse(DIG_ECS).unwrap();
        let mut out = Vec::new();
        let addresses = [IpAddr::from([192, 0, 2, 10])];
        write_answer(DIG_ECS, &hot, 20, 22, None, &addresses, &mut out);
        let mut expected = vec![0x1d, 0x2c, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        expected.extend_from_slice(&DIG_ECS[12..37]);
        expected.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 20, 0, 4, 192, 0, 2, 10]);
        expected.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
        expected.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 22, 198, 51, 100]);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_cookie_beside_client_subnet_is_hot_and_answered_with_ours() {
        // DIG_ECS with a COOKIE option (client cookie only) after the subnet.
        let mut q = DIG_ECS.to_vec();
        q.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        q[47] += 12; // rdlen
        let hot = HotQuery::parse(&q).unwrap();
        assert_eq!(hot.cookie, Some(63..71));
        assert!(hot.subnet.is_some());
        let mut cookie = [0u8; 24];
        cookie[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        cookie[8] = 1;
        let mut out = Vec::new();
        let addresses = [IpAddr::from([192, 0, 2, 10])];
        write_answer(&q, &hot, 20, 22, Some(&cookie), &addresses, &mut out);
        let reply = hickory_proto::op::Message::from_vec(&out).unwrap();
        let edns = reply.edns.as_ref().unwrap();
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        assert!(matches!(
            edns.option(EdnsCode::Cookie),
            Some(EdnsOption::Unknown(10, data)) if data[..] == cookie[..]
        ));
        assert!(
            matches!(edns.option(EdnsCode::Subnet), Some(EdnsOption::Subnet(cs)) if cs.scope_prefix() == 22)
        );
        // Two cookies, or a cookie of a length RFC 7873 does not allow: not hot.
        let mut twice = q.clone();
        twice.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        twice[47] += 12;
        assert!(HotQuery::parse(&twice).is_none());
        let mut short = DIG_ECS.to_vec();
        short.extend_from_slice(&[0, 10, 0, 5, 1, 2, 3, 4, 5]);
        short[47] += 9;
        assert!(HotQuery::parse(&short).is_none());
    }

    /// A name of labels 63, 63, 63, 62 and 63 bytes: 320 bytes on the wire.
    fn long_name_query(labels: &[usize]) -> Vec<u8> {
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for &len in labels {
            q.push(len as u8);
            q.extend(std::iter::repeat_n(b'a', len));
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn names_longer_than_255_bytes_are_never_hot() {
        assert!(HotQuery::parse(&long_name_query(&[63, 63, 63, 62, 63])).is_none());
        // 63 + 63 + 63 + 61 plus five length bytes and the root: exactly 255.
        let longest = long_name_query(&[63, 63, 63, 61]);
        assert_eq!(HotQuery::parse(&longest).unwrap().name.len(), 255);
        assert!(HotQuery::parse(&long_name_query(&[63, 63, 63, 62])).is_none());
    }

    #[test]
    fn client_subnets_with_extra_or_missing_address_bytes_are_not_hot() {
        let mut extra = DIG_ECS.to_vec();
        extra.push(0);
        let len = extra.len();
        extra[len - 9] += 1; // option length
        extra[47] += 1; // rdlen
        assert!(HotQuery::parse(&extra).is_none());
        let mut short = DIG_ECS.to_vec();
        short.pop();
        assert!(HotQuery::parse(&short).is_none());
    }

    #[test]
    fn anything_but_the_hot_shape_is_declined() {
        let mut response = DIG_ECS.to_vec();
        response[2] |= 0x80;
        let mut mx = DIG_ECS.to_vec();
        mx[34] = 15;
        let mut pointer = DIG_ECS.to_vec();
        pointer[12] = 0xC0;
        for q in [&response[..], &mx, &pointer, &DIG_ECS[..11], &[]] {
            assert!(HotQuery::parse(q).is_none(), "{q:?}");
        }
    }
}
