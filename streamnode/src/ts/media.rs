//! What a stream carries, read from its own headers, for the master playlist: the picture
//! size and frame rate from the H.264 sequence parameter set, and RFC 6381 codec strings
//! (`avc1.4D401E`, `mp4a.40.2`) from the SPS and the AAC ADTS header.
//!
//! The SPS is parsed by `h264-reader` (exp-Golomb fields, scaling lists, cropping: not ours to
//! get wrong); the TS demultiplexing around it is the few lines below. Called once per finished
//! segment, never per packet.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

use super::{PACKET, Packet};

/// MPEG-TS stream types (ISO/IEC 13818-1 table 2-34, and the ATSC ones in common use).
pub mod stream_type {
    pub const MPEG2_VIDEO: u8 = 0x02;
    pub const MPEG1_AUDIO: u8 = 0x03;
    pub const MPEG2_AUDIO: u8 = 0x04;
    pub const AAC_ADTS: u8 = 0x0F;
    pub const H264: u8 = 0x1B;
    pub const H265: u8 = 0x24;
    pub const AC3: u8 = 0x81;
    pub const EAC3: u8 = 0x87;

    pub fn is_video(t: u8) -> bool {
        matches!(t, MPEG2_VIDEO | H264 | H265)
    }

    pub fn is_audio(t: u8) -> bool {
        matches!(t, MPEG1_AUDIO | MPEG2_AUDIO | AAC_ADTS | AC3 | EAC3)
    }
}

/// An elementary stream of the program: PID and stream type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Elementary {
    pub pid: u16,
    pub stream_type: u8,
}

/// What the master playlist says about a rendition, beyond its bit rate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MediaInfo {
    /// Width and height in pixels, after cropping.
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    /// RFC 6381 codec strings, video first; `None` when one of the streams is of a kind we
    /// cannot name, since a partial CODECS attribute would tell players the stream lacks it.
    pub codecs: Option<Vec<String>>,
}

/// Reads what `segment` carries. `video` and `audio` are the program's streams (from the PMT).
pub fn probe(segment: &[u8], video: Option<Elementary>, audio: Option<Elementary>) -> MediaInfo {
    let mut info = MediaInfo::default();
    let mut codecs = Vec::new();
    let mut named = true;
    if let Some(v) = video {
        match v.stream_type {
            stream_type::H264 => match first_pes(segment, v.pid).as_deref().and_then(sps) {
                Some(sps) => {
                    info.resolution = sps.pixel_dimensions().ok();
                    info.frame_rate = sps.fps().filter(|f| f.is_finite() && *f > 0.0);
                    codecs.push(sps.rfc6381().to_string());
                }
                None => named = false,
            },
            stream_type::MPEG2_VIDEO => codecs.push("mp2v.61".into()),
            // HEVC codec strings need the profile tier level record; not named (yet).
            _ => named = false,
        }
    }
    if let Some(a) = audio {
        match a.stream_type {
            stream_type::AAC_ADTS => match first_pes(segment, a.pid).as_deref().and_then(adts) {
                Some(object_type) => codecs.push(format!("mp4a.40.{object_type}")),
                None => named = false,
            },
            stream_type::MPEG1_AUDIO | stream_type::MPEG2_AUDIO => {
                match first_pes(segment, a.pid)
                    .as_deref()
                    .and_then(mpeg_audio_layer)
                {
                    // MP3 has an RFC 6381 name players know; Layer I and II are left unnamed.
                    Some(3) => codecs.push("mp4a.40.34".into()),
                    _ => named = false,
                }
            }
            stream_type::AC3 => codecs.push("ac-3".into()),
            stream_type::EAC3 => codecs.push("ec-3".into()),
            _ => named = false,
        }
    }
    info.codecs = (named && !codecs.is_empty()).then_some(codecs);
    info
}

/// Largest PES payload prefix gathered: parameter sets and ADTS headers sit at the very start.
const GATHER: usize = 4096;

/// The payload of the first PES packet on `pid` in `segment`, up to `GATHER` bytes, without
/// its PES header.
fn first_pes(segment: &[u8], pid: u16) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for bytes in segment.chunks_exact(PACKET) {
        let Some(p) = Packet::new(bytes) else {
            continue;
        };
        if p.pid() != pid {
            continue;
        }
        let Some(at) = p.payload_offset() else {
            continue;
        };
        match &mut out {
            None if p.unit_start() => out = Some(bytes[at..].to_vec()),
            None => {}
            Some(_) if p.unit_start() => break,
            Some(buf) => buf.extend_from_slice(&bytes[at..]),
        }
        if out.as_ref().is_some_and(|b| b.len() >= GATHER) {
            break;
        }
    }
    let pes = out?;
    // PES header: start code, stream id, length, two flag bytes, header data length.
    if pes.get(..3)? != [0, 0, 1] {
        return None;
    }
    let header = 9 + usize::from(*pes.get(8)?);
    pes.get(header..).map(<[u8]>::to_vec)
}

/// The first sequence parameter set in an Annex B byte stream.
fn sps(stream: &[u8]) -> Option<SeqParameterSet> {
    nal_units(stream)
        .find(|nal| nal.first().is_some_and(|h| h & 0x1F == 7))
        .and_then(|nal| {
            let rbsp = decode_nal(nal).ok()?;
            SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()
        })
}

/// NAL units of an Annex B byte stream (start codes `00 00 01` or `00 00 00 01`); the last
/// one may be cut short by the gathering limit, which only matters if it is the SPS.
fn nal_units(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // Back over the start code and the zero byte of a 4-byte one.
            let mut e = s - 3;
            while e > 0 && stream[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(stream.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(s, e)| s < e)
        .map(move |(s, e)| &stream[s..e])
}

/// The MPEG-4 audio object type of an ADTS frame (2 for AAC-LC).
fn adts(frame: &[u8]) -> Option<u8> {
    let h = frame.get(..3)?;
    // Syncword 0xFFF, then the profile is object type minus one.
    (h[0] == 0xFF && h[1] & 0xF0 == 0xF0).then_some((h[2] >> 6) + 1)
}

/// The layer (1, 2 or 3) of an MPEG audio frame.
fn mpeg_audio_layer(frame: &[u8]) -> Option<u8> {
    let h = frame.get(..2)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    match (h[1] >> 1) & 3 {
        0 => None,
        bits => Some(4 - bits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::looper::{TEST_CLIP, TEST_CLIP_180P};

    /// The clips' PIDs, as ffmpeg's muxer assigns them.
    const VIDEO: Elementary = Elementary {
        pid: 0x100,
        stream_type: stream_type::H264,
    };
    const AUDIO: Elementary = Elementary {
        pid: 0x101,
        stream_type: stream_type::AAC_ADTS,
    };

    #[test]
    fn the_test_clips_are_read_from_their_own_headers() {
        let info = probe(TEST_CLIP, Some(VIDEO), Some(AUDIO));
        assert_eq!(info.resolution, Some((640, 360)));
        assert_eq!(info.frame_rate, Some(25.0));
        // Main profile (77 = 0x4D), level 3.0 (30 = 0x1E), as ffprobe reports.
        assert_eq!(
            info.codecs,
            Some(vec!["avc1.4D401E".to_owned(), "mp4a.40.2".to_owned()])
        );
        let info = probe(TEST_CLIP_180P, Some(VIDEO), Some(AUDIO));
        assert_eq!(info.resolution, Some((320, 180)));
        assert_eq!(
            info.codecs,
            Some(vec!["avc1.4D400C".to_owned(), "mp4a.40.2".to_owned()])
        );
    }

    #[test]
    fn unknown_or_unreadable_streams_leave_codecs_out() {
        let hevc = Elementary {
            stream_type: stream_type::H265,
            ..VIDEO
        };
        assert_eq!(probe(TEST_CLIP, Some(hevc), Some(AUDIO)).codecs, None);
        // No video PES on that PID: nothing to read, nothing claimed.
        let elsewhere = Elementary {
            pid: 0x1FF,
            ..VIDEO
        };
        let info = probe(TEST_CLIP, Some(elsewhere), Some(AUDIO));
        assert_eq!((info.codecs, info.resolution), (None, None));
        assert_eq!(
            probe(&[0x47; 10], Some(VIDEO), Some(AUDIO)),
            MediaInfo::default()
        );
        // Garbage after a PES start code never panics the parser.
        let mut packet = [0xFFu8; PACKET];
        packet[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x10]);
        packet[4..13].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 0]);
        packet[13..18].copy_from_slice(&[0, 0, 1, 0x67, 0x64]);
        assert_eq!(probe(&packet, Some(VIDEO), None).codecs, None);
    }

    #[test]
    fn annex_b_units_are_split_at_three_and_four_byte_start_codes() {
        let stream = [
            0, 0, 0, 1, 9, 0xF0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3,
        ];
        let units: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(units, vec![&[9, 0xF0][..], &[0x67, 1, 2], &[0x68, 3]]);
        assert_eq!(adts(&[0xFF, 0xF1, 0x50]), Some(2));
        assert_eq!(adts(&[0x12, 0x34, 0x56]), None);
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFB]), Some(3));
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFD]), Some(2));
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xF9]), None);
    }
}
