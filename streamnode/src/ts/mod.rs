//! MPEG-TS (ISO/IEC 13818-1) as far as a live origin needs it: 188-byte packets, PIDs,
//! continuity counters, adaptation fields (random access, PCR) and PES timestamps.
//!
//! Written by hand: it is the hot path of ingest and every field is a few bits at fixed
//! offsets; accessors never panic on a short or corrupt packet.

pub mod looper;
pub mod media;

/// Packet length.
pub const PACKET: usize = 188;
pub const SYNC: u8 = 0x47;
/// 2^33: PTS, DTS and the PCR base wrap around at this value.
pub const WRAP: u64 = 1 << 33;

/// A view of one packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a>(pub &'a [u8]);

impl<'a> Packet<'a> {
    /// A packet, if `bytes` is 188 bytes starting with the sync byte.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() == PACKET && bytes[0] == SYNC).then_some(Self(bytes))
    }

    pub fn pid(&self) -> u16 {
        u16::from_be_bytes([self.0[1] & 0x1F, self.0[2]])
    }

    /// Payload unit start: a PES packet or section begins here.
    pub fn unit_start(&self) -> bool {
        self.0[1] & 0x40 != 0
    }

    pub fn continuity(&self) -> u8 {
        self.0[3] & 0x0F
    }

    pub fn has_payload(&self) -> bool {
        self.0[3] & 0x10 != 0
    }

    fn adaptation(&self) -> Option<&'a [u8]> {
        if self.0[3] & 0x20 == 0 {
            return None;
        }
        let len = usize::from(self.0[4]);
        self.0.get(5..5 + len)
    }

    /// Random access indicator: a key frame starts in this packet.
    pub fn random_access(&self) -> bool {
        self.adaptation()
            .and_then(|a| a.first())
            .is_some_and(|flags| flags & 0x40 != 0)
    }

    /// The PCR base (90 kHz), when this packet carries one.
    pub fn pcr(&self) -> Option<u64> {
        let a = self.adaptation()?;
        if a.first()? & 0x10 == 0 {
            return None;
        }
        let b = a.get(1..7)?;
        Some(
            (u64::from(b[0]) << 25)
                | (u64::from(b[1]) << 17)
                | (u64::from(b[2]) << 9)
                | (u64::from(b[3]) << 1)
                | (u64::from(b[4]) >> 7),
        )
    }

    /// Offset of the payload in the packet.
    pub fn payload_offset(&self) -> Option<usize> {
        if !self.has_payload() {
            return None;
        }
        let offset = if self.0[3] & 0x20 != 0 {
            5 + usize::from(self.0[4])
        } else {
            4
        };
        (offset < PACKET).then_some(offset)
    }

    /// PTS and DTS of the PES packet starting here (90 kHz).
    pub fn pes_timestamps(&self) -> Option<(u64, Option<u64>)> {
        if !self.unit_start() {
            return None;
        }
        let p = &self.0[self.payload_offset()?..];
        if p.get(..3)? != [0, 0, 1] {
            return None;
        }
        let flags = *p.get(7)?;
        let pts = if flags & 0x80 != 0 {
            read_timestamp(p.get(9..14)?)
        } else {
            return None;
        };
        let dts = if flags & 0x40 != 0 {
            Some(read_timestamp(p.get(14..19)?))
        } else {
            None
        };
        Some((pts, dts))
    }
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

fn write_timestamp(b: &mut [u8], value: u64) {
    let v = value % WRAP;
    let marker_prefix = b[0] & 0xF0;
    b[0] = marker_prefix | (((v >> 30) as u8 & 0x07) << 1) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = (((v >> 15) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v as u8) << 1) | 1;
}

/// Rewrites a packet in place: continuity counter, and PCR/PTS/DTS shifted by `offset` (90 kHz).
pub fn rewrite(packet: &mut [u8], continuity: u8, offset: u64) {
    if packet.len() != PACKET || packet[0] != SYNC {
        return;
    }
    packet[3] = (packet[3] & 0xF0) | (continuity & 0x0F);
    if offset == 0 {
        return;
    }
    let view = Packet(packet);
    let pcr = view.pcr();
    let payload = view.payload_offset();
    let unit_start = view.unit_start();
    if let Some(base) = pcr {
        let v = (base + offset) % WRAP;
        // Adaptation field: length at 4, flags at 5, PCR from 6: 33-bit base, 6 reserved, 9 ext.
        let ext_hi = packet[10] & 0x01;
        packet[6] = (v >> 25) as u8;
        packet[7] = (v >> 17) as u8;
        packet[8] = (v >> 9) as u8;
        packet[9] = (v >> 1) as u8;
        packet[10] = (((v & 1) as u8) << 7) | 0x7E | ext_hi;
    }
    if let (true, Some(at)) = (unit_start, payload) {
        let p = &mut packet[at..];
        if p.len() >= 19 && p[..3] == [0, 0, 1] {
            let flags = p[7];
            if flags & 0x80 != 0 {
                let pts = read_timestamp(&p[9..14]);
                write_timestamp(&mut p[9..14], pts + offset);
            }
            if flags & 0x40 != 0 {
                let dts = read_timestamp(&p[14..19]);
                write_timestamp(&mut p[14..19], dts + offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_wrap() {
        let mut b = [0x21u8, 0, 0, 0, 0];
        for v in [0u64, 1, 90_000, WRAP - 1] {
            write_timestamp(&mut b, v);
            assert_eq!(read_timestamp(&b), v);
            assert_eq!(b[0] >> 4, 2, "the PES prefix bits survive");
        }
        write_timestamp(&mut b, WRAP + 5);
        assert_eq!(read_timestamp(&b), 5);
    }

    #[test]
    fn short_or_unsynchronised_packets_are_not_packets() {
        assert!(Packet::new(&[0x47; 100]).is_none());
        assert!(Packet::new(&[0x00; 188]).is_none());
        assert!(Packet::new(&[0x47; 188]).is_some());
    }
}
