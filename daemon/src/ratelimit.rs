//! What a client may take, per client prefix, in tables of fixed size: token buckets for a rate
//! ([`Buckets`]: geodns's responses, streamnode's requests) and counts of what it holds at once
//! ([`Occupancy`]: streamnode's connections).
//!
//! A prefix (a /24 or /56 for DNS, an address or /64 for HTTP) is hashed with a random per-table key
//! to its entry; prefixes that collide share it, which only ever limits sooner, and the memory
//! is the table's whatever the number of sources (Knot's `mod-rrl` makes the same trade). The
//! key keeps a flood from aiming at a legitimate client's entry by choosing colliding prefixes.
//! Entries are atomics shared by every thread: a client's packets or connections reach several
//! workers, and per-worker tables would multiply its limit.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use config::types::PrefixRate;
use ipnet::IpNet;
use serde::Serialize;

/// Where in a table of `2^(64 - shift)` entries each client prefix lives.
#[derive(Debug, Clone, Copy)]
struct Prefixes {
    ipv4: u8,
    ipv6: u8,
    /// Random and odd: the multiplier of the hash (and the key of the IPv6 fold).
    key: u64,
    shift: u32,
}

impl Prefixes {
    fn new(ipv4: u8, ipv6: u8, table_size: u32) -> Self {
        let size = table_size.max(2).next_power_of_two();
        Self {
            ipv4: ipv4.min(32),
            ipv6: ipv6.min(128),
            key: random_key() | 1,
            shift: 64 - size.trailing_zeros(),
        }
    }

    fn len(&self) -> usize {
        1 << (64 - self.shift)
    }

    /// The prefix `source` counts as (IPv4-mapped IPv6 sources as IPv4).
    fn of(&self, source: IpAddr) -> IpNet {
        let source = source.to_canonical();
        let len = match source {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        };
        IpNet::new(source, len).map_or(IpNet::from(source), |n| n.trunc())
    }

    /// Multiply-shift hashing (Dietzfelbinger et al.): with a random odd multiplier, the top
    /// bits of the product send two given prefixes to one entry with a probability of about
    /// 2 / entries, whatever the prefixes, so a flood cannot choose prefixes that share a
    /// resolver's entry; and it is one multiplication, on a path every UDP query takes.
    #[inline]
    fn index(&self, source: IpAddr) -> usize {
        let x = match source.to_canonical() {
            IpAddr::V4(a) => {
                let bits = a.to_bits().checked_shr(32 - u32::from(self.ipv4));
                u64::from(bits.unwrap_or(0)) | 1 << 32
            }
            IpAddr::V6(a) => {
                let bits = a.to_bits().checked_shr(128 - u32::from(self.ipv6));
                let bits = bits.unwrap_or(0);
                (bits as u64) ^ mix((bits >> 64) as u64, self.key)
            }
        };
        (x.wrapping_mul(self.key) >> self.shift) as usize
    }
}

/// A keyed mix of 64 bits (the finaliser of MurmurHash3, keyed first).
#[inline]
fn mix(bits: u64, key: u64) -> u64 {
    let mut h = bits ^ key;
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A per-table key: the time and the address of a stack variable, mixed. Not secret against
/// someone who can read the process, only unpredictable from the network.
fn random_key() -> u64 {
    let stack = 0u8;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(time, &raw const stack as u64)
}

/// A moment as the tables keep it: milliseconds of the monotonic clock, wrapping after 49 days
/// (when an entry untouched that long is full anyway); never 0, which marks an entry never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick(u32);

impl Tick {
    /// Now, from the kernel's coarse monotonic clock: at most a few milliseconds behind, which a
    /// bucket refilling in milliseconds does not notice, and a fraction of the cost of a precise
    /// read (`Instant::now` and its conversion to milliseconds cost more than the bucket on a
    /// DNS server's path, measured with callgrind).
    #[inline]
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC_COARSE exists on every
        // Linux since 2.6.32 and cannot fail with a valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        let ms = (ts.tv_sec as u64)
            .wrapping_mul(1_000)
            .wrapping_add(ts.tv_nsec as u64 / 1_000_000);
        Self((ms as u32).max(1))
    }

    /// This moment plus `d`.
    pub fn after(self, d: std::time::Duration) -> Self {
        Self(self.0.wrapping_add(d.as_millis() as u32).max(1))
    }
}

/// Milli-tokens per token: refills of a fraction of a token per millisecond add up exactly.
const MILLI: u64 = 1_000;

/// Token buckets per client prefix: `burst` tokens each, refilled at `rate` per second; each
/// bucket is one 64-bit word (the time of its last use in milliseconds, and its milli-tokens),
/// updated by compare-and-swap.
pub struct Buckets {
    /// `burst` and `rate` in milli-tokens (per millisecond for the rate).
    full: u64,
    rate: u64,
    prefixes: Prefixes,
    buckets: Box<[AtomicU64]>,
    /// When each bucket last refused (a [`Tick`]; 0: never), written only while refusing, read
    /// by [`Buckets::state`].
    last_limited: Box<[AtomicU32]>,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("burst", &(self.full / MILLI))
            .field("rate", &self.rate)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

/// A client prefix's bucket, for `explain` and admin queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixState {
    pub prefix: IpNet,
    /// What it may take right now.
    pub tokens: f64,
    /// It was refused within the last second.
    pub limited: bool,
}

impl Buckets {
    pub fn new(settings: PrefixRate) -> Self {
        let prefixes = Prefixes::new(
            settings.ipv4_prefix,
            settings.ipv6_prefix,
            settings.table_size,
        );
        Self {
            full: u64::from(settings.burst) * MILLI,
            rate: u64::from(settings.rate),
            buckets: (0..prefixes.len()).map(|_| AtomicU64::new(0)).collect(),
            last_limited: (0..prefixes.len()).map(|_| AtomicU32::new(0)).collect(),
            prefixes,
        }
    }

    /// Takes a token for `source` at `now`: true when there was one, false when its prefix is
    /// over its rate.
    #[inline]
    pub fn take(&self, source: IpAddr, now: Tick) -> bool {
        let index = self.prefixes.index(source);
        let bucket = &self.buckets[index];
        let now_ms = now.0;
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (tokens, stamp) = self.refilled(current, now_ms);
            let (next, allowed) = match tokens.checked_sub(MILLI) {
                Some(left) => (left, true),
                None => (tokens, false),
            };
            let packed = (u64::from(stamp) << 32) | next;
            match bucket.compare_exchange_weak(
                current,
                packed,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if allowed => return true,
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.last_limited[index].store(now_ms, Ordering::Relaxed);
        false
    }

    /// The bucket of `source`'s prefix at `now`, without taking from it.
    pub fn state(&self, source: IpAddr, now: Tick) -> PrefixState {
        let index = self.prefixes.index(source);
        let now_ms = now.0;
        let (tokens, _) = self.refilled(self.buckets[index].load(Ordering::Relaxed), now_ms);
        let last = self.last_limited[index].load(Ordering::Relaxed);
        PrefixState {
            prefix: self.prefix(source),
            tokens: tokens as f64 / MILLI as f64,
            limited: last != 0 && now_ms.wrapping_sub(last) <= 1_000,
        }
    }

    /// The prefix `source` is limited as.
    pub fn prefix(&self, source: IpAddr) -> IpNet {
        self.prefixes.of(source)
    }

    /// A bucket's milli-tokens once refilled up to `now_ms`, and the moment to keep with them.
    #[inline]
    fn refilled(&self, packed: u64, now_ms: u32) -> (u64, u32) {
        let (then, tokens) = ((packed >> 32) as u32, packed & u64::from(u32::MAX));
        if then == 0 {
            return (self.full, now_ms);
        }
        // Another thread may have stored a later moment than this one's `now`: then no time
        // passed, and the bucket keeps its moment.
        let at = later(now_ms, then);
        let elapsed = u64::from(at.wrapping_sub(then));
        // `rate` tokens per second is `rate` milli-tokens per millisecond.
        let tokens = tokens
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.full);
        (tokens, at)
    }
}

/// The later of two moments on the wrapping clock (then was at most 24 days before or after).
#[inline]
fn later(now: u32, then: u32) -> u32 {
    if (now.wrapping_sub(then) as i32) >= 0 {
        now
    } else {
        then
    }
}

/// How many of something (connections) each client prefix holds at once, against a limit.
#[derive(Debug)]
pub struct Occupancy {
    limit: u32,
    prefixes: Prefixes,
    counts: Box<[AtomicU32]>,
}

/// One thing a client holds; given back when dropped.
#[derive(Debug)]
pub struct Held {
    table: Arc<Occupancy>,
    index: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.table.counts[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Occupancy {
    /// At most `limit` at once per IPv4 `/ipv4` or IPv6 `/ipv6` prefix, in a table of
    /// `table_size` counts.
    pub fn new(limit: u32, ipv4: u8, ipv6: u8, table_size: u32) -> Self {
        let prefixes = Prefixes::new(ipv4, ipv6, table_size);
        Self {
            limit,
            counts: (0..prefixes.len()).map(|_| AtomicU32::new(0)).collect(),
            prefixes,
        }
    }

    /// One more for `source`, or `None` when its prefix already holds its limit.
    pub fn enter(self: &Arc<Self>, source: IpAddr) -> Option<Held> {
        let index = self.prefixes.index(source);
        self.counts[index]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()?;
        Some(Held {
            table: self.clone(),
            index,
        })
    }

    /// What `source`'s prefix holds now.
    pub fn held(&self, source: IpAddr) -> u32 {
        self.counts[self.prefixes.index(source)].load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The prefix `source` counts as.
    pub fn prefix(&self, source: IpAddr) -> IpNet {
        self.prefixes.of(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn buckets(rate: u32, burst: u32) -> Buckets {
        Buckets::new(PrefixRate {
            rate,
            burst,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 1 << 16,
        })
    }

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate() {
        let b = buckets(100, 200);
        let t0 = Tick::now();
        let source: IpAddr = "192.0.2.7".parse().unwrap();
        let taken = (0..1000).filter(|_| b.take(source, t0)).count();
        assert_eq!(taken, 200, "the burst");
        // A neighbour in the same /24 shares the bucket; another /24 has its own.
        assert!(!b.take("192.0.2.200".parse().unwrap(), t0));
        assert!(b.take("192.0.3.1".parse().unwrap(), t0));
        // One second later: `rate` more.
        let t1 = t0.after(Duration::from_secs(1));
        let taken = (0..1000).filter(|_| b.take(source, t1)).count();
        assert!((99..=101).contains(&taken), "{taken}");
        assert!(b.state(source, t1).limited);
        assert!(
            b.state(source, t1.after(Duration::from_millis(900)))
                .limited
        );
        assert!(!b.state(source, t1.after(Duration::from_secs(2))).limited);
        assert!(!b.state("198.51.100.1".parse().unwrap(), t1).limited);
        let later = b.state(source, t1.after(Duration::from_secs(60)));
        assert_eq!(later.tokens, 200.0, "refilled to the burst, no further");
        assert_eq!(later.prefix.to_string(), "192.0.2.0/24");
    }

    #[test]
    fn ipv6_prefixes_and_mapped_ipv4() {
        let b = buckets(1, 1);
        let t = Tick::now();
        assert!(b.take("2001:db8:1:2::9".parse().unwrap(), t));
        // The /56 shares; the next /56 does not.
        assert!(!b.take("2001:db8:1:ff::1".parse().unwrap(), t));
        assert!(b.take("2001:db8:1:100::1".parse().unwrap(), t));
        assert!(b.take("198.51.100.1".parse().unwrap(), t));
        assert!(!b.take("::ffff:198.51.100.9".parse().unwrap(), t));
        assert_eq!(
            b.prefix("::ffff:198.51.100.9".parse().unwrap()).to_string(),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn host_prefixes_hash_every_address_apart() {
        let b = Buckets::new(PrefixRate {
            rate: 1,
            burst: 1,
            ipv4_prefix: 32,
            ipv6_prefix: 128,
            table_size: 1 << 20,
        });
        let t = Tick::now();
        // 1,000 neighbours in a table of a million: each its own bucket (collisions are
        // possible but, with a good mix, far rarer than 1 in 10 here).
        let fresh = (0..1000u32)
            .filter(|i| b.take(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t))
            .count();
        assert!(fresh >= 990, "{fresh}");
    }

    #[test]
    fn a_moment_older_than_the_bucket_s_takes_without_refilling() {
        let b = buckets(1_000, 10);
        let t = Tick::now().after(Duration::from_secs(5));
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!((0..20).filter(|_| b.take(source, t)).count(), 10);
        // A thread with a reading 3 ms older finds the bucket empty, not refilled.
        let earlier = Tick(t.0 - 3);
        assert!(!b.take(source, earlier));
        assert_eq!(b.state(source, t).tokens, 0.0);
        assert!(b.take(source, t.after(Duration::from_millis(2))));
    }

    /// The first of `candidates` whose entry is none of `taken`'s: prefixes that collide share
    /// an entry by design (probability 2 / entries with the table's random key), so a test of
    /// clients apart takes clients the table keeps apart.
    fn apart(table: &Occupancy, taken: &[IpAddr], candidates: &[String]) -> IpAddr {
        let index = |a: IpAddr| table.prefixes.index(a);
        candidates
            .iter()
            .map(|c| c.parse().unwrap())
            .find(|c| taken.iter().all(|t| index(*t) != index(*c)))
            .expect("a candidate in an entry of its own")
    }

    #[test]
    fn occupancy_holds_at_most_its_limit_and_gives_back_on_drop() {
        let table = Arc::new(Occupancy::new(2, 32, 64, 1 << 10));
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let first = table.enter(a).unwrap();
        let _second = table.enter(a).unwrap();
        assert!(table.enter(a).is_none());
        assert_eq!(table.held(a), 2);
        // Another address is not affected; an IPv6 client is its /64.
        let v4s: Vec<String> = (6..20).map(|n| format!("203.0.113.{n}")).collect();
        let other = apart(&table, &[a], &v4s);
        assert!(table.enter(other).is_some());
        let v6s: Vec<String> = (0..20).map(|n| format!("2001:db8:0:{n}::1")).collect();
        let v6_client = apart(&table, &[a, other], &v6s);
        let same_64 = |last: u16| {
            let IpAddr::V6(v6) = v6_client else {
                unreachable!("an IPv6 candidate")
            };
            let mut segments = v6.segments();
            segments[7] = last;
            IpAddr::from(std::net::Ipv6Addr::from(segments))
        };
        let v6 = table.enter(v6_client).unwrap();
        let _v6b = table.enter(same_64(0xffff)).unwrap();
        assert!(table.enter(same_64(2)).is_none());
        drop(v6);
        assert!(table.enter(same_64(2)).is_some());
        drop(first);
        assert_eq!(table.held(a), 1);
        assert!(table.enter(a).is_some());
    }
}
