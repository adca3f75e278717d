//! BGP-4 messages on the wire (RFC 4271 section 4).
//!
//! Framing and header checks are ours because they decide which NOTIFICATION a broken stream
//! gets (section 6.1); OPEN and outgoing UPDATE bodies are encoded with `zettabgp`; received
//! UPDATEs are parsed by [`update_rx`], which applies RFC 7606 attribute by attribute.

pub mod notification;
pub mod open;
pub mod update_rx;
pub mod update_tx;

pub use notification::Notification;

/// Every message starts with 16 bytes of 0xFF, a 2-byte length and a type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended message capability (RFC 8654).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Message types (RFC 4271 section 4.1, RFC 2918).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

impl MessageType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Open,
            2 => Self::Update,
            3 => Self::Notification,
            4 => Self::Keepalive,
            5 => Self::RouteRefresh,
            _ => return None,
        })
    }

    /// Smallest and largest valid total length of a message of this type.
    fn length_bounds(self) -> (usize, usize) {
        match self {
            Self::Open => (29, MAX_MESSAGE_LEN),
            Self::Update => (23, MAX_MESSAGE_LEN),
            Self::Notification => (21, MAX_MESSAGE_LEN),
            Self::Keepalive => (19, 19),
            Self::RouteRefresh => (23, 23),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Update => "update",
            Self::Notification => "notification",
            Self::Keepalive => "keepalive",
            Self::RouteRefresh => "route-refresh",
        }
    }
}

/// Looks at the start of `buf` for one complete message. Returns its type and total length,
/// `Ok(None)` when more bytes are needed, or the NOTIFICATION a bad header deserves
/// (RFC 4271 section 6.1).
pub fn next_message(buf: &[u8]) -> Result<Option<(MessageType, usize)>, Notification> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16].iter().any(|b| *b != 0xFF) {
        return Err(Notification::new(1, 1, Vec::new()));
    }
    let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let Some(kind) = MessageType::from_code(header[18]) else {
        return Err(Notification::new(1, 3, vec![header[18]]));
    };
    let (min, max) = kind.length_bounds();
    if length < min || length > max {
        return Err(Notification::new(1, 2, header[16..18].to_vec()));
    }
    if buf.len() < length {
        return Ok(None);
    }
    Ok(Some((kind, length)))
}

/// A whole message: header followed by `body`.
pub fn frame(kind: MessageType, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&[0xFF; 16]);
    // Callers never build bodies past MAX_MESSAGE_LEN; the length field is checked by peers.
    out.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    out
}

/// A KEEPALIVE message.
pub fn keepalive() -> Vec<u8> {
    frame(MessageType::Keepalive, &[])
}

/// A ROUTE-REFRESH message (RFC 2918) for one address family.
pub fn route_refresh(afi: u16, safi: u8) -> Vec<u8> {
    let afi = afi.to_be_bytes();
    frame(MessageType::RouteRefresh, &[afi[0], afi[1], 0, safi])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_a_bare_header() {
        let k = keepalive();
        assert_eq!(k.len(), 19);
        assert_eq!(next_message(&k), Ok(Some((MessageType::Keepalive, 19))));
    }

    #[test]
    fn partial_messages_wait_for_more_bytes() {
        let k = keepalive();
        assert_eq!(next_message(&k[..10]), Ok(None));
        let open = frame(MessageType::Open, &[0; 20]);
        assert_eq!(next_message(&open[..25]), Ok(None));
    }

    #[test]
    fn broken_marker_is_connection_not_synchronized() {
        let mut k = keepalive();
        k[3] = 0;
        assert_eq!(next_message(&k), Err(Notification::new(1, 1, vec![])));
    }

    #[test]
    fn bad_length_carries_the_length_field() {
        let mut k = keepalive();
        k[17] = 20;
        assert_eq!(next_message(&k), Err(Notification::new(1, 2, vec![0, 20])));
        let mut huge = frame(MessageType::Update, &[0; 4]);
        huge[16..18].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(
            next_message(&huge),
            Err(Notification::new(1, 2, vec![0x13, 0x88]))
        );
    }

    #[test]
    fn unknown_type_is_bad_message_type() {
        let mut k = keepalive();
        k[18] = 9;
        assert_eq!(next_message(&k), Err(Notification::new(1, 3, vec![9])));
    }
}
