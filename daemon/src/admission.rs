//! What one client may take of a public HTTP server (a node's `client_limits`): connections held at once, closed as
//! soon as they are accepted past the limit, and requests per second, answered 429 past it, so
//! that a flood or a player stuck in a loop cannot take the node from everyone else. Trusted
//! clients (the site's healthd, edge proxies, listed networks) are never limited.
//!
//! Both tables are [`crate::ratelimit`]'s: fixed size whatever the number of clients.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ratelimit::{Buckets, Held, Occupancy, PrefixState, Tick};
use config::site::ClientLimits;
use ipnet::IpNet;
use serde::Serialize;

/// A server's limits per client, with what they refused.
#[derive(Debug)]
pub struct Admission {
    trusted: Vec<IpNet>,
    /// `None` when `client_limits` is off.
    tables: Option<Tables>,
    /// Connections closed at accept: their client held its limit.
    refused: AtomicU64,
    /// Requests answered 429: their client was over its rate.
    limited: AtomicU64,
}

#[derive(Debug)]
struct Tables {
    connections: Arc<Occupancy>,
    requests: Buckets,
}

/// A client's connection, admitted: `limited` tells whether its requests count against the
/// client's rate. Gives the connection back when dropped.
#[derive(Debug)]
pub struct Admitted {
    pub limited: bool,
    _held: Option<Held>,
}

/// A client as the limits see it, for the admin API.
#[derive(Debug, Serialize)]
pub struct ClientState {
    pub client: IpAddr,
    pub trusted: bool,
    /// The prefix it is counted as; absent when limits are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<IpNet>,
    pub connections: u32,
    pub max_connections: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<PrefixState>,
}

impl Admission {
    /// Connections closed at accept so far: their client held its limit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests answered 429 so far: their client was over its rate.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// The limits of `limits`, trusting also `healthd` (the addresses the site's healthd
    /// listens on: its probes come from them).
    pub fn new(limits: &ClientLimits, healthd: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut trusted = limits.trusted.clone();
        trusted.extend(
            healthd
                .into_iter()
                .filter(|a| !a.is_unspecified())
                .map(IpNet::from),
        );
        let tables = limits.enabled.then(|| Tables {
            connections: Arc::new(Occupancy::new(
                limits.connections,
                limits.ipv4_prefix,
                limits.ipv6_prefix,
                limits.table_size,
            )),
            requests: Buckets::new(limits.buckets()),
        });
        Self {
            trusted,
            tables,
            refused: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }

    pub fn trusted(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.trusted.iter().any(|net| net.contains(&client))
    }

    /// Admits a new connection from `client`, or `None` (counted) when it holds its limit.
    pub fn connect(&self, client: IpAddr) -> Option<Admitted> {
        let limited = self.tables.as_ref().filter(|_| !self.trusted(client));
        let Some(tables) = limited else {
            return Some(Admitted {
                limited: false,
                _held: None,
            });
        };
        let Some(held) = tables.connections.enter(client) else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        Some(Admitted {
            limited: true,
            _held: Some(held),
        })
    }

    /// Whether a request of `client`, on a connection whose requests are limited, is within
    /// its rate; counted when not.
    pub fn request(&self, client: IpAddr, now: Tick) -> bool {
        let Some(tables) = &self.tables else {
            return true;
        };
        if tables.requests.take(client, now) {
            return true;
        }
        self.limited.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Where `client` stands now.
    pub fn state(&self, client: IpAddr) -> ClientState {
        let tables = self.tables.as_ref();
        ClientState {
            client,
            trusted: self.trusted(client),
            prefix: tables.map(|t| t.connections.prefix(client)),
            connections: tables.map_or(0, |t| t.connections.held(client)),
            max_connections: tables.map_or(0, |t| t.connections.limit()),
            requests: tables.map(|t| t.requests.state(client, Tick::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: u32, rate: u32, burst: u32) -> ClientLimits {
        ClientLimits {
            connections,
            rate,
            burst,
            trusted: vec!["192.0.2.0/28".parse().unwrap()],
            ..ClientLimits::default()
        }
    }

    #[test]
    fn a_client_past_its_limits_is_refused_and_others_are_not() {
        let a = Admission::new(&limits(2, 10, 10), []);
        let flood: IpAddr = "198.51.100.7".parse().unwrap();
        let held: Vec<_> = (0..2).map(|_| a.connect(flood).unwrap()).collect();
        assert!(held.iter().all(|c| c.limited));
        assert!(a.connect(flood).is_none());
        assert_eq!(a.refused.load(Ordering::Relaxed), 1);
        assert!(a.connect("198.51.100.8".parse().unwrap()).is_some());
        let now = Tick::now();
        assert_eq!((0..50).filter(|_| a.request(flood, now)).count(), 10);
        assert_eq!(a.limited.load(Ordering::Relaxed), 40);
        assert!(a.request("198.51.100.8".parse().unwrap(), now));
        let state = a.state(flood);
        assert_eq!((state.connections, state.max_connections), (2, 2));
        assert!(state.requests.unwrap().limited && !state.trusted);
        drop(held);
        assert!(a.connect(flood).is_some());
    }

    #[test]
    fn trusted_clients_and_healthd_are_never_limited() {
        let a = Admission::new(
            &limits(1, 1, 1),
            ["10.9.0.1".parse().unwrap(), "0.0.0.0".parse().unwrap()],
        );
        for client in ["192.0.2.9", "10.9.0.1", "::ffff:192.0.2.3"] {
            let client: IpAddr = client.parse().unwrap();
            let held: Vec<_> = (0..10).map(|_| a.connect(client).unwrap()).collect();
            assert!(held.iter().all(|c| !c.limited), "{client}");
            assert!(a.state(client).trusted);
        }
        // The unspecified address healthd may listen on trusts nobody.
        assert!(!a.trusted("10.9.0.2".parse().unwrap()));
        assert!(!a.trusted("192.0.2.16".parse().unwrap()));
    }

    #[test]
    fn off_limits_nobody() {
        let off = ClientLimits {
            enabled: false,
            ..limits(1, 1, 1)
        };
        let a = Admission::new(&off, []);
        let client: IpAddr = "203.0.113.1".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| a.connect(client).unwrap()).collect();
        assert_eq!(held.len(), 10);
        assert!((0..10).all(|_| a.request(client, Tick::now())));
        assert!(a.state(client).prefix.is_none());
    }
}
