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
//! The buckets are one fixed table of atomics shared by every worker (a source's datagrams
//! reach several workers, each with its own `SO_REUSEPORT` socket, so per-worker tables would
//! multiply the limit). A prefix is hashed with a per-process key to its bucket; prefixes that
//! collide share it, which only ever limits sooner, and the memory is the table's whatever the
//! number of sources (Knot's `mod-rrl` makes the same trade).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use config::dns::RateLimit;
use ipnet::IpNet;
use serde::Serialize;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated (TC, no records).
    Slip,
    Drop,
}

/// Milli-tokens per token: refills of a fraction of a token per millisecond add up exactly.
const MILLI: u64 = 1_000;

/// The limiter of one configuration.
pub struct Limiter {
    settings: RateLimit,
    buckets: Box<[AtomicU64]>,
    /// When each bucket last limited a response (ms as in `buckets`; 0: never), written only
    /// while limiting, read by `explain`.
    last_limited: Box<[AtomicU32]>,
    epoch: Instant,
    key: u64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("settings", &self.settings)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

/// A prefix's bucket, for `explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixState {
    pub prefix: IpNet,
    /// Responses it may receive right now.
    pub tokens: f64,
    /// A response to it was limited (slipped or dropped) within the last second.
    pub limited: bool,
}

impl Limiter {
    /// The limiter `settings` describe; `None` when rate limiting is off.
    pub fn new(settings: &RateLimit) -> Option<Self> {
        if !settings.enabled {
            return None;
        }
        let size = settings.table_size.max(1).next_power_of_two() as usize;
        Some(Self {
            settings: settings.clone(),
            buckets: (0..size).map(|_| AtomicU64::new(0)).collect(),
            last_limited: (0..size).map(|_| AtomicU32::new(0)).collect(),
            epoch: Instant::now(),
            key: random_key(),
        })
    }

    pub fn settings(&self) -> &RateLimit {
        &self.settings
    }

    /// Counts one response to `source` at `now`: sent, or limited (slipped or dropped, by
    /// `limited`, the caller's count of limited responses so far).
    #[inline]
    pub fn check(&self, source: IpAddr, now: Instant, limited: &mut u64) -> Verdict {
        let index = self.index(source);
        let bucket = &self.buckets[index];
        let now_ms = self.now_ms(now);
        let full = u64::from(self.settings.burst) * MILLI;
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let tokens = self.refilled(current, now_ms, full);
            let (next, send) = if tokens >= MILLI {
                (tokens - MILLI, true)
            } else {
                (tokens, false)
            };
            let packed = (u64::from(now_ms) << 32) | next;
            match bucket.compare_exchange_weak(
                current,
                packed,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if send => return Verdict::Send,
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        *limited += 1;
        self.last_limited[index].store(now_ms, Ordering::Relaxed);
        match self.settings.slip {
            0 => Verdict::Drop,
            slip if limited.is_multiple_of(u64::from(slip)) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    /// The bucket of `source`'s prefix at `now`, without counting a response.
    pub fn state(&self, source: IpAddr, now: Instant) -> PrefixState {
        let index = self.index(source);
        let current = self.buckets[index].load(Ordering::Relaxed);
        let full = u64::from(self.settings.burst) * MILLI;
        let now_ms = self.now_ms(now);
        let tokens = self.refilled(current, now_ms, full);
        let last = self.last_limited[index].load(Ordering::Relaxed);
        PrefixState {
            prefix: self.prefix(source),
            tokens: tokens as f64 / MILLI as f64,
            limited: last != 0 && now_ms.wrapping_sub(last) <= 1_000,
        }
    }

    /// The prefix `source` is limited as.
    pub fn prefix(&self, source: IpAddr) -> IpNet {
        let source = source.to_canonical();
        let len = match source {
            IpAddr::V4(_) => self.settings.ipv4_prefix.min(32),
            IpAddr::V6(_) => self.settings.ipv6_prefix.min(128),
        };
        IpNet::new(source, len).map_or(IpNet::from(source), |n| n.trunc())
    }

    /// Milliseconds since the limiter started, as stored (wraps after 49 days, when a bucket
    /// untouched that long refills to full anyway).
    fn now_ms(&self, now: Instant) -> u32 {
        // Never 0, which marks a bucket that was never used.
        (now.saturating_duration_since(self.epoch).as_millis() as u32).max(1)
    }

    /// A bucket's tokens (in milli-tokens) once refilled up to `now_ms`.
    #[inline]
    fn refilled(&self, packed: u64, now_ms: u32, full: u64) -> u64 {
        let (then, tokens) = ((packed >> 32) as u32, packed & u64::from(u32::MAX));
        if then == 0 {
            return full;
        }
        let elapsed = u64::from(now_ms.wrapping_sub(then));
        // `rate` tokens per second is `rate` milli-tokens per millisecond.
        tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.settings.rate)))
            .min(full)
    }

    #[inline]
    fn index(&self, source: IpAddr) -> usize {
        let bits = match source.to_canonical() {
            IpAddr::V4(a) => {
                let len = u32::from(self.settings.ipv4_prefix.min(32));
                u128::from(a.to_bits().checked_shr(32 - len).unwrap_or(0)) | 1 << 127
            }
            IpAddr::V6(a) => {
                let len = u32::from(self.settings.ipv6_prefix.min(128));
                a.to_bits().checked_shr(128 - len).unwrap_or(0)
            }
        };
        (mix(bits, self.key) as usize) & (self.buckets.len() - 1)
    }
}

/// A keyed mix of a prefix: without the key, a flood could aim at a legitimate resolver's
/// bucket by choosing prefixes that collide with it.
#[inline]
fn mix(bits: u128, key: u64) -> u64 {
    let mut h = (bits as u64) ^ key;
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= ((bits >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A per-process key: the time and the address of a stack variable, mixed.
fn random_key() -> u64 {
    let stack = 0u8;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(u128::from(time), &raw const stack as u64)
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
    use std::time::Duration;

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
    fn a_prefix_gets_its_burst_then_its_rate() {
        let l = limiter(100, 200, 2);
        let t0 = Instant::now();
        let source: IpAddr = "192.0.2.7".parse().unwrap();
        let mut limited = 0;
        let sent = (0..1000)
            .filter(|_| l.check(source, t0, &mut limited) == Verdict::Send)
            .count();
        assert_eq!(sent, 200, "the burst");
        assert_eq!(limited, 800);
        // A neighbour in the same /24 shares the bucket; another /24 has its own.
        assert_ne!(
            l.check("192.0.2.200".parse().unwrap(), t0, &mut limited),
            Verdict::Send
        );
        assert_eq!(
            l.check("192.0.3.1".parse().unwrap(), t0, &mut limited),
            Verdict::Send
        );
        // One second later: `rate` more.
        let t1 = t0 + Duration::from_secs(1);
        let sent = (0..1000)
            .filter(|_| l.check(source, t1, &mut limited) == Verdict::Send)
            .count();
        assert!((99..=101).contains(&sent), "{sent}");
        assert!(l.state(source, t1).limited);
        assert!(l.state(source, t1 + Duration::from_millis(900)).limited);
        assert!(!l.state(source, t1 + Duration::from_secs(2)).limited);
        assert!(!l.state("198.51.100.1".parse().unwrap(), t1).limited);
    }

    #[test]
    fn every_slip_th_limited_response_is_truncated() {
        let l = limiter(1, 1, 3);
        let t = Instant::now();
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
    fn ipv4_mapped_sources_are_limited_as_ipv4() {
        let l = limiter(1, 1, 1);
        let t = Instant::now();
        let mut limited = 0;
        assert_eq!(
            l.check("198.51.100.1".parse().unwrap(), t, &mut limited),
            Verdict::Send
        );
        assert_eq!(
            l.check("::ffff:198.51.100.9".parse().unwrap(), t, &mut limited),
            Verdict::Slip
        );
        assert_eq!(
            l.prefix("::ffff:198.51.100.9".parse().unwrap()).to_string(),
            "198.51.100.0/24"
        );
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
