//! What the CLI, the control API and the metrics show about a peer.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use serde::Serialize;

use super::fsm::State;
use super::peer::PeerConfig;
use crate::packet::MessageType;
use crate::packet::open::Negotiated;

/// Messages by type, one direction.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageCounts {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

impl MessageCounts {
    fn count(&mut self, kind: u8) {
        match kind {
            1 => self.open += 1,
            2 => self.update += 1,
            3 => self.notification += 1,
            4 => self.keepalive += 1,
            5 => self.route_refresh += 1,
            _ => {}
        }
    }

    pub fn by_type(&self) -> [(&'static str, u64); 5] {
        [
            (MessageType::Open.name(), self.open),
            (MessageType::Update.name(), self.update),
            (MessageType::Notification.name(), self.notification),
            (MessageType::Keepalive.name(), self.keepalive),
            (MessageType::RouteRefresh.name(), self.route_refresh),
        ]
    }
}

/// A peer's state, written by its task.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub address: IpAddr,
    pub remote_asn: u32,
    pub state: State,
    /// When the state last changed.
    #[serde(serialize_with = "unix_seconds")]
    pub since: SystemTime,
    pub local_addr: Option<SocketAddr>,
    pub negotiated: Option<Negotiated>,
    pub prefixes_advertised: usize,
    pub prefixes_received: usize,
    pub messages_in: MessageCounts,
    pub messages_out: MessageCounts,
    /// Times the session left Established.
    pub flaps: u64,
    /// Times the session went down, by reason (as `DownReason::LABELS`).
    pub downs: [u64; 4],
    /// Connection attempts that failed.
    pub connect_failures: u64,
    pub last_error: Option<String>,
    /// The BFD session's state, when the peer has one.
    pub bfd: Option<String>,
    /// Times BFD going down took the BGP session down.
    pub bfd_downs: u64,
}

fn unix_seconds<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

impl PeerStatus {
    pub fn new(peer: &PeerConfig) -> Self {
        Self {
            name: peer.name.clone(),
            address: peer.address,
            remote_asn: peer.remote_asn,
            state: State::Idle,
            since: SystemTime::now(),
            local_addr: None,
            negotiated: None,
            prefixes_advertised: 0,
            prefixes_received: 0,
            messages_in: MessageCounts::default(),
            messages_out: MessageCounts::default(),
            flaps: 0,
            downs: [0; 4],
            connect_failures: 0,
            last_error: None,
            bfd: None,
            bfd_downs: 0,
        }
    }

    pub fn count_in(&mut self, kind: MessageType) {
        self.messages_in.count(kind as u8);
    }

    pub fn count_out(&mut self, kind: u8) {
        self.messages_out.count(kind);
    }

    /// Seconds in the current state.
    pub fn seconds_in_state(&self) -> u64 {
        SystemTime::now()
            .duration_since(self.since)
            .map_or(0, |d| d.as_secs())
    }
}
