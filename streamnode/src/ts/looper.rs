//! The built-in test channel: a short clip played in a loop as one endless live stream.
//!
//! Each pass shifts PCR, PTS and DTS by the clip's duration and continues every PID's
//! continuity counter, so a player sees one stream with steadily increasing timestamps and no
//! discontinuity.

use std::collections::HashMap;

use config::service::Clip;

use super::{PACKET, Packet, WRAP, rewrite};

/// The bundled clips (see `scripts/make-test-clip.sh`): 640x360 and 320x180.
pub const TEST_CLIP: &[u8] = include_bytes!("../../assets/test-clip.ts");
pub const TEST_CLIP_180P: &[u8] = include_bytes!("../../assets/test-clip-180p.ts");

/// A clip ready to loop.
#[derive(Debug, Clone)]
pub struct Looper {
    packets: Vec<[u8; PACKET]>,
    /// Length of one pass in 90 kHz ticks.
    pub duration: u64,
    next: usize,
    pass: u64,
    counters: HashMap<u16, u8>,
}

/// Why a clip cannot be looped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClipError {
    #[error("the clip is not whole MPEG-TS packets ({0} bytes)")]
    NotTransportStream(usize),
    #[error("the clip has no timestamps to loop on")]
    NoTimestamps,
}

impl Looper {
    pub fn new(clip: &[u8]) -> Result<Self, ClipError> {
        if clip.is_empty()
            || !clip.len().is_multiple_of(PACKET)
            || clip.chunks(PACKET).any(|p| p[0] != super::SYNC)
        {
            return Err(ClipError::NotTransportStream(clip.len()));
        }
        let packets: Vec<[u8; PACKET]> = clip
            .chunks(PACKET)
            .map(|p| p.try_into().unwrap_or([0; PACKET]))
            .collect();
        // One pass lasts from the first PTS to one frame past the last: take the spread of the
        // video timestamps and add the mean frame interval.
        let mut pts: Vec<u64> = packets
            .iter()
            .filter_map(|p| Packet(p).pes_timestamps())
            .map(|(pts, _)| pts)
            .collect();
        pts.sort_unstable();
        pts.dedup();
        let (first, last) = (
            pts.first().copied().ok_or(ClipError::NoTimestamps)?,
            pts.last().copied().ok_or(ClipError::NoTimestamps)?,
        );
        let frame = if pts.len() > 1 {
            (last - first) / (pts.len() as u64 - 1)
        } else {
            3600
        };
        let duration = (last - first + frame).max(1);
        Ok(Self {
            packets,
            duration,
            next: 0,
            pass: 0,
            counters: HashMap::new(),
        })
    }

    /// The built-in channel.
    pub fn test_channel() -> Result<Self, ClipError> {
        Self::builtin(Clip::default())
    }

    /// One of the bundled clips.
    pub fn builtin(clip: Clip) -> Result<Self, ClipError> {
        Self::new(match clip {
            Clip::P360 => TEST_CLIP,
            Clip::P180 => TEST_CLIP_180P,
        })
    }

    /// The next packet of the endless stream.
    pub fn next_packet(&mut self) -> [u8; PACKET] {
        let mut packet = self.packets[self.next];
        let view = Packet(&packet);
        let pid = view.pid();
        let has_payload = view.has_payload();
        let counter = self
            .counters
            .entry(pid)
            .or_insert(view.continuity().wrapping_sub(1) & 0x0F);
        // The counter advances only on packets with payload (ISO/IEC 13818-1 2.4.3.3).
        if has_payload {
            *counter = (*counter + 1) & 0x0F;
        }
        let offset = (self.pass * self.duration) % WRAP;
        rewrite(&mut packet, *counter, offset);
        self.next += 1;
        if self.next == self.packets.len() {
            self.next = 0;
            self.pass += 1;
        }
        packet
    }

    pub fn packets_per_pass(&self) -> usize {
        self.packets.len()
    }

    /// Where the endless stream is, for a process that goes on with it.
    pub fn position(&self) -> Position {
        let mut counters: Vec<(u16, u8)> = self.counters.iter().map(|(p, c)| (*p, *c)).collect();
        counters.sort_unstable();
        Position {
            next: self.next,
            pass: self.pass,
            counters,
        }
    }

    /// Goes on from `position` (of a loop of the same clip): the next packet is the one that
    /// would have come after it, with the same timestamps and continuity counters.
    pub fn seek(&mut self, position: &Position) {
        self.next = position.next % self.packets.len();
        self.pass = position.pass;
        self.counters = position.counters.iter().copied().collect();
    }
}

/// A looper's place in its endless stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    next: usize,
    pass: u64,
    counters: Vec<(u16, u8)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_clip_loops_with_growing_timestamps_and_continuous_counters() {
        let mut looper = Looper::test_channel().unwrap();
        let per_pass = looper.packets_per_pass();
        assert!(
            (3.9..4.2).contains(&(looper.duration as f64 / 90_000.0)),
            "{}",
            looper.duration
        );
        let mut last_cc: HashMap<u16, u8> = HashMap::new();
        let mut last_pcr = None;
        let mut key_frames = 0;
        for _ in 0..per_pass * 3 {
            let bytes = looper.next_packet();
            let p = Packet::new(&bytes).unwrap();
            if p.has_payload()
                && let Some(prev) = last_cc.insert(p.pid(), p.continuity())
            {
                assert_eq!(
                    p.continuity(),
                    (prev + 1) & 0x0F,
                    "continuity on PID {}",
                    p.pid()
                );
            }
            if let Some(pcr) = p.pcr() {
                if let Some(prev) = last_pcr {
                    assert!(pcr > prev, "PCR keeps increasing across passes");
                }
                last_pcr = Some(pcr);
            }
            key_frames += usize::from(p.random_access());
        }
        assert!(
            key_frames >= 6,
            "a key frame every 2 s: {key_frames} in 12 s"
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            Looper::new(&[1, 2, 3]),
            Err(ClipError::NotTransportStream(3))
        ));
        assert_eq!(
            Looper::new(&[0x47; 188]).unwrap_err(),
            ClipError::NoTimestamps
        );
    }
}

#[cfg(test)]
mod ffprobe {
    use super::*;

    /// Three passes of the loop decode as one stream with monotonic timestamps (ffmpeg reports
    /// non-monotonic DTS or continuity errors on stderr otherwise).
    #[test]
    fn ffmpeg_decodes_three_passes_without_complaint() {
        let Some(_) = testkit::require(
            "ffmpeg_decodes_three_passes_without_complaint",
            &[("ffmpeg", "ffmpeg")],
            false,
        ) else {
            return;
        };
        let mut looper = Looper::test_channel().unwrap();
        let mut bytes = Vec::new();
        for _ in 0..looper.packets_per_pass() * 3 {
            bytes.extend_from_slice(&looper.next_packet());
        }
        let dir = testkit::process::TempDir::new("looper");
        let path = dir.path().join("three-passes.ts");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "warning", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        for complaint in [
            "non monotonically",
            "Non-monotonous",
            "continuity",
            "discontinuity",
        ] {
            assert!(!stderr.contains(complaint), "{complaint}: {stderr}");
        }
        let probe = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let duration: f64 = String::from_utf8_lossy(&probe.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0);
        assert!(
            (11.5..12.5).contains(&duration),
            "three passes last 12 s: {duration}"
        );
    }
}
