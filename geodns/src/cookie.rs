//! DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018: a resolver that
//! presents a server cookie we issued has shown that it receives our answers at its address,
//! so its source is not spoofed and the rate limiter leaves it alone.
//!
//! The server cookie is version 1, three reserved bytes, a timestamp (seconds, serial
//! arithmetic) and SipHash-2-4 over the client cookie, those eight bytes and the client's
//! address. Its key is derived from the deployment's shared secret and the timestamp's period
//! (`rotate`), so the key changes every period without coordination between instances, every
//! instance holding the secret accepts every other's cookies (anycast moves a resolver between
//! them), and a cookie stays verifiable for its whole hour of validity across a period change.
//! A previous secret may be listed while a new one is rolled out.

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher24 as SipHasher128};

/// The COOKIE option code.
pub const OPTION: u16 = 10;
/// A client cookie's length.
pub const CLIENT_LEN: usize = 8;
/// Our server cookie's length (RFC 9018).
pub const SERVER_LEN: usize = 16;
/// How old a server cookie may be, and how far in the future (RFC 9018 section 4.3).
const MAX_AGE: u32 = 3600;
const MAX_AHEAD: u32 = 300;

/// A COOKIE option as a query carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A client cookie alone: the client's first contact, or it lost our cookie.
    Client(&'a [u8; CLIENT_LEN]),
    /// A client cookie and a server cookie (8 to 32 bytes, RFC 7873 section 4).
    Both(&'a [u8; CLIENT_LEN], &'a [u8]),
    /// Any other length: the query gets FORMERR (RFC 7873 section 5.2.2).
    Malformed,
}

/// Reads a COOKIE option's data.
pub fn presented(data: &[u8]) -> Presented<'_> {
    let Some(client) = data.get(..CLIENT_LEN).and_then(|c| c.try_into().ok()) else {
        return Presented::Malformed;
    };
    match data.len() {
        CLIENT_LEN => Presented::Client(client),
        16..=40 => Presented::Both(client, &data[CLIENT_LEN..]),
        _ => Presented::Malformed,
    }
}

/// The keys cookies are made and checked with.
#[derive(Clone)]
pub struct Jar {
    /// 128-bit keys from the current secret and, while a new one is rolled out, the previous.
    secrets: Vec<[u8; 16]>,
    /// Seconds per key period.
    rotate: u32,
}

impl std::fmt::Debug for Jar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jar")
            .field("secrets", &self.secrets.len())
            .field("rotate", &self.rotate)
            .finish()
    }
}

impl Jar {
    /// Keys from `secret` (and a `previous` one still accepted), changing every `rotate`.
    pub fn new(secret: &str, previous: Option<&str>, rotate: Duration) -> Self {
        let secrets = std::iter::once(secret)
            .chain(previous)
            .map(|s| stretch(s.as_bytes()))
            .collect();
        Self {
            secrets,
            rotate: rotate.as_secs().clamp(60, u64::from(u32::MAX)) as u32,
        }
    }

    /// Keys from a secret of this process alone (the same across reloads): cookies work, but
    /// another instance does not accept this one's.
    pub fn random() -> Self {
        static JAR: std::sync::OnceLock<Jar> = std::sync::OnceLock::new();
        JAR.get_or_init(|| {
            let stack = 0u8;
            let seed = format!(
                "{:?}{:p}{}",
                SystemTime::now(),
                &raw const stack,
                std::process::id()
            );
            Self::new(&seed, None, Duration::from_secs(86_400))
        })
        .clone()
    }

    /// The server cookie for `client` at `source`, issued at `now` (seconds since the epoch).
    pub fn issue(&self, client: &[u8; CLIENT_LEN], source: IpAddr, now: u32) -> [u8; SERVER_LEN] {
        let mut cookie = [0u8; SERVER_LEN];
        cookie[0] = 1;
        cookie[4..8].copy_from_slice(&now.to_be_bytes());
        let hash = self.hash(&self.secrets[0], client, &cookie[..8], source);
        cookie[8..].copy_from_slice(&hash);
        cookie
    }

    /// Whether `server` is a cookie we (or an instance sharing the secret) issued to `client`
    /// at `source`, still fresh at `now`.
    pub fn valid(
        &self,
        client: &[u8; CLIENT_LEN],
        server: &[u8],
        source: IpAddr,
        now: u32,
    ) -> bool {
        if server.len() != SERVER_LEN || server[0] != 1 {
            return false;
        }
        let issued = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial arithmetic: the difference, either way, as a signed number of seconds.
        let age = now.wrapping_sub(issued) as i32;
        if age > MAX_AGE as i32 || age < -(MAX_AHEAD as i32) {
            return false;
        }
        self.secrets.iter().any(|secret| {
            let hash = self.hash(secret, client, &server[..8], source);
            // Not secret-dependent timing worth guarding: a forged cookie only buys what an
            // honest client gets by asking once.
            hash == server[8..]
        })
    }

    /// SipHash-2-4 of client cookie | version, reserved, timestamp | address, keyed for the
    /// timestamp's period.
    fn hash(&self, secret: &[u8; 16], client: &[u8], head: &[u8], source: IpAddr) -> [u8; 8] {
        let issued = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let key = period_key(secret, issued / self.rotate);
        let mut h = SipHasher24::new_with_key(&key);
        h.write(client);
        h.write(head);
        match source.to_canonical() {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.finish().to_le_bytes()
    }
}

/// A 128-bit key from a secret of any length.
fn stretch(secret: &[u8]) -> [u8; 16] {
    let mut h = SipHasher128::new_with_key(b"geodns-cookie-v1");
    h.write(secret);
    h.finish128().as_bytes()
}

/// The key of one period.
fn period_key(secret: &[u8; 16], period: u32) -> [u8; 16] {
    let mut h = SipHasher128::new_with_key(secret);
    h.write(&period.to_be_bytes());
    h.finish128().as_bytes()
}

/// Seconds since the epoch, as cookies carry them.
pub fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// The COOKIE option an answer carries: the client's cookie and a fresh server cookie.
pub fn answer(jar: &Jar, client: &[u8; CLIENT_LEN], source: IpAddr, now: u32) -> [u8; 24] {
    let mut option = [0u8; CLIENT_LEN + SERVER_LEN];
    option[..CLIENT_LEN].copy_from_slice(client);
    option[CLIENT_LEN..].copy_from_slice(&jar.issue(client, source, now));
    option
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const CLIENT: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn source() -> IpAddr {
        "192.0.2.53".parse().unwrap()
    }

    #[test]
    fn a_cookie_is_valid_where_and_while_it_should_be() {
        let jar = Jar::new("shared secret", None, DAY);
        let now = 1_800_000_000;
        let cookie = jar.issue(&CLIENT, source(), now);
        assert_eq!(&cookie[..4], &[1, 0, 0, 0]);
        assert!(jar.valid(&CLIENT, &cookie, source(), now));
        assert!(
            jar.valid(&CLIENT, &cookie, source(), now + 3600),
            "an hour old"
        );
        assert!(
            !jar.valid(&CLIENT, &cookie, source(), now + 3601),
            "too old"
        );
        assert!(
            jar.valid(&CLIENT, &cookie, source(), now - 300),
            "clock skew"
        );
        assert!(!jar.valid(&CLIENT, &cookie, source(), now - 301));
        let other: IpAddr = "192.0.2.54".parse().unwrap();
        assert!(!jar.valid(&CLIENT, &cookie, other, now), "another address");
        assert!(
            !jar.valid(&[0; 8], &cookie, source(), now),
            "another client cookie"
        );
        let mut forged = cookie;
        forged[15] ^= 1;
        assert!(!jar.valid(&CLIENT, &forged, source(), now));
        assert!(!jar.valid(&CLIENT, &cookie[..15], source(), now));
    }

    #[test]
    fn instances_sharing_the_secret_accept_each_others_cookies_across_periods() {
        let a = Jar::new("shared secret", None, Duration::from_secs(600));
        let b = Jar::new("shared secret", None, Duration::from_secs(600));
        let stranger = Jar::new("another secret", None, Duration::from_secs(600));
        // Issued just before a period ends, checked in the next.
        let now = 1_800_000_000 / 600 * 600 + 599;
        let cookie = a.issue(&CLIENT, source(), now);
        assert!(b.valid(&CLIENT, &cookie, source(), now + 1800));
        assert!(!stranger.valid(&CLIENT, &cookie, source(), now));
        // A new secret rolled out with the old one still accepted.
        let rolled = Jar::new(
            "new secret",
            Some("shared secret"),
            Duration::from_secs(600),
        );
        assert!(rolled.valid(&CLIENT, &cookie, source(), now + 10));
        let fresh = rolled.issue(&CLIENT, source(), now + 10);
        assert!(
            !a.valid(&CLIENT, &fresh, source(), now + 10),
            "new cookies use the new secret"
        );
        // IPv4-mapped and plain IPv4 are one client.
        let mapped: IpAddr = "::ffff:192.0.2.53".parse().unwrap();
        assert!(a.valid(&CLIENT, &cookie, mapped, now));
    }

    #[test]
    fn option_lengths_follow_rfc_7873() {
        assert_eq!(presented(&CLIENT), Presented::Client(&CLIENT));
        let both = [CLIENT.as_slice(), &[9u8; 16]].concat();
        assert!(matches!(presented(&both), Presented::Both(_, s) if s.len() == 16));
        for len in [0, 5, 9, 15, 41] {
            assert_eq!(presented(&vec![0u8; len]), Presented::Malformed, "{len}");
        }
    }
}
