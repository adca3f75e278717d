//! The `hls` probe: play the stream like a viewer would.
//!
//! Fetch the channel's playlist; when it is a master playlist, do what follows for every
//! rendition it lists (a viewer may be on any of them). For each media playlist: check that its media sequence advanced within about
//! `max_stall_factor` target durations of the last time it moved (a node answering 200 with a
//! frozen playlist is down), fetch the newest segment and check that it is MPEG-TS (sync byte
//! 0x47 every 188 bytes) and downloads at least `min_speed` times faster than real time.

use std::time::{Duration, Instant};

/// What a media playlist says that the probe needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    pub target_duration: f64,
    pub media_sequence: u64,
    /// The newest segment: URI and duration.
    pub newest: Option<(String, f64)>,
    /// Every segment: sequence number, URI and duration, oldest first.
    pub segments: Vec<(u64, String, f64)>,
    pub ended: bool,
}

/// Parses a media playlist (RFC 8216 section 4.3). `None` when it is not one.
pub fn parse_playlist(text: &str) -> Option<Playlist> {
    let mut lines = text.lines().map(str::trim);
    if lines.next()? != "#EXTM3U" {
        return None;
    }
    let mut target = None;
    let mut sequence: u64 = 0;
    let mut pending: Option<f64> = None;
    let mut newest = None;
    let mut segments = Vec::new();
    let mut ended = false;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = seconds(v);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            sequence = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            pending = seconds(v.split(',').next()?);
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            let duration = pending.take().unwrap_or(0.0);
            let number = sequence.checked_add(segments.len() as u64)?;
            segments.push((number, line.to_owned(), duration));
            newest = Some((line.to_owned(), duration));
        }
    }
    Some(Playlist {
        target_duration: target.filter(|t| *t > 0.0)?,
        media_sequence: sequence,
        newest,
        segments,
        ended,
    })
}

/// A duration in a playlist: a number of seconds from 0 to an hour. Anything else (negative,
/// not a number, absurdly long) is treated as absent rather than trusted into timer arithmetic.
fn seconds(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| (0.0..=3600.0).contains(s))
}

/// The rendition URIs of a master playlist (RFC 8216 section 4.3.4.2), in order. `None` when
/// `text` is not a master playlist.
pub fn parse_master(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines().map(str::trim);
    if lines.next()? != "#EXTM3U" {
        return None;
    }
    let mut variants = Vec::new();
    let mut pending = false;
    for line in lines {
        if line.starts_with("#EXT-X-STREAM-INF:") {
            pending = true;
        } else if pending && !line.is_empty() && !line.starts_with('#') {
            variants.push(line.to_owned());
            pending = false;
        }
    }
    (!variants.is_empty()).then_some(variants)
}

/// The path on the node of `uri` found in the playlist at `playlist` (itself a path, perhaps
/// with a query): an absolute URL keeps only its path and query (the probe asks the node it
/// checks, whatever host the playlist names), a relative one is taken from the playlist's
/// directory (RFC 3986 5.2).
pub fn resolve(playlist: &str, uri: &str) -> String {
    // The playlist's own query (a token) is no part of its directory.
    let playlist = playlist.split(['?', '#']).next().unwrap_or_default();
    let absolute = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    if let Some(rest) = absolute {
        rest.find('/')
            .map(|i| rest[i..].to_owned())
            .unwrap_or_else(|| "/".into())
    } else if uri.starts_with('/') {
        uri.to_owned()
    } else {
        let dir = playlist.rfind('/').map_or("/", |i| &playlist[..=i]);
        format!("{dir}{uri}")
    }
}

/// What the probe remembers about a channel between rounds.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    last: Option<(u64, Instant)>,
}

impl Progress {
    /// Checks that the newest segment changed recently enough; returns the failure detail if
    /// not. The newest segment's sequence number, not EXT-X-MEDIA-SEQUENCE: the latter only
    /// moves once the sliding window is full, so a freshly started stream would look frozen.
    pub fn check(&mut self, playlist: &Playlist, factor: f64, now: Instant) -> Result<(), String> {
        if playlist.ended {
            return Err("the playlist has ended (#EXT-X-ENDLIST): not a live stream".into());
        }
        let newest = playlist
            .segments
            .last()
            .map_or(playlist.media_sequence, |s| s.0);
        match self.last {
            Some((seq, since)) if seq == newest => {
                let limit = Duration::from_secs_f64(playlist.target_duration * factor.max(1.0));
                let stalled = now.saturating_duration_since(since);
                if stalled > limit {
                    return Err(format!(
                        "stream frozen: newest segment {seq} unchanged for {:.1}s (limit {:.1}s)",
                        stalled.as_secs_f64(),
                        limit.as_secs_f64()
                    ));
                }
            }
            _ => self.last = Some((newest, now)),
        }
        Ok(())
    }
}

/// Checks a segment: MPEG-TS packets and fast enough to serve a viewer.
pub fn check_segment(
    bytes: &[u8],
    elapsed: Duration,
    duration: f64,
    min_speed: f64,
) -> Result<(), String> {
    if bytes.len() < 188
        || !bytes.len().is_multiple_of(188)
        || bytes.chunks(188).take(16).any(|p| p[0] != 0x47)
    {
        return Err(format!(
            "newest segment is not MPEG-TS ({} bytes, no sync bytes)",
            bytes.len()
        ));
    }
    let allowed = Duration::from_secs_f64((duration / min_speed.max(0.01)).max(0.001));
    if duration > 0.0 && elapsed > allowed {
        return Err(format!(
            "newest segment too slow: {:.0}ms for {duration:.1}s of video (need {min_speed}x real time)",
            elapsed.as_secs_f64() * 1000.0
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2.000,\nseg41.ts\n#EXTINF:1.960,\nseg42.ts\n";

    #[test]
    fn live_playlists_are_read() {
        let p = parse_playlist(LIVE).unwrap();
        assert_eq!(
            (p.target_duration, p.media_sequence, p.ended),
            (2.0, 41, false)
        );
        assert_eq!(p.newest, Some(("seg42.ts".into(), 1.96)));
        assert_eq!(
            p.segments,
            [(41, "seg41.ts".into(), 2.0), (42, "seg42.ts".into(), 1.96)]
        );
        assert!(parse_playlist("<html>").is_none());
    }

    #[test]
    fn master_playlists_list_their_renditions_and_uris_resolve_like_a_player() {
        let master = "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nhd/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=300000\n\n/news/sd/index.m3u8\n";
        assert_eq!(
            parse_master(master),
            Some(vec![
                "hd/index.m3u8".to_owned(),
                "/news/sd/index.m3u8".to_owned()
            ])
        );
        assert_eq!(parse_master(LIVE), None, "a media playlist is not a master");
        assert_eq!(parse_master("garbage"), None);
        assert_eq!(
            resolve("/news/index.m3u8", "hd/index.m3u8"),
            "/news/hd/index.m3u8"
        );
        assert_eq!(
            resolve("/news/hd/index.m3u8", "seg4.ts"),
            "/news/hd/seg4.ts"
        );
        assert_eq!(resolve("/news/index.m3u8", "/x/seg4.ts"), "/x/seg4.ts");
        assert_eq!(
            resolve(
                "/news/index.m3u8?hdnts=exp=1~acl=/*~hmac=00",
                "seg4.ts?hdnts=x"
            ),
            "/news/seg4.ts?hdnts=x"
        );
        assert_eq!(
            resolve("/news/index.m3u8", "https://cdn.example/a/b.ts"),
            "/a/b.ts"
        );
        assert_eq!(resolve("/news/index.m3u8", "http://cdn.example"), "/");
    }

    #[test]
    fn a_frozen_playlist_fails_after_the_stall_limit() {
        let p = parse_playlist(LIVE).unwrap();
        let mut progress = Progress::default();
        let t0 = Instant::now();
        assert!(progress.check(&p, 1.5, t0).is_ok());
        assert!(
            progress
                .check(&p, 1.5, t0 + Duration::from_millis(2900))
                .is_ok(),
            "within 1.5 target durations"
        );
        let err = progress
            .check(&p, 1.5, t0 + Duration::from_millis(3100))
            .unwrap_err();
        assert!(err.contains("frozen"), "{err}");
        let moved = parse_playlist(&format!("{LIVE}#EXTINF:2.000,\nseg43.ts\n")).unwrap();
        assert!(
            progress
                .check(&moved, 1.5, t0 + Duration::from_millis(3200))
                .is_ok(),
            "advancing again"
        );
    }

    #[test]
    fn a_stream_filling_its_window_is_not_frozen() {
        // A fresh stream: EXT-X-MEDIA-SEQUENCE stays 0 until the window is full, while new
        // segments keep arriving.
        let head = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n";
        let mut text = head.to_string();
        let mut progress = Progress::default();
        let t0 = Instant::now();
        for i in 0..6u64 {
            text.push_str(&format!("#EXTINF:2.000,\nseg{i}.ts\n"));
            let p = parse_playlist(&text).unwrap();
            assert_eq!(p.media_sequence, 0);
            let at = t0 + Duration::from_secs(2 * i);
            assert!(progress.check(&p, 1.5, at).is_ok(), "segment {i}");
        }
    }

    #[test]
    fn segments_must_be_transport_stream_and_fast() {
        let mut ts = vec![0u8; 188 * 4];
        for p in ts.chunks_mut(188) {
            p[0] = 0x47;
        }
        assert!(check_segment(&ts, Duration::from_millis(100), 2.0, 1.0).is_ok());
        assert!(
            check_segment(&ts, Duration::from_millis(2500), 2.0, 1.0)
                .unwrap_err()
                .contains("too slow")
        );
        assert!(
            check_segment(b"<html>not video</html>", Duration::ZERO, 2.0, 1.0)
                .unwrap_err()
                .contains("not MPEG-TS")
        );
    }
}
