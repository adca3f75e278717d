//! Small value types that parse themselves from the strings operators write.
//!
//! Each one rejects bad input during deserialization, so the parser reports it with the exact
//! position of the offending value and the rest of the crate only ever sees valid values.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr`, with the `FromStr` error
/// message (which says what was expected) becoming the parser's error message.
macro_rules! string_serde {
    ($type:ty, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

/// A duration written the way people write them: `"500ms"`, `"3s"`, `"2m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Self).map_err(|e| {
            format!("invalid duration {s:?} ({e}): expected e.g. \"500ms\", \"3s\", \"2m\"")
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

string_serde!(HumanDuration, "a duration such as \"500ms\" or \"3s\"");

/// A standard BGP community (RFC 1997): `"65000:100"` or a well-known name such as
/// `"graceful-shutdown"` (RFC 8326) or `"no-export"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);

    const NAMES: [(&'static str, Community); 5] = [
        ("graceful-shutdown", Self::GRACEFUL_SHUTDOWN),
        ("blackhole", Self::BLACKHOLE),
        ("no-export", Self::NO_EXPORT),
        ("no-advertise", Self::NO_ADVERTISE),
        ("no-export-subconfed", Self::NO_EXPORT_SUBCONFED),
    ];

    pub fn new(asn: u16, value: u16) -> Self {
        Self((u32::from(asn) << 16) | u32::from(value))
    }
}

impl FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((_, c)) = Self::NAMES.iter().find(|(name, _)| *name == s) {
            return Ok(*c);
        }
        let parsed = s
            .split_once(':')
            .and_then(|(a, v)| Some(Self::new(a.parse().ok()?, v.parse().ok()?)));
        parsed.ok_or_else(|| {
            format!(
                "invalid community {s:?}: expected \"ASN:VALUE\" with both parts 0..=65535, or one of \
                 graceful-shutdown, blackhole, no-export, no-advertise, no-export-subconfed"
            )
        })
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::NAMES.iter().find(|(_, c)| c == self) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}:{}", self.0 >> 16, self.0 & 0xFFFF),
        }
    }
}

string_serde!(Community, "a community such as \"65000:100\"");

/// A large BGP community (RFC 8092): `"GLOBAL:LOCAL1:LOCAL2"`, each part a 32-bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

impl FromStr for LargeCommunity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':').map(str::parse::<u32>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(global)), Some(Ok(local1)), Some(Ok(local2)), None) => Ok(Self {
                global,
                local1,
                local2,
            }),
            _ => Err(format!(
                "invalid large community {s:?}: expected \"GLOBAL:LOCAL1:LOCAL2\", each 0..=4294967295"
            )),
        }
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

string_serde!(LargeCommunity, "a large community such as \"65000:1:2\"");

/// Where a daemon's local control API listens: a unix socket (`"unix:/run/x.sock"`) protected
/// by file permissions, or a loopback TCP address (`"127.0.0.1:50051"`) protected by a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlEndpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for ControlEndpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("empty unix socket path: expected \"unix:/path/to.sock\"".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        s.parse().map(Self::Tcp).map_err(|_| {
            format!("invalid control endpoint {s:?}: expected \"unix:/path/to.sock\" or \"127.0.0.1:PORT\"")
        })
    }
}

impl fmt::Display for ControlEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

string_serde!(ControlEndpoint, "\"unix:/path\" or \"127.0.0.1:PORT\"");

/// A secret kept out of the deployment file: read from a file or an environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// A file whose contents (trailing newline removed) are the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {cause}")]
    File {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("environment variable {0} is not set (or not valid UTF-8)")]
    Env(String),
    #[error("secret has neither `file` nor `env`")]
    Unset,
}

impl Secret {
    pub fn from_env(var: &str) -> Self {
        Self {
            file: None,
            env: Some(var.to_owned()),
        }
    }

    /// Reads the secret now; daemons call this at start and on reload.
    pub fn resolve(&self) -> Result<String, SecretError> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|cause| SecretError::File {
                path: path.clone(),
                cause,
            })?;
            return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        if let Some(var) = &self.env {
            return std::env::var(var).map_err(|_| SecretError::Env(var.clone()));
        }
        Err(SecretError::Unset)
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case (`"NL"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(format!(
                "invalid country code {s:?}: expected two upper-case letters (ISO 3166-1 alpha-2), e.g. \"NL\""
            )),
        }
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

string_serde!(CountryCode, "a two-letter country code such as \"NL\"");

/// A continent code as used by MaxMind databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Continent {
    AF,
    AN,
    AS,
    EU,
    NA,
    OC,
    SA,
}

impl Continent {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AF => "AF",
            Self::AN => "AN",
            Self::AS => "AS",
            Self::EU => "EU",
            Self::NA => "NA",
            Self::OC => "OC",
            Self::SA => "SA",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_parse_numbers_and_well_known_names() {
        assert_eq!("65000:100".parse(), Ok(Community::new(65000, 100)));
        assert_eq!(
            "graceful-shutdown".parse(),
            Ok(Community::GRACEFUL_SHUTDOWN)
        );
        assert_eq!(
            Community::GRACEFUL_SHUTDOWN.to_string(),
            "graceful-shutdown"
        );
        assert!("65536:1".parse::<Community>().is_err());
        assert!("65000".parse::<Community>().is_err());
    }

    #[test]
    fn large_communities_need_exactly_three_parts() {
        let c: LargeCommunity = "4200000000:1:2".parse().unwrap();
        assert_eq!(c.to_string(), "4200000000:1:2");
        assert!("1:2".parse::<LargeCommunity>().is_err());
        assert!("1:2:3:4".parse::<LargeCommunity>().is_err());
    }

    #[test]
    fn control_endpoints_are_unix_paths_or_socket_addresses() {
        assert_eq!(
            "unix:/run/s.sock".parse(),
            Ok(ControlEndpoint::Unix("/run/s.sock".into()))
        );
        assert_eq!(
            "127.0.0.1:50051".parse(),
            Ok(ControlEndpoint::Tcp("127.0.0.1:50051".parse().unwrap()))
        );
        assert!("localhost".parse::<ControlEndpoint>().is_err());
    }

    #[test]
    fn durations_round_trip_through_text() {
        let d: HumanDuration = "1s 500ms".parse().unwrap();
        assert_eq!(d.get(), Duration::from_millis(1500));
        assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        assert!("fast".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "s3cret\n").unwrap();
        let secret = Secret {
            file: Some(file),
            env: None,
        };
        assert_eq!(secret.resolve().unwrap(), "s3cret");
        let missing = Secret::from_env("ANYCAST_TEST_SURELY_UNSET_VARIABLE");
        assert!(matches!(missing.resolve(), Err(SecretError::Env(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Token buckets per client prefix, as the rate limiters of geodns (`[dns.rate_limit]`) and
/// streamnode (`client_limits`) take them: one bucket of `burst` tokens refilled at `rate` per
/// second for each IPv4 `/ipv4_prefix` and IPv6 `/ipv6_prefix`, in a table of `table_size`
/// buckets that prefixes share once there are more of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixRate {
    pub rate: u32,
    pub burst: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub table_size: u32,
}
