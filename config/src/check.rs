//! Check profiles: how healthd probes a node and when it changes its mind.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::types::HumanDuration;

/// A named set of probe settings shared by nodes and services.
///
/// The kind's own parameters live in a sub-table named after the kind (`[checks.hls]` inside an
/// `hls` profile); defaults apply when it is absent. A flat struct rather than a tagged enum keeps
/// unknown-key detection and error positions exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckProfile {
    /// Unique name (`"stream"`).
    pub name: String,
    pub kind: CheckKind,
    /// Time between probes of one node.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Random spread added to each interval, as a fraction of it (0..1).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// A probe taking longer than this fails; at most the interval.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive successes before a down node is up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures before an up node is down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Interval used right after a result changes, to confirm it quickly.
    #[serde(default = "default_fast_interval")]
    pub fast_interval: HumanDuration,
    /// Flap damping; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damping: Option<Damping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls: Option<HlsCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
}

/// The kinds of probe healthd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// Play the stream like a viewer: playlist advances, newest segment is MPEG-TS, fast enough.
    Hls,
    /// An HTTP(S) request with expected status and body.
    Http,
    /// A TCP connection.
    Tcp,
    /// A DNS query (to check geodns instances).
    Dns,
    /// A command's exit code.
    Exec,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hls => "hls",
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Dns => "dns",
            Self::Exec => "exec",
        }
    }
}

impl CheckProfile {
    /// The kinds whose parameter tables are present, to catch a table that does not match `kind`.
    pub fn parameter_tables(&self) -> Vec<CheckKind> {
        let mut kinds = Vec::new();
        if self.hls.is_some() {
            kinds.push(CheckKind::Hls);
        }
        if self.http.is_some() {
            kinds.push(CheckKind::Http);
        }
        if self.tcp.is_some() {
            kinds.push(CheckKind::Tcp);
        }
        if self.dns.is_some() {
            kinds.push(CheckKind::Dns);
        }
        if self.exec.is_some() {
            kinds.push(CheckKind::Exec);
        }
        kinds
    }
}

/// Route-flap-damping style penalties for a node's state changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Damping {
    /// Penalty added per state change.
    #[serde(default = "default_penalty")]
    pub penalty: f64,
    /// Above this the node is held down.
    #[serde(default = "default_suppress")]
    pub suppress: f64,
    /// Below this a held-down node may come up again.
    #[serde(default = "default_reuse")]
    pub reuse: f64,
    /// Time for the penalty to halve.
    #[serde(default = "default_half_life")]
    pub half_life: HumanDuration,
}

/// Parameters of an `hls` probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HlsCheck {
    /// Channels to check; the service's channels when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// The media sequence must advance within this many target durations.
    #[serde(default = "default_stall_factor")]
    pub max_stall_factor: f64,
    /// The newest segment must download at least this many times faster than real time.
    #[serde(default = "default_min_speed")]
    pub min_speed: f64,
    /// CA certificates (PEM) to verify nodes that serve HTTPS with; the system's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Parameters of an `http` probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// Path requested on the node.
    #[serde(default = "default_http_path")]
    pub path: String,
    /// Expected status code.
    #[serde(default = "default_http_status")]
    pub status: u16,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// CA certificates (PEM) to verify the node's certificate with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Parameters of a `tcp` probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCheck {
    /// Port to connect to; the node's listen port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Parameters of a `dns` probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCheck {
    /// Name to query.
    pub name: String,
    /// Query type (`"A"`, `"AAAA"`, `"SOA"`...).
    #[serde(default = "default_dns_qtype")]
    pub qtype: String,
    /// Port to query; 53 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Parameters of an `exec` probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCheck {
    /// Program and arguments; exit code 0 is up. `NODE_ADDR` and `NODE_NAME` are set.
    pub command: Vec<String>,
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_jitter() -> f64 {
    0.1
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(400)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    // Two failures in a row happen on a lossy probe path: a lost packet near the end of a
    // segment waits for a TCP retransmission longer than the probe timeout. With 1% loss on the
    // lab's stream nodes, fall 2 took a healthy node out once in 10 minutes.
    3
}
fn default_fast_interval() -> HumanDuration {
    HumanDuration::from_millis(100)
}
fn default_penalty() -> f64 {
    1000.0
}
fn default_suppress() -> f64 {
    3000.0
}
fn default_reuse() -> f64 {
    750.0
}
fn default_half_life() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_stall_factor() -> f64 {
    1.5
}
fn default_min_speed() -> f64 {
    1.0
}
fn default_http_path() -> String {
    "/healthz".into()
}
fn default_http_status() -> u16 {
    200
}
fn default_dns_qtype() -> String {
    "A".into()
}
