//! What a query's OPT records say, read from the bytes: how many there are and whether a
//! Client Subnet option is well formed. hickory-proto's decoder keeps one OPT of several and
//! reads Client Subnet's address from the prefix length, ignoring extra bytes, so the rules
//! that need the wire (RFC 6891 section 6.1.1, RFC 7871 section 6) are checked here. The walk is
//! lenient: it also finds the OPT of a query hickory cannot decode (a name over 255 bytes), so
//! that the FORMERR carries OPT as RFC 6891 asks.

/// A query's OPT records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptScan {
    /// OPT records found in the additional section.
    pub count: usize,
    pub subnet: SubnetCheck,
    /// The COOKIE option of the (first) OPT record: where its data is in the query, or
    /// `Malformed` for a length RFC 7873 section 4 does not allow.
    pub cookie: CookieCheck,
}

/// The COOKIE option of the (first) OPT record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CookieCheck {
    #[default]
    Absent,
    Present(std::ops::Range<usize>),
    Malformed,
}

impl OptScan {
    /// A query that must be answered FORMERR, whatever else it asks.
    pub fn malformed(&self) -> bool {
        self.count > 1
            || self.subnet == SubnetCheck::Malformed
            || self.cookie == CookieCheck::Malformed
    }
}

/// The Client Subnet option of the (first) OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubnetCheck {
    #[default]
    Absent,
    Valid,
    /// Unknown family, prefix too long, address bytes not exactly what the source prefix
    /// needs, bits set past it, or a non-zero scope (RFC 7871 sections 6 and 7.1.2).
    Malformed,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Skips a name (labels, ending at the root or a compression pointer) without limiting its
/// length; `None` when it runs past the end or uses a reserved label type.
fn skip_name(q: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *q.get(at)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xC0 => return Some(at + 2).filter(|end| *end <= q.len()),
            _ => return None,
        }
    }
}

/// Reads the OPT records of `q` as far as its structure can be followed.
pub fn scan(q: &[u8]) -> OptScan {
    let mut found = OptScan::default();
    let _ = walk(q, &mut found);
    found
}

fn walk(q: &[u8], found: &mut OptScan) -> Option<()> {
    let questions = be16(q, 4)?;
    let records = u32::from(be16(q, 6)?) + u32::from(be16(q, 8)?);
    let additional = be16(q, 10)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(q, at)? + 4;
    }
    for _ in 0..records {
        at = skip_name(q, at)? + 8;
        at += 2 + usize::from(be16(q, at)?);
    }
    for _ in 0..additional {
        at = skip_name(q, at)?;
        let rtype = be16(q, at)?;
        let rdlen = usize::from(be16(q, at + 8)?);
        let rdata = at + 10;
        at = rdata + rdlen;
        if rtype != 41 {
            continue;
        }
        found.count += 1;
        if found.count == 1 {
            found.subnet = subnet(q.get(rdata..at)?);
            found.cookie = cookie(q.get(rdata..at)?, rdata);
        }
    }
    Some(())
}

/// The first option `code` in an OPT record's data: its offset in `rdata` and its bytes;
/// `None` when absent, or when the options run past the end before it.
fn option(rdata: &[u8], code: u16) -> Option<(usize, &[u8])> {
    let mut at = 0;
    while at + 4 <= rdata.len() {
        let len = usize::from(be16(rdata, at + 2)?);
        let data = rdata.get(at + 4..at + 4 + len)?;
        if be16(rdata, at)? == code {
            return Some((at + 4, data));
        }
        at += 4 + len;
    }
    None
}

/// The Client Subnet check over an OPT record's data.
fn subnet(rdata: &[u8]) -> SubnetCheck {
    match option(rdata, 8) {
        None => SubnetCheck::Absent,
        Some((_, data)) if valid_subnet(data) => SubnetCheck::Valid,
        Some(_) => SubnetCheck::Malformed,
    }
}

/// The COOKIE check over an OPT record's data, which starts at `base` in the query.
fn cookie(rdata: &[u8], base: usize) -> CookieCheck {
    match option(rdata, crate::cookie::OPTION) {
        None => CookieCheck::Absent,
        Some((_, data))
            if crate::cookie::presented(data) == crate::cookie::Presented::Malformed =>
        {
            CookieCheck::Malformed
        }
        Some((at, data)) => CookieCheck::Present(base + at..base + at + data.len()),
    }
}

/// Whether a Client Subnet option's data is valid for a query (RFC 7871 sections 6 and
/// 7.1.2).
pub(crate) fn valid_subnet(data: &[u8]) -> bool {
    let (Some(family), Some(&source), Some(&scope)) = (be16(data, 0), data.get(2), data.get(3))
    else {
        return false;
    };
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return false,
    };
    let address = &data[4..];
    let needed = usize::from(source).div_ceil(8);
    if scope != 0 || source > max || address.len() != needed {
        return false;
    }
    source % 8 == 0 || address[needed - 1] & (0xFF >> (source % 8)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(extra: &[u8], additional: u16) -> Vec<u8> {
        let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&additional.to_be_bytes());
        q.extend_from_slice(&[2, b't', b'v', 0, 0, 1, 0, 1]);
        q.extend_from_slice(extra);
        q
    }

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut r = vec![0, 0, 41, 4, 0xd0, 0, 0, 0, 0];
        r.extend_from_slice(&(options.len() as u16).to_be_bytes());
        r.extend_from_slice(options);
        r
    }

    fn ecs(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.extend_from_slice(&[source, scope]);
        o.extend_from_slice(address);
        o
    }

    #[test]
    fn client_subnets_are_judged_by_their_bytes() {
        let check = |o: Vec<u8>| scan(&query(&opt(&o), 1)).subnet;
        assert_eq!(check(ecs(1, 24, 0, &[198, 51, 100])), SubnetCheck::Valid);
        assert_eq!(check(ecs(1, 0, 0, &[])), SubnetCheck::Valid);
        // RFC 7871 section 6: exactly as many address bytes as the prefix needs.
        assert_eq!(
            check(ecs(1, 24, 0, &[198, 51, 100, 0])),
            SubnetCheck::Malformed
        );
        assert_eq!(check(ecs(1, 24, 0, &[198, 51])), SubnetCheck::Malformed);
        assert_eq!(
            check(ecs(1, 23, 0, &[198, 51, 101])),
            SubnetCheck::Malformed
        );
        assert_eq!(
            check(ecs(1, 33, 0, &[1, 2, 3, 4, 5])),
            SubnetCheck::Malformed
        );
        assert_eq!(check(ecs(3, 8, 0, &[1])), SubnetCheck::Malformed);
        assert_eq!(check(ecs(1, 24, 8, &[1, 2, 3])), SubnetCheck::Malformed);
        assert_eq!(check(vec![0, 10, 0, 0]), SubnetCheck::Absent, "a cookie");
    }

    #[test]
    fn every_opt_record_is_counted() {
        let one = opt(&[]);
        assert_eq!(scan(&query(&one, 1)).count, 1);
        let two = [one.clone(), one].concat();
        assert!(scan(&query(&two, 2)).malformed());
        assert_eq!(scan(&query(&[], 0)), OptScan::default());
    }

    #[test]
    fn the_opt_of_a_query_with_an_over_long_name_is_found() {
        let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        for _ in 0..5 {
            q.push(63);
            q.extend([b'a'; 63]);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q.extend_from_slice(&opt(&[]));
        assert_eq!(scan(&q).count, 1);
    }

    #[test]
    fn truncated_and_looping_input_ends_the_walk() {
        let q = query(&opt(&ecs(1, 24, 0, &[1, 2, 3])), 1);
        for end in 0..q.len() {
            let _ = scan(&q[..end]);
        }
        let _ = scan(&[
            0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC0, 12,
        ]);
    }
}
