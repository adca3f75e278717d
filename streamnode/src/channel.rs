//! A live channel: MPEG-TS packets in, segments cut at key frames and a sliding-window live
//! playlist out (RFC 8216).
//!
//! A segment is cut at the first video key frame after the target duration, so every segment
//! starts decodable; the latest PAT and PMT are put at its head so a player can join at any
//! segment. Only the last `window` segments (plus a few for players still fetching them) are
//! kept: memory is bounded.

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::ts::media::{Elementary, MediaInfo, probe, stream_type};
use crate::ts::{PACKET, Packet};

/// One finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u64,
    /// Duration from its first key frame to the next segment's, in seconds.
    pub duration: f64,
    pub bytes: Bytes,
    /// Wall-clock time of its first frame (EXT-X-PROGRAM-DATE-TIME).
    pub started: SystemTime,
    /// A discontinuity precedes this segment (feed switch, timestamps jumped).
    pub discontinuity: bool,
}

/// A channel handed to a replacement process ([`Channel::save`]); byte ranges are
/// (offset, length) in the hand-over's payload.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    name: String,
    active_feed: String,
    ingest: Ingest,
    target: f64,
    window: usize,
    segments: Vec<SavedSegment>,
    next_sequence: u64,
    discontinuities_dropped: u64,
    current: (u64, u64),
    current_start_pts: Option<u64>,
    current_started: SystemTime,
    pending_discontinuity: bool,
    video: Option<Elementary>,
    audio: Option<Elementary>,
    pmt_pid: Option<u16>,
    pat: Option<Vec<u8>>,
    pmt: Option<Vec<u8>>,
    last_pts: Option<u64>,
    epoch: Option<(SystemTime, u64)>,
    clock: Option<SystemTime>,
    media: MediaInfo,
}

impl Saved {
    /// The channel's path (`CHANNEL` or `CHANNEL/RENDITION`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SavedSegment {
    sequence: u64,
    duration: f64,
    bytes: (u64, u64),
    started: SystemTime,
    discontinuity: bool,
}

/// A rendition's line in a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Peak segment bit rate, bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub media: MediaInfo,
}

/// HLS content steering in a master playlist: the pathways (sites) each rendition is listed
/// under, and the steering server players ask which one to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pathways {
    /// `SERVER-URI`, with any session tag already in its query.
    pub server: String,
    /// The pathway a player starts on: the site serving the master playlist.
    pub current: String,
    /// (pathway id, base URL) for every site carrying the channel, `current` first.
    pub sites: Vec<(String, String)>,
}

/// The master playlist of channel `channel` with several renditions, each named by its path
/// below the channel; renditions not live yet are left out. `None` when none is live.
///
/// With `pathways`, each rendition is listed once per pathway, by absolute URL under that
/// pathway's base, with `PATHWAY-ID` and a `STABLE-VARIANT-ID` (the rendition's name) that
/// tells a player which variant of another pathway is the same stream.
pub fn master_playlist<'a>(
    channel: &str,
    renditions: impl IntoIterator<Item = (&'a str, Variant)>,
    pathways: Option<&Pathways>,
) -> Option<String> {
    // Every segment starts with a key frame and the program tables.
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(p) = pathways {
        out.push_str(&format!(
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{}\",PATHWAY-ID=\"{}\"\n",
            p.server, p.current
        ));
    }
    let renditions: Vec<(&str, Variant)> = renditions.into_iter().collect();
    if renditions.is_empty() {
        return None;
    }
    let local = [(String::new(), String::new())];
    let sites = pathways.map_or(&local[..], |p| &p.sites[..]);
    for (pathway, base) in sites {
        for (name, v) in &renditions {
            out.push_str(&format!(
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
                v.bandwidth, v.average_bandwidth
            ));
            if let Some(codecs) = &v.media.codecs {
                out.push_str(&format!(",CODECS=\"{}\"", codecs.join(",")));
            }
            if let Some((w, h)) = v.media.resolution {
                out.push_str(&format!(",RESOLUTION={w}x{h}"));
            }
            if let Some(fps) = v.media.frame_rate {
                out.push_str(&format!(",FRAME-RATE={fps:.3}"));
            }
            if pathways.is_some() {
                out.push_str(&format!(
                    ",PATHWAY-ID=\"{pathway}\",STABLE-VARIANT-ID=\"{name}\"\n{base}/{channel}/{name}/index.m3u8\n"
                ));
            } else {
                out.push_str(&format!("\n{name}/index.m3u8\n"));
            }
        }
    }
    Some(out)
}

/// Segments kept past the playlist window, for players still downloading them.
const GRACE_SEGMENTS: usize = 3;

/// Whether a channel's source is delivering: the node's own account, pushed to healthd on its
/// status stream the moment it changes (the playlist would only show it seconds later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ingest {
    /// Packets arrive on a feed fit to carry the channel.
    Flowing,
    /// Nothing yet, or every feed stalled (no packets for `stall_timeout`) or broken.
    Lost,
}

/// The packager of one channel.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    /// Which feed the packets come from: `builtin`, `primary` or `backup`.
    pub active_feed: &'static str,
    /// Set by the channel's feeder; see [`Channel::set_ingest`].
    ingest: Ingest,
    target: f64,
    window: usize,
    segments: VecDeque<Segment>,
    next_sequence: u64,
    /// Discontinuities in segments no longer held (for EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuities_dropped: u64,
    current: Vec<u8>,
    current_start_pts: Option<u64>,
    current_started: SystemTime,
    pending_discontinuity: bool,
    video: Option<Elementary>,
    audio: Option<Elementary>,
    pmt_pid: Option<u16>,
    pat: Option<[u8; PACKET]>,
    pmt: Option<[u8; PACKET]>,
    last_pts: Option<u64>,
    /// Wall clock and PTS of the first key frame, to date segments.
    epoch: Option<(SystemTime, u64)>,
    clock: Option<SystemTime>,
    /// What the newest segment carries (codecs, picture size), for the master playlist.
    media: MediaInfo,
}

impl Channel {
    pub fn new(name: &str, target: Duration, window: u32) -> Self {
        Self {
            name: name.to_owned(),
            active_feed: "builtin",
            ingest: Ingest::Lost,
            target: target.as_secs_f64(),
            window: window.max(3) as usize,
            segments: VecDeque::new(),
            next_sequence: 0,
            discontinuities_dropped: 0,
            current: Vec::new(),
            current_start_pts: None,
            current_started: SystemTime::now(),
            pending_discontinuity: false,
            video: None,
            audio: None,
            pmt_pid: None,
            pat: None,
            pmt: None,
            last_pts: None,
            epoch: None,
            clock: None,
            media: MediaInfo::default(),
        }
    }

    /// The wall-clock time of the first frame to come (a feeder that pre-rolls media starts
    /// its clock in the past, so program date times match real time).
    pub fn set_clock(&mut self, wall: SystemTime) {
        self.clock = Some(wall);
    }

    pub fn ingest(&self) -> Ingest {
        self.ingest
    }

    /// Records what the feeder sees of its source; true when that changed (the node's status
    /// streams are then told).
    pub fn set_ingest(&mut self, ingest: Ingest) -> bool {
        std::mem::replace(&mut self.ingest, ingest) != ingest
    }

    /// Marks the next segment as following a discontinuity (a feed switch).
    pub fn discontinuity(&mut self) {
        self.pending_discontinuity = true;
    }

    /// Switches to another feed. The segment in progress ends at the last frame seen; the next
    /// starts at the new feed's first key frame, after a discontinuity, with program tables
    /// and wall-clock dating learnt afresh (the new feed's timestamps and PIDs are its own).
    pub fn switch_feed(&mut self, feed: &'static str) {
        if let (Some(start), Some(last)) = (self.current_start_pts, self.last_pts) {
            let seconds = (last.wrapping_sub(start) % crate::ts::WRAP) as f64 / 90_000.0;
            self.finish(seconds.clamp(0.04, self.target * 2.0));
        }
        self.current.clear();
        self.current_start_pts = None;
        self.last_pts = None;
        self.pending_discontinuity = true;
        (self.epoch, self.clock) = (None, None);
        (self.video, self.audio, self.pmt_pid) = (None, None, None);
        (self.pat, self.pmt) = (None, None);
        self.active_feed = feed;
    }

    /// Feeds one packet.
    pub fn push(&mut self, bytes: &[u8; PACKET]) {
        let Some(packet) = Packet::new(bytes) else {
            return;
        };
        let pid = packet.pid();
        if pid == 0 {
            self.learn_pat(bytes);
        } else if Some(pid) == self.pmt_pid {
            self.learn_pmt(bytes);
        }
        if self.video.is_some_and(|v| v.pid == pid)
            && packet.unit_start()
            && let Some((pts, dts)) = packet.pes_timestamps()
        {
            let at = dts.unwrap_or(pts);
            if packet.random_access() {
                self.key_frame(at);
            }
            self.last_pts = Some(at);
        }
        if self.current_start_pts.is_some() {
            self.current.extend_from_slice(bytes);
        }
    }

    fn key_frame(&mut self, pts: u64) {
        match self.current_start_pts {
            None => self.start_segment(pts),
            Some(start) => {
                let elapsed = pts.wrapping_sub(start) % crate::ts::WRAP;
                let seconds = elapsed as f64 / 90_000.0;
                // A jump backwards or of more than a minute is a discontinuity, not a duration.
                if seconds > 60.0 {
                    self.finish(self.target);
                    self.pending_discontinuity = true;
                    self.start_segment(pts);
                } else if seconds >= self.target {
                    self.finish(seconds);
                    self.start_segment(pts);
                }
            }
        }
    }

    fn start_segment(&mut self, pts: u64) {
        self.current_start_pts = Some(pts);
        // Wall-clock time of the frame: the first key frame's arrival plus media time since.
        let (wall, first) = *self
            .epoch
            .get_or_insert((self.clock.unwrap_or_else(SystemTime::now), pts));
        let media = (pts.wrapping_sub(first) % crate::ts::WRAP) as f64 / 90_000.0;
        self.current_started = wall + Duration::from_secs_f64(media);
        self.current.clear();
        // Every segment starts with the program tables, so a player can start anywhere.
        if let (Some(pat), Some(pmt)) = (self.pat, self.pmt) {
            self.current.extend_from_slice(&pat);
            self.current.extend_from_slice(&pmt);
        }
    }

    fn finish(&mut self, duration: f64) {
        if self.current.is_empty() {
            return;
        }
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        // Read afresh from every segment: a feed switch may change codecs or picture size.
        let media = probe(&self.current, self.video, self.audio);
        // A segment cut short at a feed switch may hold no parameter set: keep what is known.
        if media.codecs.is_some() || self.media.codecs.is_none() {
            self.media = media;
        }
        if self.next_sequence == 0 {
            // Numbered from the wall clock, as epoch-locked encoders number theirs: the first
            // segment starting at T is number T / target duration, then one more per segment.
            // Origins packaging one channel so name one moment alike (give or take one), and an
            // edge or a player moved to another origin, or to a restarted one, keeps its place
            // instead of seeing the sequence fall back to 0.
            self.next_sequence = self
                .current_started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |t| (t.as_secs_f64() / self.target).round() as u64);
        }
        self.segments.push_back(Segment {
            sequence: self.next_sequence,
            duration,
            bytes: Bytes::from(std::mem::take(&mut self.current)),
            started: self.current_started,
            discontinuity,
        });
        self.next_sequence += 1;
        while self.segments.len() > self.window + GRACE_SEGMENTS {
            if self
                .segments
                .pop_front()
                .is_some_and(|old| old.discontinuity)
            {
                self.discontinuities_dropped += 1;
            }
        }
    }

    fn learn_pat(&mut self, bytes: &[u8; PACKET]) {
        let p = Packet(bytes);
        let Some(at) = p.payload_offset() else { return };
        // Pointer field, then the section: program number / PMT PID pairs from byte 8.
        let pointer = usize::from(bytes[at]);
        let section = at + 1 + pointer;
        let Some(entry) = bytes.get(section + 8..section + 12) else {
            return;
        };
        self.pmt_pid = Some(u16::from_be_bytes([entry[2] & 0x1F, entry[3]]));
        self.pat = Some(*bytes);
    }

    fn learn_pmt(&mut self, bytes: &[u8; PACKET]) {
        let p = Packet(bytes);
        let Some(at) = p.payload_offset() else { return };
        let section = at + 1 + usize::from(bytes[at]);
        let Some(head) = bytes.get(section..section + 12) else {
            return;
        };
        let section_len = usize::from(u16::from_be_bytes([head[1] & 0x0F, head[2]]));
        let info_len = usize::from(u16::from_be_bytes([head[10] & 0x0F, head[11]]));
        let mut i = section + 12 + info_len;
        let end = (section + 3 + section_len).saturating_sub(4).min(PACKET);
        while i + 5 <= end {
            let stream_type = bytes[i];
            let pid = u16::from_be_bytes([bytes[i + 1] & 0x1F, bytes[i + 2]]);
            let es_len = usize::from(u16::from_be_bytes([bytes[i + 3] & 0x0F, bytes[i + 4]]));
            // The first video and the first audio stream make the rendition.
            let es = Some(Elementary { pid, stream_type });
            if stream_type::is_video(stream_type) && self.video.is_none() {
                self.video = es;
            } else if stream_type::is_audio(stream_type) && self.audio.is_none() {
                self.audio = es;
            }
            i += 5 + es_len;
        }
        self.pmt = Some(*bytes);
    }

    /// The segment duration aimed at.
    pub fn target(&self) -> Duration {
        Duration::from_secs_f64(self.target)
    }

    /// Segments in the playlist window, oldest first.
    pub fn window(&self) -> impl Iterator<Item = &Segment> {
        let skip = self.segments.len().saturating_sub(self.window);
        self.segments.iter().skip(skip)
    }

    /// A segment still held (in the window or its grace).
    pub fn segment(&self, sequence: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.sequence == sequence)
    }

    pub fn newest(&self) -> Option<&Segment> {
        self.segments.back()
    }

    /// How this channel is described as a rendition in a master playlist (RFC 8216 section
    /// 4.3.4.2): BANDWIDTH is the peak segment bit rate of the window, AVERAGE-BANDWIDTH the
    /// mean, the rest read from the stream. `None` until a segment exists.
    pub fn variant(&self) -> Option<Variant> {
        let rates = self
            .window()
            .filter(|s| s.duration > 0.0)
            .map(|s| (s.bytes.len() as f64 * 8.0, s.duration));
        let (mut peak, mut bits, mut seconds) = (0.0f64, 0.0, 0.0);
        for (b, d) in rates {
            peak = peak.max(b / d);
            (bits, seconds) = (bits + b, seconds + d);
        }
        (seconds > 0.0).then(|| Variant {
            bandwidth: peak.ceil() as u64,
            average_bandwidth: (bits / seconds).ceil() as u64,
            media: self.media.clone(),
        })
    }

    /// The channel as a replacement process goes on with it: every field, the bytes of its
    /// segments (and of the one being cut) appended to `payload`.
    pub fn save(&self, payload: &mut Vec<u8>) -> Saved {
        let mut put = |bytes: &[u8]| {
            let at = (payload.len() as u64, bytes.len() as u64);
            payload.extend_from_slice(bytes);
            at
        };
        Saved {
            name: self.name.clone(),
            active_feed: self.active_feed.to_owned(),
            ingest: self.ingest,
            target: self.target,
            window: self.window,
            segments: self
                .segments
                .iter()
                .map(|s| SavedSegment {
                    sequence: s.sequence,
                    duration: s.duration,
                    bytes: put(&s.bytes),
                    started: s.started,
                    discontinuity: s.discontinuity,
                })
                .collect(),
            next_sequence: self.next_sequence,
            discontinuities_dropped: self.discontinuities_dropped,
            current: put(&self.current),
            current_start_pts: self.current_start_pts,
            current_started: self.current_started,
            pending_discontinuity: self.pending_discontinuity,
            video: self.video,
            audio: self.audio,
            pmt_pid: self.pmt_pid,
            pat: self.pat.map(|p| p.to_vec()),
            pmt: self.pmt.map(|p| p.to_vec()),
            last_pts: self.last_pts,
            epoch: self.epoch,
            clock: self.clock,
            media: self.media.clone(),
        }
    }

    /// The channel `saved` describes, its bytes taken from `payload`; `None` when the two do
    /// not fit together (a range outside the payload, a program table that is not a packet).
    pub fn restore(saved: Saved, payload: &[u8]) -> Option<Self> {
        // Durations from elsewhere are checked as any input: finite, positive, at most an hour.
        let sane = |d: f64| d.is_finite() && (0.0..=3600.0).contains(&d);
        if !sane(saved.target)
            || saved.target == 0.0
            || !saved.segments.iter().all(|s| sane(s.duration))
        {
            return None;
        }
        let take = |(at, len): (u64, u64)| {
            let start = usize::try_from(at).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            payload.get(start..end)
        };
        let packet = |p: Option<Vec<u8>>| -> Option<Option<[u8; PACKET]>> {
            match p {
                None => Some(None),
                Some(p) => Some(Some(p.try_into().ok()?)),
            }
        };
        let segments = saved
            .segments
            .into_iter()
            .map(|s| {
                Some(Segment {
                    sequence: s.sequence,
                    duration: s.duration,
                    bytes: Bytes::copy_from_slice(take(s.bytes)?),
                    started: s.started,
                    discontinuity: s.discontinuity,
                })
            })
            .collect::<Option<VecDeque<Segment>>>()?;
        Some(Self {
            name: saved.name,
            active_feed: match saved.active_feed.as_str() {
                "primary" => "primary",
                "backup" => "backup",
                _ => "builtin",
            },
            ingest: saved.ingest,
            target: saved.target,
            window: saved.window.max(3),
            segments,
            next_sequence: saved.next_sequence,
            discontinuities_dropped: saved.discontinuities_dropped,
            current: take(saved.current)?.to_vec(),
            current_start_pts: saved.current_start_pts,
            current_started: saved.current_started,
            pending_discontinuity: saved.pending_discontinuity,
            video: saved.video,
            audio: saved.audio,
            pmt_pid: saved.pmt_pid,
            pat: packet(saved.pat)?,
            pmt: packet(saved.pmt)?,
            last_pts: saved.last_pts,
            epoch: saved.epoch,
            clock: saved.clock,
            media: saved.media,
        })
    }

    /// The live media playlist.
    pub fn playlist(&self) -> Option<String> {
        let segments: Vec<&Segment> = self.window().collect();
        let first = segments.first()?;
        // RFC 8216 section 4.3.3.1: every EXTINF, rounded, at most the target duration.
        let target = segments
            .iter()
            .map(|s| s.duration.round() as u64)
            .max()
            .unwrap_or(1)
            .max(self.target.round() as u64);
        let discontinuity_sequence = self.discontinuities_dropped
            + self
                .segments
                .iter()
                .take_while(|s| s.sequence < first.sequence)
                .filter(|s| s.discontinuity)
                .count() as u64;
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}\n",
            first.sequence
        );
        for s in segments {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            out.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\nseg{}.ts\n",
                rfc3339(s.started),
                s.duration,
                s.sequence
            ));
        }
        Some(out)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` without a date library.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::looper::Looper;

    #[test]
    fn the_test_channel_is_cut_into_two_second_segments_at_key_frames() {
        let mut looper = Looper::test_channel().unwrap();
        let mut channel = Channel::new("news", Duration::from_secs(2), 6);
        for _ in 0..looper.packets_per_pass() * 5 {
            channel.push(&looper.next_packet());
        }
        let segments: Vec<&Segment> = channel.window().collect();
        assert!(segments.len() >= 6, "{}", segments.len());
        for s in &segments {
            assert!(
                (1.9..2.1).contains(&s.duration),
                "cut at key frames every 2 s: {}",
                s.duration
            );
            assert_eq!(s.bytes.len() % PACKET, 0);
            assert!(
                Packet::new(&s.bytes[..PACKET]).is_some_and(|p| p.pid() == 0),
                "starts with the PAT"
            );
        }
        let playlist = channel.playlist().unwrap();
        assert!(playlist.contains("#EXT-X-TARGETDURATION:2"), "{playlist}");
        assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{playlist}");
        assert_eq!(
            playlist.matches("#EXTINF:").count(),
            6,
            "sliding window of 6: {playlist}"
        );
    }

    #[test]
    fn a_channel_saved_mid_segment_and_restored_goes_on_as_if_never_moved() {
        let mut looper = Looper::test_channel().unwrap();
        let mut channel = Channel::new("news", Duration::from_secs(2), 6);
        // Two passes and a bit: segments held, and one half cut.
        for _ in 0..looper.packets_per_pass() * 2 + 1234 {
            channel.push(&looper.next_packet());
        }
        channel.switch_feed("primary");
        for _ in 0..4321 {
            channel.push(&looper.next_packet());
        }
        let mut payload = Vec::new();
        let saved = channel.save(&mut payload);
        let json = serde_json::to_vec(&saved).unwrap();
        let saved: Saved = serde_json::from_slice(&json).unwrap();
        let mut restored = Channel::restore(saved.clone(), &payload).unwrap();
        let mut other = looper.clone();
        other.seek(&looper.position());
        for _ in 0..looper.packets_per_pass() * 2 {
            channel.push(&looper.next_packet());
            restored.push(&other.next_packet());
        }
        assert_eq!(restored.playlist(), channel.playlist());
        assert_eq!(restored.variant(), channel.variant());
        assert_eq!(restored.active_feed, "primary");
        let bytes = |c: &Channel| c.window().map(|s| s.bytes.clone()).collect::<Vec<_>>();
        assert_eq!(
            bytes(&restored),
            bytes(&channel),
            "the same segments, byte for byte"
        );
        // A payload that does not go with the description is refused, not trusted.
        assert!(Channel::restore(saved, &payload[..payload.len() / 2]).is_none());
    }

    #[test]
    fn renditions_are_described_from_their_streams() {
        let mut channels = Vec::new();
        for clip in [config::service::Clip::P360, config::service::Clip::P180] {
            let mut looper = Looper::builtin(clip).unwrap();
            let mut channel = Channel::new("news", Duration::from_secs(2), 6);
            for _ in 0..looper.packets_per_pass() * 3 {
                channel.push(&looper.next_packet());
            }
            channels.push(channel);
        }
        let (hd, sd) = (
            channels[0].variant().unwrap(),
            channels[1].variant().unwrap(),
        );
        // 300 + 64 kbit/s and 120 + 64 kbit/s of media, plus the transport stream's overhead.
        assert!((350_000..600_000).contains(&hd.bandwidth), "{hd:?}");
        assert!((150_000..350_000).contains(&sd.bandwidth), "{sd:?}");
        assert!(hd.average_bandwidth <= hd.bandwidth);
        let master =
            master_playlist("news", [("hd", hd.clone()), ("sd", sd.clone())], None).unwrap();
        let lines: Vec<&str> = master.lines().collect();
        assert_eq!(
            lines[..3],
            ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
        );
        assert!(
            lines[3].starts_with("#EXT-X-STREAM-INF:BANDWIDTH=")
                && lines[3].ends_with(
                    ",CODECS=\"avc1.4D401E,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000"
                ),
            "{master}"
        );
        assert_eq!(lines[4], "hd/index.m3u8");
        assert!(lines[5].contains("RESOLUTION=320x180"), "{master}");
        assert_eq!(lines[6], "sd/index.m3u8");
        assert_eq!(
            master_playlist("news", [], None),
            None,
            "nothing live, no master"
        );
        let pathways = Pathways {
            server: "http://steer.example.net/steer/live?session=7f".into(),
            current: "fra".into(),
            sites: vec![
                ("fra".into(), "http://fra.example.net:8080".into()),
                ("ams".into(), "http://ams.example.net".into()),
            ],
        };
        let steered = master_playlist("news", [("hd", hd), ("sd", sd)], Some(&pathways)).unwrap();
        let lines: Vec<&str> = steered.lines().collect();
        assert_eq!(
            lines[3],
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://steer.example.net/steer/live?session=7f\",PATHWAY-ID=\"fra\""
        );
        let uris: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            uris,
            [
                "http://fra.example.net:8080/news/hd/index.m3u8",
                "http://fra.example.net:8080/news/sd/index.m3u8",
                "http://ams.example.net/news/hd/index.m3u8",
                "http://ams.example.net/news/sd/index.m3u8",
            ]
        );
        assert!(
            lines[4].ends_with(",PATHWAY-ID=\"fra\",STABLE-VARIANT-ID=\"hd\""),
            "{steered}"
        );
        assert_eq!(Channel::new("x", Duration::from_secs(2), 6).variant(), None);
    }

    #[test]
    fn dates_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_420_000_123);
        assert_eq!(rfc3339(t), "2026-11-23T07:46:40.123Z");
    }
}
