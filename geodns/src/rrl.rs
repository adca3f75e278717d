//! Response rate limiting: UDP responses per source prefix, so that geodns cannot be used to
//! flood a spoofed victim, and a flood from one prefix cannot take the answers of everyone
//! else's.
//!
//! Each prefix (a /24 or /56 by default) has a token bucket: `burst` responses, refilled at
//! `rate` per second. A response that finds the bucket empty is limited: every `slip`-th goes
//! out truncated (header and question only, never larger than the query: an honest resolver
//! retries over TCP, which is never limited), the others are dropped. Bytes sent to a limited
//! source are therefore at most the bytes it sent.
//!
//! The buckets are [`daemon::ratelimit::Buckets`], one table shared by every worker (a
//! source's datagrams reach several workers, each with its own `SO_REUSEPORT` socket).

use std::net::IpAddr;

use config::dns::RateLimit;
use daemon::ratelimit::Buckets;
pub use daemon::ratelimit::{PrefixState, Tick};

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated (TC, no records).
    Slip,
    Drop,
}

/// The limiter of one configuration.
#[derive(Debug)]
pub struct Limiter {
    settings: RateLimit,
    buckets: Buckets,
}

impl Limiter {
    /// The limiter `settings` describe; `None` when rate limiting is off.
    pub fn new(settings: &RateLimit) -> Option<Self> {
        settings.enabled.then(|| Self {
            settings: settings.clone(),
            buckets: Buckets::new(settings.buckets()),
        })
    }

    pub fn settings(&self) -> &RateLimit {
        &self.settings
    }

    /// Counts one response to `source` at `now`: sent, or limited (slipped or dropped, by
    /// `limited`, the caller's count of limited responses so far).
    #[inline]
    pub fn check(&self, source: IpAddr, now: Tick, limited: &mut u64) -> Verdict {
        if self.buckets.take(source, now) {
            return Verdict::Send;
        }
        *limited += 1;
        match self.settings.slip {
            0 => Verdict::Drop,
            slip if limited.is_multiple_of(u64::from(slip)) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    /// The bucket of `source`'s prefix at `now`, without counting a response.
    pub fn state(&self, source: IpAddr, now: Tick) -> PrefixState {
        self.buckets.state(source, now)
    }
}

/// Writes the truncated response to a limited query into `out`: its header with QR and TC set
/// and no records, and its question; false when there is no well-formed question (then it is
/// dropped). Never longer than the query.
pub fn slipped(query: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if query.len() < 12 || query[4..6] != [0, 1] {
        return false;
    }
    let Some(name) = crate::query::hot::question_name(query) else {
        return false;
    };
    // The name, then type and class.
    let end = name.end + 4;
    if end > query.len() {
        return false;
    }
    out.extend_from_slice(&query[..2]);
    // QR, opcode and RD as asked, AA, TC; RCODE 0.
    out.push(0x80 | (query[2] & 0x79) | 0x04 | 0x02);
    out.push(0);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, burst: u32, slip: u32) -> Limiter {
        Limiter::new(&RateLimit {
            rate,
            burst,
            slip,
            ..RateLimit::default()
        })
        .unwrap()
    }

    #[test]
    fn every_slip_th_limited_response_is_truncated() {
        let l = limiter(1, 1, 3);
        let t = Tick::now();
        let source: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let mut limited = 0;
        assert_eq!(l.check(source, t, &mut limited), Verdict::Send);
        let verdicts: Vec<Verdict> = (0..6).map(|_| l.check(source, t, &mut limited)).collect();
        use Verdict::{Drop, Slip};
        assert_eq!(verdicts, [Drop, Drop, Slip, Drop, Drop, Slip]);
        // The /56 shares; the next /56 does not.
        assert_ne!(
            l.check("2001:db8:1:ff::1".parse().unwrap(), t, &mut limited),
            Verdict::Send
        );
        assert_eq!(
            l.check("2001:db8:1:100::1".parse().unwrap(), t, &mut limited),
            Verdict::Send
        );
        let none = limiter(1, 1, 0);
        let mut limited = 0;
        none.check(source, t, &mut limited);
        assert!((0..10).all(|_| none.check(source, t, &mut limited) == Drop));
    }

    #[test]
    fn disabled_means_no_limiter() {
        let off = RateLimit {
            enabled: false,
            ..RateLimit::default()
        };
        assert!(Limiter::new(&off).is_none());
    }

    #[test]
    fn the_truncated_answer_is_the_question_with_tc_and_never_longer() {
        // id 0x1d2c, RD, one question, one OPT record with ECS.
        let query: &[u8] = &[
            0x1d, 0x2c, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1, 4, b'l', b'i', b'v', b'e', 0, 0, 1, 0,
            1, 0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 198, 51, 100,
        ];
        let mut out = Vec::new();
        assert!(slipped(query, &mut out));
        assert_eq!(
            out,
            [
                0x1d, 0x2c, 0x87, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'l', b'i', b'v', b'e', 0, 0, 1, 0,
                1
            ]
        );
        assert!(out.len() <= query.len());
        let reply = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert!(reply.metadata.truncation);
        for broken in [&query[..11], &query[..15], &[0u8; 12][..]] {
            assert!(!slipped(broken, &mut out), "{broken:?}");
        }
    }
}
