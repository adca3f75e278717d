//! A site (datacenter): where it is, its upstream BGP peers, its stream nodes, and the settings
//! of the daemons that run there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::types::{
    Community, ControlEndpoint, CountryCode, HumanDuration, LargeCommunity, Secret,
};

/// One datacenter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Short unique name, used everywhere else to refer to the site (`"ams"`).
    pub name: String,
    /// Country the site is in.
    pub country: CountryCode,
    /// Latitude in degrees, -90..=90; used to rank sites by distance from viewers.
    pub latitude: f64,
    /// Longitude in degrees, -180..=180.
    pub longitude: f64,
    /// Our AS number at this site (4-octet ASNs allowed).
    pub asn: u32,
    /// BGP identifier of the site's speaker.
    pub router_id: Ipv4Addr,
    /// Upstream routers the site's speaker peers with.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Stream nodes at this site.
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Settings of the site's bgp-speaker.
    #[serde(default)]
    pub speaker: SpeakerSettings,
    /// Settings of the site's healthd.
    #[serde(default)]
    pub healthd: HealthdSettings,
}

/// An upstream BGP router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// Name unique within the site, shown in the CLI and metrics (`"r1"`).
    pub name: String,
    /// The router's address.
    pub address: IpAddr,
    /// The router's AS number; equal to the site's ASN for iBGP.
    pub remote_asn: u32,
    /// TCP port of the router.
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    /// Local address to connect from (and to accept on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<IpAddr>,
    /// Local TCP port to connect from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// Hold time we propose, in seconds: 0 (no keepalives) or at least 3 (RFC 4271).
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Keepalive interval in seconds; a third of the negotiated hold time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<u16>,
    /// Only accept connections from the router, never connect.
    #[serde(default)]
    pub passive: bool,
    /// First delay before reconnecting; doubles on each failure up to a minute.
    #[serde(default = "default_connect_retry")]
    pub connect_retry: HumanDuration,
    /// TCP-MD5 signature key (RFC 2385).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_key: Option<Secret>,
    /// eBGP multihop: the IP TTL of our packets (1 means directly connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multihop: Option<u8>,
    /// Generalized TTL security (RFC 5082): send with TTL 255, accept only TTL 255.
    #[serde(default)]
    pub ttl_security: bool,
    /// Next hop to announce for IPv4 routes; our session address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<Ipv4Addr>,
    /// Next hop to announce for IPv6 routes; required for IPv6 prefixes over an IPv4 session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Advertise graceful restart (RFC 4724) and help the peer when it restarts.
    #[serde(default = "default_true")]
    pub graceful_restart: bool,
    /// BFD (RFC 5880/5881, single hop) with this router: when it goes down the BGP session
    /// is torn down at once, as BIRD and FRR do with `bfd on`. Needs `local_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSettings>,
    /// What we announce to this router.
    #[serde(default)]
    pub export: ExportPolicy,
    /// What we do with routes this router sends us.
    #[serde(default)]
    pub import: ImportPolicy,
}

/// A peer's BFD session: FRR's defaults (300 ms, multiplier 3) unless the operator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BfdSettings {
    /// How often we send, and how often we can take the router's packets, once up.
    #[serde(default = "default_bfd_interval")]
    pub interval: HumanDuration,
    /// Packets the router may miss before the session is down.
    #[serde(default = "default_bfd_multiplier")]
    pub multiplier: u8,
    /// Wait for the router to speak first.
    #[serde(default)]
    pub passive: bool,
}

impl BfdSettings {
    /// How long a dead link takes to be found: the interval times the multiplier.
    pub fn detection_time(&self) -> std::time::Duration {
        self.interval.get() * u32::from(self.multiplier)
    }
}

fn default_bfd_interval() -> HumanDuration {
    HumanDuration::from_millis(300)
}
fn default_bfd_multiplier() -> u8 {
    3
}

/// Per-peer export policy: upstreams use different community schemes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPolicy {
    /// Services whose prefixes go to this peer; every service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Extra copies of our ASN prepended for this peer.
    #[serde(default)]
    pub prepend: u8,
    /// MED sent to this peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// Local preference (iBGP peers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Standard communities added for this peer.
    #[serde(default)]
    pub communities: Vec<Community>,
    /// Large communities added for this peer.
    #[serde(default)]
    pub large_communities: Vec<LargeCommunity>,
}

/// Import policy: by default received routes are counted and discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportPolicy {
    /// Keep received routes in an Adj-RIB-In.
    #[serde(default)]
    pub enabled: bool,
    /// Most prefixes accepted from this peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<u32>,
    /// What to do past `max_prefixes`.
    #[serde(default)]
    pub on_max_prefixes: MaxPrefixAction,
    /// How long to wait before reconnecting after a `restart`.
    #[serde(default = "default_max_prefix_restart")]
    pub restart_after: HumanDuration,
}

impl Default for ImportPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            max_prefixes: None,
            on_max_prefixes: MaxPrefixAction::default(),
            restart_after: default_max_prefix_restart(),
        }
    }
}

/// What happens when a peer sends more prefixes than allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaxPrefixAction {
    /// Log a warning and keep the session.
    #[default]
    Warn,
    /// Send a Cease NOTIFICATION and reconnect after `restart_after`.
    Restart,
}

/// A stream node: an HLS origin viewers are sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Name unique across the deployment (`"ams-1"`).
    pub name: String,
    /// Address answered to viewers over IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// Address answered to viewers over IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Where the node's HTTP server listens (streamnode binds it, healthd probes it).
    pub listen: SocketAddr,
    /// Status document URL; `http://LISTEN/status` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// Egress capacity in megabits per second; load is egress over capacity.
    pub capacity_mbps: u32,
    /// Services this node carries.
    pub services: Vec<String>,
    /// The version of the software the node runs, as the operator labels it (`"2.4.0"`): a
    /// service's canary sends a share of viewers to the nodes with its version, and the node's
    /// metrics and status, healthd's and geodns's carry it so the canary can be told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the node does: package channels from their feeds (an origin), or serve them from
    /// origins through a cache (an edge).
    #[serde(default)]
    pub role: NodeRole,
    /// An edge's cache and origins; `role = "edge"` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeSettings>,
    /// Check profile for this node, overriding the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// TLS for the node's HTTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Admin API (drain) and metrics address of streamnode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// Token the admin API's state-changing requests (drain, undrain) must present as
    /// `Authorization: Bearer TOKEN`; required when `admin` is not a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// Unix socket where the running streamnode offers its sockets and state to a
    /// replacement (`streamnode replace`: an upgrade with no request failed); none: no
    /// hand-over. Each node on a host needs its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<PathBuf>,
    /// Offer fault injection on the admin API (`/freeze`, `/unfreeze`: the streams stop
    /// advancing while HTTP keeps answering). For labs and demos, never production.
    #[serde(default)]
    pub fault_injection: bool,
    /// Viewer connections served at once; further ones wait in the listen queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// A viewer must finish its TLS handshake and request headers within this.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// A connection on which nothing moves either way for this long is closed (idle
    /// keep-alives, viewers that stopped reading).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// What one client may take of the node: connections at once and requests per second.
    #[serde(default)]
    pub client_limits: ClientLimits,
}

/// What a stream node does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Packages its channels from their feeds.
    #[default]
    Origin,
    /// Serves the same URLs from the service's origins, through a cache: one origin fetch per
    /// object however many viewers ask at once.
    Edge,
}

/// An edge's cache and where it fetches from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSettings {
    /// Origins (`ADDR:PORT`), tried in order, one that fails skipped for a while; none: the
    /// service's first anycast address on `origin_port`, so that the origin routing chooses
    /// (a site withdrawn by BGP moves its edges' traffic too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<SocketAddr>,
    /// The port of the anycast origin.
    #[serde(default = "default_origin_port")]
    pub origin_port: u16,
    /// Memory the cache may hold, in MiB (least recently used objects go first).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
    /// Longest a live playlist is served from the cache; at most half its target duration
    /// whatever this says, so players see each new segment in time.
    #[serde(default = "default_playlist_ttl")]
    pub playlist_ttl: HumanDuration,
    /// When the origins fail, a cached playlist is served at most this old (a live playlist
    /// older than this would send players to segments gone from the window).
    #[serde(default = "default_playlist_stale")]
    pub playlist_stale: HumanDuration,
    /// An origin fetch must answer within this.
    #[serde(default = "default_origin_timeout")]
    pub origin_timeout: HumanDuration,
    /// A second tier on disk for the segments memory lets go; none: memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskTier>,
}

/// An edge's disk tier: segments evicted from memory are written here, and read back on a
/// memory miss instead of asking the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskTier {
    /// A directory of the edge's own (absolute). Its files of an earlier run are removed at
    /// start: the index lives in memory, and a file it did not write is not trusted.
    pub path: PathBuf,
    /// Bytes the tier may hold, in MiB (least recently used segments go first).
    pub mib: u32,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            origin_port: default_origin_port(),
            cache_mib: default_cache_mib(),
            playlist_ttl: default_playlist_ttl(),
            playlist_stale: default_playlist_stale(),
            origin_timeout: default_origin_timeout(),
            disk: None,
        }
    }
}

fn default_origin_port() -> u16 {
    8080
}
fn default_cache_mib() -> u32 {
    256
}
fn default_playlist_ttl() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_playlist_stale() -> HumanDuration {
    HumanDuration::from_secs(6)
}
fn default_origin_timeout() -> HumanDuration {
    HumanDuration::from_secs(3)
}

/// Limits per client of a stream node, so that one client (a flood, a broken player in a loop)
/// cannot take the node from everyone else: connections it may hold at once (more are closed
/// as soon as they are accepted) and requests per second, a token bucket (past it, 429).
///
/// The defaults must never limit real viewers, many of whom share an address: behind a
/// carrier-grade NAT, 64 subscribers or more per IPv4 address, each with a couple of players.
/// A player asks for a media playlist and a segment every target duration (2 to 6 s), a few
/// more at start-up: about one request per second per viewer, so 200 per second sustained and
/// 1,000 at once (a match kicking off on every screen behind the address) per client; browsers
/// open at most 6 connections per host and players keep them alive, so 256 connections. An IPv6
/// client is its /64 (one subscriber's network), an IPv4 client its address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimits {
    /// Off: no client is limited (the node's `max_connections` still holds).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Connections one client may hold open at once.
    #[serde(default = "default_client_connections")]
    pub connections: u32,
    /// Requests per second per client, sustained.
    #[serde(default = "default_client_rate")]
    pub rate: u32,
    /// Requests a client may make at once after being quiet.
    #[serde(default = "default_client_burst")]
    pub burst: u32,
    /// Prefix length that makes one IPv4 client.
    #[serde(default = "default_client_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// Prefix length that makes one IPv6 client.
    #[serde(default = "default_client_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Entries in each table (connections, request buckets; a power of two): clients beyond it
    /// share entries, so memory stays bounded whatever the number of clients.
    #[serde(default = "default_client_table_size")]
    pub table_size: u32,
    /// Clients never limited: the site's edge proxies, probes from elsewhere. The addresses the
    /// site's healthd listens on are always trusted, so its probes are never limited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted: Vec<ipnet::IpNet>,
}

impl ClientLimits {
    /// The request buckets these limits keep.
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

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            connections: default_client_connections(),
            rate: default_client_rate(),
            burst: default_client_burst(),
            ipv4_prefix: default_client_ipv4_prefix(),
            ipv6_prefix: default_client_ipv6_prefix(),
            table_size: default_client_table_size(),
            trusted: Vec::new(),
        }
    }
}

fn default_client_connections() -> u32 {
    256
}
fn default_client_rate() -> u32 {
    200
}
fn default_client_burst() -> u32 {
    1_000
}
fn default_client_ipv4_prefix() -> u8 {
    32
}
fn default_client_ipv6_prefix() -> u8 {
    64
}
fn default_client_table_size() -> u32 {
    1 << 16
}

fn default_max_connections() -> u32 {
    10_000
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl Node {
    /// The status URL healthd reads.
    pub fn status_url(&self) -> String {
        match &self.status_url {
            Some(url) => url.clone(),
            None => format!("{}/status", self.base_url()),
        }
    }

    /// Where the node's HTTP server is reached: `listen`, or, for a node listening on every
    /// address (an origin that also answers on an anycast address of its own), its viewer
    /// address on the same port.
    pub fn reach(&self) -> SocketAddr {
        if !self.listen.ip().is_unspecified() {
            return self.listen;
        }
        let ip = match (self.listen.ip(), self.ipv4, self.ipv6) {
            (IpAddr::V4(_), Some(v4), _) => IpAddr::V4(v4),
            (_, _, Some(v6)) => IpAddr::V6(v6),
            (_, Some(v4), None) => IpAddr::V4(v4),
            (ip, None, None) => ip,
        };
        SocketAddr::new(ip, self.listen.port())
    }

    /// Base URL of the node's HTTP server.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.reach())
    }
}

/// A certificate chain and private key in PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Settings of a site's bgp-speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerSettings {
    /// Control API endpoint healthd and the CLI use; `unix:/run/anycast/SITE/speaker.sock`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlEndpoint>,
    /// Token required on a TCP control endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<Secret>,
    /// Metrics (`/metrics`) address.
    #[serde(default = "default_speaker_admin")]
    pub admin: SocketAddr,
    /// Address to accept BGP connections on; needed for passive peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Restart time advertised in the graceful restart capability, in seconds.
    #[serde(default = "default_restart_time")]
    pub restart_time: u16,
    /// How long a drain keeps routes tagged GRACEFUL_SHUTDOWN before withdrawing them.
    #[serde(default = "default_drain_delay")]
    pub drain_delay: HumanDuration,
    /// After the speaker starts, End-of-RIB is held back this long (or until healthd says it
    /// has re-announced everything), so that peers keeping our routes through a graceful
    /// restart do not flush them before healthd has announced them again.
    #[serde(default = "default_startup_hold")]
    pub startup_hold: HumanDuration,
    /// Unix socket where the running speaker offers its control, admin and BGP listeners and
    /// its table to a replacement (`bgp-speaker replace`); none: no hand-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<PathBuf>,
}

impl SpeakerSettings {
    /// The control endpoint of the speaker of `site`.
    pub fn control_endpoint(&self, site: &str) -> ControlEndpoint {
        self.control.clone().unwrap_or_else(|| {
            ControlEndpoint::Unix(PathBuf::from(format!("/run/anycast/{site}/speaker.sock")))
        })
    }
}

impl Default for SpeakerSettings {
    fn default() -> Self {
        Self {
            control: None,
            control_token: None,
            admin: default_speaker_admin(),
            listen: None,
            restart_time: default_restart_time(),
            drain_delay: default_drain_delay(),
            startup_hold: default_startup_hold(),
            handover: None,
        }
    }
}

/// The heartbeat intervals a node's status stream offers: shorter costs the node CPU for
/// nothing a network can tell apart, longer makes a silent node slow to find.
pub const HEARTBEAT_MIN: std::time::Duration = std::time::Duration::from_millis(20);
pub const HEARTBEAT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Settings of a site's healthd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthdSettings {
    /// Where the site feed is served (whole document and change stream).
    #[serde(default = "default_feed_listen")]
    pub feed: SocketAddr,
    /// URL geodns uses to reach the feed; `http://FEED` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_url: Option<String>,
    /// Token feed readers must present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_token: Option<Secret>,
    /// Admin API (drain) and metrics address.
    #[serde(default = "default_healthd_admin")]
    pub admin: SocketAddr,
    /// The address probes and status streams leave from (bound before connecting); the
    /// kernel's choice when absent. The site's stream nodes never limit it (nor the feed's and
    /// admin API's addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_source: Option<IpAddr>,
    /// Token the admin API's state-changing requests (`/drain`, `/undrain`) must present as
    /// `Authorization: Bearer TOKEN`; required when `admin` is not a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// Lease on every announcement; renewed each round, so routes go this long after healthd dies.
    #[serde(default = "default_lease")]
    pub lease: HumanDuration,
    /// While this file exists the whole site is drained (like ExaBGP's healthcheck).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_file: Option<PathBuf>,
    /// How long a service that just went down stays announced, while the other sites' feeds
    /// say whether they went down too (so sites failing together do not all withdraw). Only a
    /// site with no site listed before it heard healthy waits; at least one feed round trip
    /// between healthds.
    #[serde(default = "default_withdraw_settle")]
    pub withdraw_settle: HumanDuration,
    /// Keep a status stream open to each node (`GET /status/stream`): a node that exits is
    /// down at once, one that falls silent after `heartbeat_misses` heartbeats, and one whose
    /// ingest is lost as soon as it says so. Probes still decide when it comes back.
    #[serde(default = "default_true")]
    pub node_stream: bool,
    /// How often a node's status stream must say something.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: HumanDuration,
    /// Heartbeats missed in a row after which a node is down: long enough that a lost TCP
    /// segment, resent, does not take a node out.
    #[serde(default = "default_heartbeat_misses")]
    pub heartbeat_misses: u32,
    /// Unix socket where the running healthd offers its feed and admin listeners and what it
    /// knows of each node to a replacement (`healthd replace`); none: no hand-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<PathBuf>,
}

impl HealthdSettings {
    pub fn feed_url(&self) -> String {
        self.feed_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.feed))
    }
}

impl Default for HealthdSettings {
    fn default() -> Self {
        Self {
            feed: default_feed_listen(),
            feed_url: None,
            feed_token: None,
            admin: default_healthd_admin(),
            probe_source: None,
            admin_token: None,
            lease: default_lease(),
            drain_file: None,
            withdraw_settle: default_withdraw_settle(),
            node_stream: true,
            heartbeat: default_heartbeat(),
            heartbeat_misses: default_heartbeat_misses(),
            handover: None,
        }
    }
}

fn default_withdraw_settle() -> HumanDuration {
    HumanDuration::from_millis(150)
}
fn default_heartbeat() -> HumanDuration {
    HumanDuration::from_millis(50)
}
fn default_heartbeat_misses() -> u32 {
    6
}

fn default_true() -> bool {
    true
}
fn default_bgp_port() -> u16 {
    179
}
fn default_hold_time() -> u16 {
    // Short enough that a dead speaker's routes go quickly, long enough for a busy host.
    9
}
fn default_connect_retry() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_max_prefix_restart() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_speaker_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9179))
}
fn default_restart_time() -> u16 {
    120
}
fn default_drain_delay() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_startup_hold() -> HumanDuration {
    HumanDuration::from_secs(3)
}
fn default_feed_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}
fn default_healthd_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9181))
}
fn default_lease() -> HumanDuration {
    HumanDuration::from_secs(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(listen: &str, addresses: &str) -> Node {
        toml::from_str(&format!(
            "name = \"a-1\"\nlisten = \"{listen}\"\ncapacity_mbps = 1000\nservices = []\n{addresses}"
        ))
        .expect("a node")
    }

    #[test]
    fn a_node_listening_on_every_address_is_reached_at_its_viewer_address() {
        let both = "ipv4 = \"10.1.0.11\"\nipv6 = \"2001:db8::11\"\n";
        let n = node("0.0.0.0:8080", both);
        assert_eq!(n.reach(), "10.1.0.11:8080".parse().unwrap());
        assert_eq!(n.status_url(), "http://10.1.0.11:8080/status");
        assert_eq!(
            node("[::]:8080", both).reach(),
            "[2001:db8::11]:8080".parse().unwrap()
        );
        assert_eq!(
            node("[::]:8080", "ipv4 = \"10.1.0.11\"\n").reach(),
            "10.1.0.11:8080".parse().unwrap()
        );
        let n = node("10.1.0.12:8081", both);
        assert_eq!(n.reach(), n.listen);
        assert_eq!(n.base_url(), "http://10.1.0.12:8081");
    }
}
