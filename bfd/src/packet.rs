//! The BFD control packet (RFC 5880 section 4.1), without authentication.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Written by hand: it is 24 bytes, and the checks of section 6.8.6 that decide whether a
//! packet is even looked at belong with the decoding. Intervals are in microseconds.

/// Length of a packet without authentication.
pub const LENGTH: usize = 24;

/// A session's state, as carried in the `Sta` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// Why a session last went down (the `Diag` field, section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    /// The peer's packets stopped for the detection time.
    DetectionTimeExpired,
    EchoFailed,
    /// The peer said its session went down.
    NeighborDown,
    ForwardingReset,
    PathDown,
    ConcatenatedPathDown,
    AdminDown,
    ReverseConcatenatedPathDown,
    /// A code this implementation does not know (9-31), kept as received.
    Other(u8),
}

impl Diag {
    fn from_bits(bits: u8) -> Self {
        match bits & 0x1F {
            0 => Diag::None,
            1 => Diag::DetectionTimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborDown,
            4 => Diag::ForwardingReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Other(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::DetectionTimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborDown => 3,
            Diag::ForwardingReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(code) => code & 0x1F,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Diag::None => "no diagnostic".into(),
            Diag::DetectionTimeExpired => "control detection time expired".into(),
            Diag::EchoFailed => "echo function failed".into(),
            Diag::NeighborDown => "neighbor signaled session down".into(),
            Diag::ForwardingReset => "forwarding plane reset".into(),
            Diag::PathDown => "path down".into(),
            Diag::ConcatenatedPathDown => "concatenated path down".into(),
            Diag::AdminDown => "administratively down".into(),
            Diag::ReverseConcatenatedPathDown => "reverse concatenated path down".into(),
            Diag::Other(code) => format!("diagnostic {code}"),
        }
    }
}

/// A control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub diag: Diag,
    pub state: State,
    /// Poll: the sender asks for a packet with Final set.
    pub poll: bool,
    /// Final: the answer to a Poll.
    pub final_: bool,
    /// Control Plane Independent.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (RFC 5880 section 6.8.6, the checks that need no
/// session).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("{0} bytes: shorter than a control packet")]
    Short(usize),
    #[error("version {0}: only 1 exists")]
    Version(u8),
    #[error("length field {field} with {received} bytes received")]
    Length { field: u8, received: usize },
    #[error("authenticated packet, and no authentication is configured")]
    Authenticated,
    #[error("detect multiplier 0")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    ZeroMyDiscr,
    #[error("your discriminator 0 in state {0}")]
    ZeroYourDiscr(&'static str),
}

impl Packet {
    /// Decodes a received datagram, applying the checks any session would.
    pub fn decode(bytes: &[u8]) -> Result<Self, Discard> {
        if bytes.len() < LENGTH {
            return Err(Discard::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != 1 {
            return Err(Discard::Version(version));
        }
        let flags = bytes[1];
        let auth = flags & 0x04 != 0;
        let length = bytes[3];
        if usize::from(length) < LENGTH || usize::from(length) > bytes.len() {
            return Err(Discard::Length {
                field: length,
                received: bytes.len(),
            });
        }
        if auth {
            return Err(Discard::Authenticated);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let packet = Packet {
            diag: Diag::from_bits(bytes[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            cpi: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: bytes[2],
            my_discr: word(4),
            your_discr: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if packet.detect_mult == 0 {
            return Err(Discard::ZeroDetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(Discard::Multipoint);
        }
        if packet.my_discr == 0 {
            return Err(Discard::ZeroMyDiscr);
        }
        if packet.your_discr == 0 && !matches!(packet.state, State::Down | State::AdminDown) {
            return Err(Discard::ZeroYourDiscr(packet.state.name()));
        }
        Ok(packet)
    }

    pub fn encode(&self) -> [u8; LENGTH] {
        let mut out = [0u8; LENGTH];
        out[0] = (1 << 5) | self.diag.bits();
        out[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.cpi) << 3)
            | (u8::from(self.demand) << 1);
        out[2] = self.detect_mult;
        out[3] = LENGTH as u8;
        for (at, value) in [
            (4, self.my_discr),
            (8, self.your_discr),
            (12, self.desired_min_tx_us),
            (16, self.required_min_rx_us),
            (20, self.required_min_echo_rx_us),
        ] {
            out[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with FRR bfdd's defaults: Up, multiplier 3, 300 ms both ways, echo 50 ms.
    const FRR_UP: [u8; 24] = [
        0x20, 0xC0, 0x03, 0x18, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x2A, 0x00, 0x04, 0x93,
        0xE0, 0x00, 0x04, 0x93, 0xE0, 0x00, 0x00, 0xC3, 0x50,
    ];

    #[test]
    fn a_peers_packet_reads_field_by_field_and_encodes_back() {
        let p = Packet::decode(&FRR_UP).unwrap();
        assert_eq!(p.state, State::Up);
        assert_eq!(p.diag, Diag::None);
        assert_eq!((p.my_discr, p.your_discr), (7, 42));
        assert_eq!(p.detect_mult, 3);
        assert_eq!(p.desired_min_tx_us, 300_000);
        assert_eq!(p.required_min_rx_us, 300_000);
        assert_eq!(p.required_min_echo_rx_us, 50_000);
        assert!(!p.poll && !p.final_ && !p.demand);
        assert_eq!(p.encode(), FRR_UP);
    }

    #[test]
    fn flags_and_diagnostics_round_trip() {
        let p = Packet {
            diag: Diag::NeighborDown,
            state: State::Down,
            poll: true,
            final_: false,
            cpi: true,
            demand: false,
            detect_mult: 5,
            my_discr: 1,
            your_discr: 0,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        };
        assert_eq!(Packet::decode(&p.encode()), Ok(p));
        let mut f = p;
        (f.poll, f.final_, f.diag) = (false, true, Diag::Other(17));
        assert_eq!(Packet::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn packets_no_session_may_take_are_discarded_with_the_reason() {
        let good = FRR_UP;
        let with = |at: usize, value: u8| {
            let mut p = good;
            p[at] = value;
            p
        };
        assert_eq!(Packet::decode(&good[..20]), Err(Discard::Short(20)));
        assert_eq!(Packet::decode(&with(0, 0x40)), Err(Discard::Version(2)));
        assert_eq!(
            Packet::decode(&with(3, 30)),
            Err(Discard::Length {
                field: 30,
                received: 24
            })
        );
        assert_eq!(
            Packet::decode(&with(3, 20)),
            Err(Discard::Length {
                field: 20,
                received: 24
            })
        );
        assert_eq!(Packet::decode(&with(1, 0xC4)), Err(Discard::Authenticated));
        assert_eq!(Packet::decode(&with(2, 0)), Err(Discard::ZeroDetectMult));
        assert_eq!(Packet::decode(&with(1, 0xC1)), Err(Discard::Multipoint));
        let mut zero_my = good;
        zero_my[4..8].fill(0);
        assert_eq!(Packet::decode(&zero_my), Err(Discard::ZeroMyDiscr));
        let mut zero_your = good;
        zero_your[8..12].fill(0);
        assert_eq!(
            Packet::decode(&zero_your),
            Err(Discard::ZeroYourDiscr("Up"))
        );
        // Down with no discriminator yet is how every session starts.
        zero_your[1] = 0x40;
        assert!(Packet::decode(&zero_your).is_ok());
        // Trailing bytes past the length field are ignored.
        let mut longer = good.to_vec();
        longer.extend_from_slice(&[0xFF; 8]);
        assert!(Packet::decode(&longer).is_ok());
    }
}
