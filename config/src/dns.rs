//! geodns settings: listeners, zones, the location database and steering overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::types::{Continent, CountryCode, HumanDuration, Secret};

/// Settings of every geodns instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    /// UDP and TCP addresses to answer on.
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// Metrics and admin API address.
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// Token the admin API's state-changing requests (`/admin-state`) must present as
    /// `Authorization: Bearer TOKEN`; required when `admin` is not a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// MaxMind DB (GeoIP2/GeoLite2 City or Country); reloaded when the file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip_db: Option<PathBuf>,
    /// Where operators' overrides (`geodns admin`) are kept, so that they outlive a restart;
    /// they last only as long as the process when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_state: Option<PathBuf>,
    /// Site order for clients whose location is unknown; file order of sites when empty.
    #[serde(default)]
    pub default_order: Vec<String>,
    /// How long a silent feed's last state is trusted before the site counts as unknown.
    #[serde(default = "default_feed_grace")]
    pub feed_grace: HumanDuration,
    /// Token presented to healthd feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_token: Option<Secret>,
    /// TTL of service answers while a site they depend on has changed state recently (within
    /// three service TTLs), so that caches converge quickly after a failover.
    #[serde(default = "default_changing_ttl")]
    pub changing_ttl: u32,
    /// Fraction of queries logged (0 to 1), one line each, under the `query` log target.
    #[serde(default)]
    pub query_log_sample: f64,
    /// Authoritative zones.
    #[serde(default)]
    pub zones: Vec<Zone>,
    /// Site orders forced for countries, continents or networks, first match wins.
    #[serde(default)]
    pub overrides: Vec<Override>,
    /// Response rate limiting over UDP, per client prefix.
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// DNS cookies' shared secret; without it each instance makes up its own, and a resolver
    /// that anycast moves to another instance presents a cookie that one does not accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookies: Option<Cookies>,
    /// Unix socket where the running geodns offers its sockets to a replacement started with
    /// `--take-over` (an upgrade without a lost query); none: no hand-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<PathBuf>,
    /// The HLS content steering server, for services with `content_steering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_steering: Option<SteeringServer>,
}

/// Where geodns answers players' steering requests (HTTP; put TLS in front of it, or behind a
/// load balancer, for `https` steering URLs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringServer {
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Proxies (load balancers, CDNs) in front of the steering server: a request from one of
    /// these networks is located by the last address of its `X-Forwarded-For` that is not a
    /// trusted proxy, instead of by the proxy's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<IpNet>,
}

/// DNS cookies (RFC 7873, RFC 9018): the secret every geodns of the deployment derives its
/// server cookies from, so that each accepts the others'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookies {
    /// The shared secret (at least 16 characters).
    pub secret: Secret,
    /// The secret being replaced, still accepted while every instance moves to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<Secret>,
    /// How often the key derived from the secret changes (a cookie stays valid an hour, across
    /// a change).
    #[serde(default = "default_cookie_rotate")]
    pub rotate: HumanDuration,
}

fn default_cookie_rotate() -> HumanDuration {
    HumanDuration::from_secs(86_400)
}

/// Response rate limiting (RRL): UDP responses to each source prefix are limited to a
/// sustained rate with a burst allowance; past it, every `slip`-th response goes out truncated
/// (an honest resolver retries over TCP, which is never limited) and the rest are dropped, so
/// a spoofed flood's victim receives at most as many bytes as the flood carried.
///
/// The defaults must never limit a real resolver. A resolver asks us once per name, client
/// subnet (ECS) and TTL: a large ISP's resolver behind one /24 serving 10,000 client /24s
/// asks for a 20-second service name at about 500 queries per second, a few names at about
/// 1,500. Hence 2,000 per second sustained, 4,000 in a burst (a resolver restarting with an
/// empty cache), per /24 and /56 (how resolvers' addresses are allocated). A flood from one
/// prefix above that is cut to the rate; a resolver with a valid DNS cookie is exempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Off: every response is sent.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Responses per second per prefix, sustained.
    #[serde(default = "default_rrl_rate")]
    pub rate: u32,
    /// Responses a prefix may receive at once after being quiet (the bucket's size).
    #[serde(default = "default_rrl_burst")]
    pub burst: u32,
    /// Every `slip`-th limited response is sent truncated; 0 drops them all, 1 truncates all.
    #[serde(default = "default_rrl_slip")]
    pub slip: u32,
    /// Prefix length grouping IPv4 sources.
    #[serde(default = "default_rrl_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// Prefix length grouping IPv6 sources.
    #[serde(default = "default_rrl_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Buckets in the limiter's table (a power of two, 12 bytes each): prefixes beyond it share
    /// buckets, so memory stays bounded whatever the number of sources.
    #[serde(default = "default_rrl_table_size")]
    pub table_size: u32,
}

impl RateLimit {
    /// The buckets this limit keeps.
    pub fn buckets(&self) -> crate::types::PrefixRate {
        crate::types::PrefixRate {
            rate: self.rate,
            burst: self.burst,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            table_size: self.table_size,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            rate: default_rrl_rate(),
            burst: default_rrl_burst(),
            slip: default_rrl_slip(),
            ipv4_prefix: default_rrl_ipv4_prefix(),
            ipv6_prefix: default_rrl_ipv6_prefix(),
            table_size: default_rrl_table_size(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_rrl_rate() -> u32 {
    2_000
}
fn default_rrl_burst() -> u32 {
    4_000
}
fn default_rrl_slip() -> u32 {
    2
}
fn default_rrl_ipv4_prefix() -> u8 {
    24
}
fn default_rrl_ipv6_prefix() -> u8 {
    56
}
fn default_rrl_table_size() -> u32 {
    1 << 20
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin: default_admin(),
            admin_token: None,
            geoip_db: None,
            admin_state: None,
            default_order: Vec::new(),
            feed_grace: default_feed_grace(),
            feed_token: None,
            changing_ttl: default_changing_ttl(),
            query_log_sample: 0.0,
            zones: Vec::new(),
            overrides: Vec::new(),
            rate_limit: RateLimit::default(),
            cookies: None,
            handover: None,
            content_steering: None,
        }
    }
}

/// An authoritative zone: SOA and NS from here plus static records, or an RFC 1035 zone file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// The zone apex (`"tv.example.net"`).
    pub origin: String,
    /// An RFC 1035 zone file holding the zone's records (SOA and NS included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Start of authority; required unless `file` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soa: Option<Soa>,
    /// Name servers of the zone.
    #[serde(default)]
    pub ns: Vec<String>,
    /// Static records.
    #[serde(default)]
    pub records: Vec<Record>,
}

/// SOA fields (RFC 1035 section 3.3.13); `minimum` is the negative-caching TTL (RFC 2308).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Soa {
    /// Primary name server.
    pub mname: String,
    /// Responsible mailbox as a name (`hostmaster.example.net`).
    pub rname: String,
    #[serde(default = "default_serial")]
    pub serial: u32,
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    #[serde(default = "default_retry")]
    pub retry: u32,
    #[serde(default = "default_expire")]
    pub expire: u32,
    #[serde(default = "default_minimum")]
    pub minimum: u32,
}

/// A static record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Owner name relative to the zone (`"www"`), `"@"` for the apex, or absolute with a dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    #[serde(default = "default_record_ttl")]
    pub ttl: u32,
    /// Record data in zone file syntax (`"192.0.2.1"`, `"10 mail.example.net."`).
    pub data: String,
}

/// Record types accepted as static records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Caa,
    Ns,
}

/// A steering override: clients matching any of the lists get `sites` in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    #[serde(default)]
    pub countries: Vec<CountryCode>,
    #[serde(default)]
    pub continents: Vec<Continent>,
    #[serde(default)]
    pub networks: Vec<IpNet>,
    /// Site order for matching clients.
    pub sites: Vec<String>,
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 5353))]
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9153))
}
fn default_feed_grace() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_changing_ttl() -> u32 {
    5
}
fn default_serial() -> u32 {
    1
}
fn default_refresh() -> u32 {
    3600
}
fn default_retry() -> u32 {
    600
}
fn default_expire() -> u32 {
    604_800
}
fn default_minimum() -> u32 {
    30
}
fn default_record_ttl() -> u32 {
    300
}
