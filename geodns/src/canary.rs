//! A service's canary in DNS answers (`services.canary`): at every site, a share of the client
//! networks is answered with the nodes labelled with the canary's version, the rest with the
//! other nodes.
//!
//! Which side a client falls on is a hash of its network, so it is the same for every query,
//! on every geodns instance and across restarts (viewers stay on one version, and the QoE of
//! each side is its own viewers'). The network is the one the answer is scoped to: at least a
//! /24 (IPv4) or /56 (IPv6), the prefixes resolvers send in EDNS client subnet, so that a
//! resolver caching the answer for the scope gives it only to clients on the same side. Salting
//! the hash with the version gives each new canary a different set of viewers.
//!
//! A side with no node up answers with every node up: a canary moves viewers between nodes but
//! never takes an answer away. A withdrawn canary has a share of 0: every client is answered
//! with the other nodes, and the canary's only when none of them is up.

use std::net::IpAddr;

use config::service::{Canary, Service};
use serde::{Deserialize, Serialize};

use crate::health::HealthState;

/// The narrowest scope a canary's answers are given for IPv4 clients: the /24 resolvers send.
pub const SPLIT_V4: u8 = 24;
/// The same for IPv6 clients: the /56 resolvers send.
pub const SPLIT_V6: u8 = 56;

/// The side of a canary a client falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Answered with the canary's nodes.
    Canary,
    /// Answered with the other nodes.
    Rest,
}

/// A canary an operator took out of the answers (`geodns canary SERVICE withdraw`). It names
/// the version, so that the next canary of the service is not withdrawn with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    pub service: String,
    pub version: String,
}

impl Withdrawal {
    /// Whether this withdrawal is of `canary`, the canary of `service`.
    pub fn is_of(&self, service: &str, canary: &Canary) -> bool {
        self.service == service && self.version == canary.version
    }
}

/// Whether `withdrawal` is of a canary `deployment` has.
pub fn configured(deployment: &config::Deployment, withdrawal: &Withdrawal) -> bool {
    deployment.services.iter().any(|s| {
        s.canary
            .as_ref()
            .is_some_and(|c| withdrawal.is_of(&s.name, c))
    })
}

/// The canary of `service`, and whether an operator withdrew it.
pub fn of<'a>(service: &'a Service, health: &HealthState) -> Option<(&'a Canary, bool)> {
    let canary = service.canary.as_ref()?;
    let withdrawn = health
        .withdrawn_canaries
        .iter()
        .any(|w| w.is_of(&service.name, canary));
    Some((canary, withdrawn))
}

/// How a canary splits the client networks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    salt: u64,
    /// Hashes (top 53 bits) below this fall on the canary's side.
    below: u64,
}

impl Split {
    /// The split of `service`'s `canary`; nobody on its side once `withdrawn`.
    pub fn new(service: &str, canary: &Canary, withdrawn: bool) -> Self {
        // FNV-1a: stable across processes and builds, which std's hasher is not.
        let mut salt: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in service.bytes().chain([0]).chain(canary.version.bytes()) {
            salt = (salt ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            salt,
            below: if withdrawn {
                0
            } else {
                (canary.share.clamp(0.0, 1.0) * (1u64 << 53) as f64) as u64
            },
        }
    }

    /// The scope of an answer that depends on the side: the atlas's scope for the client, or
    /// narrower, down to what resolvers send.
    pub fn scope(client: IpAddr, atlas_scope: u8) -> u8 {
        match client.to_canonical() {
            IpAddr::V4(_) => atlas_scope.max(SPLIT_V4),
            IpAddr::V6(_) => atlas_scope.max(SPLIT_V6),
        }
    }

    /// The side of `client`, decided on its network of `scope` bits (from [`Split::scope`]).
    pub fn side(&self, client: IpAddr, scope: u8) -> Side {
        let network: u128 = match client.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(scope.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                // Marked apart from IPv6 networks, whose top bits are rarely all zero.
                u128::from(a.to_bits() & mask) | 1 << 127
            }
            IpAddr::V6(a) => {
                let bits = u32::from(scope.min(128));
                a.to_bits() & u128::MAX.checked_shl(128 - bits).unwrap_or(0)
            }
        };
        let folded = (network as u64) ^ ((network >> 64) as u64).rotate_left(29);
        if mix(folded ^ self.salt) >> 11 < self.below {
            Side::Canary
        } else {
            Side::Rest
        }
    }
}

/// splitmix64's finalizer: every input bit reaches every output bit, so neighbouring networks
/// land on independent sides.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The nodes a client is answered with among those up (`up`), the canary's (`canary`) and the
/// others (`rest`): its side's when that side has one up, else every node up. No side (no
/// canary in force): every node up.
pub fn narrow<'a, T>(side: Option<Side>, up: &'a [T], canary: &'a [T], rest: &'a [T]) -> &'a [T] {
    let own = match side {
        None => return up,
        Some(Side::Canary) => canary,
        Some(Side::Rest) => rest,
    };
    if own.is_empty() { up } else { own }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(version: &str, share: f64) -> Canary {
        Canary {
            version: version.into(),
            share,
        }
    }

    /// The share of `count` /24 networks (and /56 networks) on the canary's side.
    fn measured(split: &Split, count: u32) -> (f64, f64) {
        let v4 = (0..count)
            .filter(|i| {
                let client = IpAddr::from(std::net::Ipv4Addr::from_bits((i << 8) | 7));
                split.side(client, Split::scope(client, 8)) == Side::Canary
            })
            .count();
        let v6 = (0..count)
            .filter(|i| {
                let bits = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(*i) << 72;
                let client = IpAddr::from(std::net::Ipv6Addr::from_bits(bits | 0x1234));
                split.side(client, Split::scope(client, 32)) == Side::Canary
            })
            .count();
        (v4 as f64 / f64::from(count), v6 as f64 / f64::from(count))
    }

    #[test]
    fn the_share_of_networks_on_the_canary_side_is_the_configured_one() {
        for share in [0.01, 0.05, 0.3, 0.5] {
            let (v4, v6) = measured(&Split::new("live", &canary("2.4.0", share), false), 100_000);
            // 100,000 draws: the standard deviation is at most 0.16 points.
            for got in [v4, v6] {
                assert!((got - share).abs() < 0.01, "share {share}: measured {got}");
            }
        }
        assert_eq!(
            measured(&Split::new("live", &canary("2.4.0", 1.0), false), 1000),
            (1.0, 1.0)
        );
        assert_eq!(
            measured(&Split::new("live", &canary("2.4.0", 1.0), true), 1000),
            (0.0, 0.0)
        );
    }

    #[test]
    fn a_network_stays_on_its_side_and_a_new_version_draws_other_networks() {
        let split = Split::new("live", &canary("2.4.0", 0.5), false);
        let client = |host: u8| IpAddr::from([198, 51, 100, host]);
        let side = split.side(client(1), Split::scope(client(1), 16));
        for host in 0..=255 {
            assert_eq!(split.side(client(host), 24), side, "one /24, one side");
        }
        let next = Split::new("live", &canary("2.5.0", 0.5), false);
        let moved = (0..10_000u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from_bits(i << 8)))
            .filter(|&c| split.side(c, 24) != next.side(c, 24))
            .count();
        assert!((4_500..5_500).contains(&moved), "{moved} of 10,000 moved");
    }

    #[test]
    fn the_scope_is_never_wider_than_what_resolvers_send() {
        let v4 = IpAddr::from([192, 0, 2, 1]);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(Split::scope(v4, 0), 24);
        assert_eq!(Split::scope(v4, 28), 28);
        assert_eq!(Split::scope(v6, 32), 56);
        assert_eq!(Split::scope(v6, 64), 64);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Split::scope(mapped, 0), 24);
    }

    #[test]
    fn a_side_with_no_node_up_takes_every_node_up() {
        let (up, canary, rest) = ([1, 2, 3], [3], [1, 2]);
        assert_eq!(narrow(None, &up, &canary, &rest), &up);
        assert_eq!(narrow(Some(Side::Canary), &up, &canary, &rest), &canary);
        assert_eq!(narrow(Some(Side::Rest), &up, &canary, &rest), &rest);
        assert_eq!(narrow(Some(Side::Canary), &up, &[], &rest), &up);
        assert_eq!(narrow(Some(Side::Rest), &up, &canary, &[]), &up);
    }
}
