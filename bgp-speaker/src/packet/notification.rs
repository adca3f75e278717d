//! NOTIFICATION messages (RFC 4271 section 4.5), with the names operators look up.

use std::fmt;

use super::{MessageType, frame};

/// A NOTIFICATION: error code, subcode and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// Cease subcodes (RFC 4486).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// RFC 9384: the BFD session with the peer went down.
    pub const BFD_DOWN: u8 = 10;
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Self {
            code,
            subcode,
            data,
        }
    }

    /// Cease with an RFC 8203 shutdown communication (a short UTF-8 reason).
    pub fn cease(subcode: u8, reason: &str) -> Self {
        let mut data = Vec::new();
        if matches!(subcode, cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET) && !reason.is_empty() {
            let mut text = reason.as_bytes();
            text = &text[..text.len().min(255)];
            data.push(text.len() as u8);
            data.extend_from_slice(text);
        }
        Self::new(6, subcode, data)
    }

    pub fn hold_timer_expired() -> Self {
        Self::new(4, 0, Vec::new())
    }

    /// Finite State Machine Error (RFC 6608 subcodes by state).
    pub fn fsm_error(subcode: u8) -> Self {
        Self::new(5, subcode, Vec::new())
    }

    /// The wire form, header included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(2 + self.data.len());
        body.push(self.code);
        body.push(self.subcode);
        // Data longer than a message allows is cut: a NOTIFICATION must still go out.
        body.extend_from_slice(&self.data[..self.data.len().min(4096 - 21)]);
        frame(MessageType::Notification, &body)
    }

    /// Decodes a NOTIFICATION body (after the header).
    pub fn decode(body: &[u8]) -> Option<Self> {
        match body {
            [code, subcode, data @ ..] => Some(Self::new(*code, *subcode, data.to_vec())),
            _ => None,
        }
    }

    pub fn code_name(&self) -> &'static str {
        match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => "Unknown error code",
        }
    }

    pub fn subcode_name(&self) -> &'static str {
        match (self.code, self.subcode) {
            (1, 1) => "Connection Not Synchronized",
            (1, 2) => "Bad Message Length",
            (1, 3) => "Bad Message Type",
            (2, 1) => "Unsupported Version Number",
            (2, 2) => "Bad Peer AS",
            (2, 3) => "Bad BGP Identifier",
            (2, 4) => "Unsupported Optional Parameter",
            (2, 6) => "Unacceptable Hold Time",
            (2, 7) => "Unsupported Capability",
            (3, 1) => "Malformed Attribute List",
            (3, 2) => "Unrecognized Well-known Attribute",
            (3, 3) => "Missing Well-known Attribute",
            (3, 4) => "Attribute Flags Error",
            (3, 5) => "Attribute Length Error",
            (3, 6) => "Invalid ORIGIN Attribute",
            (3, 8) => "Invalid NEXT_HOP Attribute",
            (3, 9) => "Optional Attribute Error",
            (3, 10) => "Invalid Network Field",
            (3, 11) => "Malformed AS_PATH",
            (5, 1) => "Unexpected Message in OpenSent State",
            (5, 2) => "Unexpected Message in OpenConfirm State",
            (5, 3) => "Unexpected Message in Established State",
            (6, 1) => "Maximum Number of Prefixes Reached",
            (6, 2) => "Administrative Shutdown",
            (6, 3) => "Peer De-configured",
            (6, 4) => "Administrative Reset",
            (6, 5) => "Connection Rejected",
            (6, 6) => "Other Configuration Change",
            (6, 7) => "Connection Collision Resolution",
            (6, 8) => "Out of Resources",
            (6, 9) => "Hard Reset",
            (6, 10) => "BFD Down",
            _ => "",
        }
    }

    /// The RFC 8203 shutdown communication, when present and valid UTF-8.
    pub fn shutdown_reason(&self) -> Option<String> {
        if self.code != 6 || !matches!(self.subcode, cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET) {
            return None;
        }
        let (len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(*len))?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.code_name(), self.code, self.subcode)?;
        let sub = self.subcode_name();
        if !sub.is_empty() {
            write!(f, ": {sub}")?;
        }
        if let Some(reason) = self.shutdown_reason() {
            write!(f, ": \"{reason}\"")?;
        } else if !self.data.is_empty() {
            f.write_str(" data ")?;
            for b in self.data.iter().take(32) {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_error() {
        let n = Notification::new(2, 2, vec![0xfd, 0xe9]);
        let wire = n.encode();
        assert_eq!(wire.len(), 23);
        assert_eq!(Notification::decode(&wire[19..]), Some(n.clone()));
        assert_eq!(
            n.to_string(),
            "OPEN Message Error (2/2): Bad Peer AS data fde9"
        );
    }

    #[test]
    fn shutdown_communication_is_shown() {
        let n = Notification::cease(cease::ADMIN_SHUTDOWN, "maintenance");
        assert_eq!(n.shutdown_reason().as_deref(), Some("maintenance"));
        assert!(n.to_string().contains("\"maintenance\""));
    }

    #[test]
    fn short_bodies_are_rejected() {
        assert_eq!(Notification::decode(&[6]), None);
    }
}
