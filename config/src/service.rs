//! Services (what viewers resolve and what we announce) and the live channels they carry.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::types::{Community, HumanDuration, LargeCommunity};

/// A service: hostnames viewers resolve, the anycast prefixes announced for it, and how the
/// site verdict and DNS answers are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Unique name (`"live"`).
    pub name: String,
    /// Hostnames geodns answers for this service; each must be inside a configured zone.
    pub hostnames: Vec<String>,
    /// Anycast prefixes announced by every site where the service is healthy.
    #[serde(default)]
    pub prefixes: Vec<IpNet>,
    /// What DNS answers: the healthy nodes of the chosen site, or the anycast address.
    #[serde(default)]
    pub answer: AnswerMode,
    /// Addresses answered in `anycast` mode; each inside one of `prefixes`.
    #[serde(default)]
    pub anycast_addresses: Vec<IpAddr>,
    /// Most node addresses in one answer.
    #[serde(default = "default_answer_count")]
    pub answer_count: u8,
    /// TTL of answers, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Fewest healthy nodes for a site to count as healthy for this service.
    #[serde(default = "default_min_healthy")]
    pub min_healthy_nodes: u32,
    /// Load (egress over capacity, 0..1) above which viewers spill to the next site.
    #[serde(default = "default_spill_load")]
    pub spill_load: f64,
    /// Check profile used for this service's nodes.
    pub check: String,
    /// Channels this service carries.
    #[serde(default)]
    pub channels: Vec<String>,
    /// What a site does with the prefixes when the service is unhealthy there.
    #[serde(default)]
    pub degrade: DegradePolicy,
    /// HLS content steering: players move between sites mid-stream at the steering server's
    /// word, without waiting for DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_steering: Option<ContentSteering>,
    /// A canary: a share of each site's viewers answered with the nodes running a new version,
    /// the rest with the others, so a version meets real viewers before every node has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// A service's canary. At every site, geodns answers a share of the client networks with the
/// site's nodes whose `version` label is the canary's, and the other networks with the other
/// nodes; a network always falls on the same side (a hash of the network the answer is scoped
/// to, salted by the version), so its viewers stay on one version and a resolver's cached
/// answer is right for the whole network. When a side has no node up, its viewers get the
/// other side's nodes: a canary never takes a viewer's answer away.
///
/// The share counts client networks, not viewers: exact with EDNS client subnet, by resolver
/// without it. `geodns canary SERVICE withdraw` takes the canary out of every answer at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The version label (a node's `version`) of the canary nodes.
    pub version: String,
    /// The share of each site's client networks answered with the canary nodes: above 0 and at
    /// most 1 (0.05 sends 5%).
    pub share: f64,
}

impl Canary {
    /// Whether a node labelled `version` is one of the canary's.
    pub fn includes(&self, version: Option<&str>) -> bool {
        version == Some(self.version.as_str())
    }
}

/// HLS content steering for a service (the HLS specification's `EXT-X-CONTENT-STEERING`).
///
/// Every site carrying the service is a pathway, named after the site. A channel's master
/// playlist lists each rendition once per pathway, and names the steering server; geodns
/// answers the player's steering requests from the same ranking and site health as its DNS
/// answers, so a player leaves a failed or drained site at its next steering reload instead of
/// when its resolver's cache lets go.
///
/// Every pathway must serve the same segments under the same numbers: origins segment one
/// contribution feed identically, as redundant packagers do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentSteering {
    /// The steering server's address as players are given it (`SERVER-URI`), an absolute
    /// `http` or `https` URL; geodns answers requests for its path on
    /// `dns.content_steering.listen`.
    pub server: String,
    /// A site's pathway: the base URL its nodes serve the channels under, with `{site}` standing
    /// for the site's name (`"https://{site}.live.example.net"`). When the host is a name
    /// inside a zone, geodns answers it with that site's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pathway: Option<String>,
    /// Pathways of particular sites, by site name, instead of `pathway` (a site reached under
    /// another name, a CDN's host).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sites: std::collections::BTreeMap<String, String>,
    /// Seconds between a player's reloads of the steering manifest: the longest a player stays
    /// on a site that has gone out of service (plus the time to notice).
    #[serde(default = "default_steering_ttl")]
    pub ttl: u32,
    /// The TTL while a site the answer depends on has changed state recently (within three
    /// TTLs), so that players check again soon during a failover.
    #[serde(default = "default_steering_changing_ttl")]
    pub changing_ttl: u32,
}

/// Stands for the site's name in [`ContentSteering::pathway`].
pub const SITE_PLACEHOLDER: &str = "{site}";

impl ContentSteering {
    /// The base URL of `site`'s pathway, without a trailing slash; `None` when neither `sites`
    /// nor `pathway` gives one.
    pub fn pathway_url(&self, site: &str) -> Option<String> {
        let url = match self.sites.get(site) {
            Some(url) => url.clone(),
            None => self.pathway.as_ref()?.replace(SITE_PLACEHOLDER, site),
        };
        Some(url.trim_end_matches('/').to_owned())
    }

    /// The host name of `site`'s pathway, lower-cased; `None` when the pathway names its host by
    /// address or does not parse.
    pub fn pathway_host(&self, site: &str) -> Option<String> {
        let url = url::Url::parse(&self.pathway_url(site)?).ok()?;
        match url.host()? {
            url::Host::Domain(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        }
    }
}

fn default_steering_ttl() -> u32 {
    10
}

fn default_steering_changing_ttl() -> u32 {
    2
}

/// What geodns answers for a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerMode {
    /// Addresses of healthy nodes at the chosen site.
    #[default]
    Nodes,
    /// The service's anycast addresses (routing picks the site).
    Anycast,
}

/// The degrade policy: what a site does with a service's prefixes when the service is unhealthy
/// there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradePolicy {
    pub action: DegradeAction,
    /// `announce`: extra copies of our ASN prepended.
    #[serde(default)]
    pub prepend: u8,
    /// `announce`: MED to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// `announce`: communities to add.
    #[serde(default)]
    pub communities: Vec<Community>,
    /// `announce`: large communities to add.
    #[serde(default)]
    pub large_communities: Vec<LargeCommunity>,
    /// `graceful-shutdown`: how long routes carry GRACEFUL_SHUTDOWN before they are withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
}

impl Default for DegradePolicy {
    fn default() -> Self {
        Self {
            action: DegradeAction::Withdraw,
            prepend: 0,
            med: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            delay: None,
        }
    }
}

/// The kind of degrade policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DegradeAction {
    /// Withdraw the prefixes at once.
    Withdraw,
    /// Keep announcing, made less preferred (prepend, MED, communities).
    Announce,
    /// Tag with GRACEFUL_SHUTDOWN (RFC 8326), then withdraw after `delay`.
    GracefulShutdown,
}

/// A live channel: where its MPEG-TS arrives and how it is packaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// Unique name, also the URL path (`/NAME/index.m3u8`).
    pub name: String,
    /// Where the stream comes from.
    pub source: ChannelSource,
    /// Bundled clip to loop, for `source = "builtin"`.
    #[serde(default, skip_serializing_if = "Clip::is_default")]
    pub clip: Clip,
    /// Primary feed, `udp://ADDR:PORT` (a multicast group is joined); for `source = "udp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<SocketAddr>,
    /// Backup feed, used while the primary is stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<SocketAddr>,
    /// Interface (name) to join multicast groups on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// A feed with no packets for this long is stalled; with every feed of a rendition stalled
    /// its ingest is lost, which the node's status stream says at once.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: HumanDuration,
    /// Continuity errors per second past which a feed counts as broken.
    #[serde(default = "default_cc_errors")]
    pub max_cc_errors_per_sec: u32,
    /// When to return to the primary after it recovers.
    #[serde(default)]
    pub failback: Failback,
    /// Target segment duration; segments are cut at the first key frame past it.
    #[serde(default = "default_segment")]
    pub segment_duration: HumanDuration,
    /// Segments listed in the live playlist.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Only viewers with a valid token of this profile (`[[tokens]]`) may play the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Renditions of an adaptive-bitrate channel. When present, `/NAME/index.m3u8` is a master
    /// playlist and each rendition has its own media playlist at `/NAME/RENDITION/index.m3u8`;
    /// the channel's own `clip`, `primary` and `backup` are then unused. Ingest and packaging
    /// settings (`interface`, `stall_timeout`, `segment_duration`, ...) apply to every rendition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<Rendition>,
}

/// One rendition (bit rate, resolution) of a channel: its own feeds, the channel's packaging.
/// The master playlist describes it from the stream itself (bandwidth, resolution, codecs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Unique within the channel, also the URL path (`/CHANNEL/NAME/index.m3u8`).
    pub name: String,
    /// Bundled clip to loop, for a channel with `source = "builtin"`.
    #[serde(default, skip_serializing_if = "Clip::is_default")]
    pub clip: Clip,
    /// Primary feed, for a channel with `source = "udp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<SocketAddr>,
    /// Backup feed, used while the primary is stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<SocketAddr>,
}

/// The bundled test clips (made by `streamnode/scripts/make-test-clip.sh`): the same picture,
/// frame rate and key frames at two sizes, so they can be renditions of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clip {
    /// 640x360, about 300 kbit/s of H.264 plus 64 kbit/s of AAC.
    #[default]
    #[serde(rename = "360p")]
    P360,
    /// 320x180, about 120 kbit/s of H.264 plus 64 kbit/s of AAC.
    #[serde(rename = "180p")]
    P180,
}

impl Clip {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where a channel's MPEG-TS comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelSource {
    /// The bundled test clip, looped as an endless live stream.
    Builtin,
    /// MPEG-TS over UDP (unicast or multicast), with an optional backup feed.
    Udp,
}

/// When a channel returns to its primary feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failback {
    /// As soon as the primary has been clean for one stall timeout.
    #[default]
    Auto,
    /// Stay on the backup until it fails or an operator switches.
    Manual,
}

fn default_answer_count() -> u8 {
    2
}
fn default_ttl() -> u32 {
    30
}
fn default_min_healthy() -> u32 {
    1
}
fn default_spill_load() -> f64 {
    0.9
}
/// MPEG-TS carries a PCR at least every 100 ms (ISO/IEC 13818-1), so half a second without a
/// packet is a feed that stopped, not a quiet one.
fn default_stall_timeout() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_cc_errors() -> u32 {
    50
}
fn default_segment() -> HumanDuration {
    HumanDuration::from_secs(2)
}
fn default_window() -> u32 {
    6
}
