//! A viewer: resolves the stream's hostname through its resolver and plays the live playlist
//! like an HLS player, inside a viewer node's namespace.
//!
//! The player model is the usual one: start three segments behind the live edge, play as soon
//! as the first segment is in, then keep fetching new segments while the buffer drains in real
//! time. A stall is time with an empty buffer. On an error the player tries the next address of
//! the answer, and asks the resolver again once every address failed, as players and their
//! HTTP stacks do. A playlist that stops moving for 3.5 target durations counts as an error
//! too, as ExoPlayer's "playlist stuck" does. Segments are fetched, not decoded: the probe and
//! the ffmpeg tests check what is inside. Playlists are read with healthd's parser. Each segment
//! request carries CMCD in its query, as hls.js sends it: the buffer left, start-up, a stall
//! since the previous request, the throughput measured, the session.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use healthd::probe::hls::{parse_master, parse_playlist, resolve};
use healthd::probe::http;

use crate::dnsquery::ask_a;
use crate::timeline::{Timeline, What};

/// What to watch and where to ask.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Timeline lane, `viewer CITY`.
    pub lane: String,
    /// Namespace the viewer runs in.
    pub namespace: String,
    pub resolver: SocketAddr,
    pub hostname: String,
    pub port: u16,
    /// Playlist path, `/CHANNEL/index.m3u8`.
    pub playlist: String,
}

/// What the viewer experienced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Experience {
    /// From start to the first segment in the buffer.
    pub startup: Option<Duration>,
    pub stalled: Duration,
    /// Times the buffer ran empty while playing.
    pub stalls: u32,
    /// The least media left in the buffer at a request while playing (CMCD's `bl`).
    pub lowest_buffer: Option<Duration>,
    /// Segment bytes received, and the time spent receiving them (CMCD's `mtp` per segment).
    pub downloaded_bytes: u64,
    pub downloading: Duration,
    pub errors: u32,
    pub segments: u32,
    /// Addresses segments came from: one entry per switch of server.
    pub servers: Vec<IpAddr>,
}

impl Experience {
    /// The mean throughput of the segment downloads.
    pub fn throughput_kbps(&self) -> Option<u64> {
        let ms = self.downloading.as_millis() as u64;
        (ms > 0).then(|| self.downloaded_bytes * 8 / ms)
    }
}

impl Viewer {
    /// Plays until `stop` is set, recording into `timeline`; runs on its own thread, inside
    /// the viewer's namespace.
    pub fn spawn(
        self,
        timeline: Timeline,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<anyhow::Result<Experience>> {
        std::thread::spawn(move || {
            crate::netns::enter(&self.namespace)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(self.play(&timeline, &stop)))
        })
    }

    async fn play(&self, timeline: &Timeline, stop: &AtomicBool) -> Experience {
        let started = Instant::now();
        let mut seen = Experience::default();
        let mut addresses: Vec<IpAddr> = Vec::new();
        let mut current = 0usize;
        let mut session = Session::default();
        // When the buffered media runs out, once playing.
        let mut buffer_end: Option<Instant> = None;
        let mut stalled_since: Option<Instant> = None;
        // A stall since the last request, for CMCD's `bs`.
        let mut starved = false;
        let socket = UdpSocket::bind("0.0.0.0:0");
        while !stop.load(Ordering::Relaxed) {
            if let (Some(end), None) = (buffer_end, stalled_since)
                && Instant::now() > end
            {
                stalled_since = Some(end);
                starved = true;
                seen.stalls += 1;
                timeline.record_at(end - timeline.start(), &self.lane, What::StallStart);
            }
            if current >= addresses.len() {
                let answer = socket
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .and_then(|s| {
                        ask_a(
                            s,
                            self.resolver,
                            &self.hostname,
                            None,
                            true,
                            Duration::from_secs(1),
                        )
                    });
                match answer {
                    Ok(a) if !a.addresses.is_empty() => {
                        timeline.record(&self.lane, What::Resolved(a.addresses.clone()));
                        addresses = a.addresses;
                        current = 0;
                        session = Session::default();
                    }
                    Ok(_) => {
                        seen.errors += 1;
                        timeline.record(&self.lane, What::Error("empty DNS answer".into()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => {
                        seen.errors += 1;
                        timeline.record(&self.lane, What::Error(format!("DNS: {e:#}")));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let server = addresses[current];
            let base = format!("http://{}", SocketAddr::new(server, self.port));
            let data = ClientData {
                buffer: buffer_end.map_or(Duration::ZERO, |end| {
                    end.saturating_duration_since(Instant::now())
                }),
                startup: buffer_end.is_none(),
                starved: std::mem::take(&mut starved),
                throughput_kbps: session.throughput_kbps,
                session: self.lane.clone(),
            };
            if !data.startup {
                seen.lowest_buffer = Some(
                    seen.lowest_buffer
                        .map_or(data.buffer, |b| b.min(data.buffer)),
                );
            }
            let result = self
                .round(&base, &mut session, &data, timeline, &mut seen, server)
                .await;
            match result {
                Ok(Some((duration_sum, target))) => {
                    if duration_sum > 0.0 {
                        let now = Instant::now();
                        let media = Duration::from_secs_f64(duration_sum);
                        match buffer_end {
                            None => {
                                seen.startup = Some(now - started);
                                timeline.record(&self.lane, What::Playing(server));
                                buffer_end = Some(now + media);
                            }
                            Some(end) if now > end => {
                                seen.stalled += now - end;
                                stalled_since = None;
                                timeline.record(&self.lane, What::StallEnd(now - end));
                                buffer_end = Some(now + media);
                            }
                            Some(end) => buffer_end = Some(end + media),
                        }
                    }
                    // Poll the playlist twice per target duration, as players do.
                    tokio::time::sleep(Duration::from_secs_f64(target / 2.0)).await;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    seen.errors += 1;
                    timeline.record(&self.lane, What::Error(format!("{server}: {e}")));
                    // The next address; the resolver again when all failed.
                    current += 1;
                    session = Session::default();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if let Some(end) = buffer_end
            && Instant::now() > end
        {
            seen.stalled += Instant::now() - end;
        }
        seen
    }

    /// One playlist refresh and the new segments it lists: the media seconds added and the
    /// target duration, or `None` when there was nothing to fetch yet.
    async fn round(
        &self,
        base: &str,
        session: &mut Session,
        data: &ClientData,
        timeline: &Timeline,
        seen: &mut Experience,
        server: IpAddr,
    ) -> Result<Option<(f64, f64)>, String> {
        let Session {
            media,
            next,
            progress,
            throughput_kbps,
        } = session;
        let (path, text) = match media {
            Some(path) => (path.clone(), playlist_text(base, path).await?),
            None => {
                let text = playlist_text(base, &self.playlist).await?;
                // A master playlist, read once per server: play its first rendition, as
                // players start on the first one listed.
                let (path, text) = match parse_master(&text).and_then(|v| v.into_iter().next()) {
                    Some(first) => {
                        let path = resolve(&self.playlist, &first);
                        let text = playlist_text(base, &path).await?;
                        (path, text)
                    }
                    None => (self.playlist.clone(), text),
                };
                *media = Some(path.clone());
                (path, text)
            }
        };
        let segments = parse_playlist(&text).ok_or("playlist: not a media playlist")?;
        let Some(newest) = segments.segments.last().map(|s| s.0) else {
            return Ok(None);
        };
        match *progress {
            Some((seen_newest, since)) if seen_newest == newest => {
                let stuck = Duration::from_secs_f64(segments.target_duration * 3.5);
                if since.elapsed() > stuck {
                    return Err(format!(
                        "playlist stuck at segment {newest} for {:.1}s",
                        since.elapsed().as_secs_f64()
                    ));
                }
            }
            _ => *progress = Some((newest, Instant::now())),
        }
        let oldest = segments.segments[0].0;
        // A new server numbers its segments its own way: join three behind its live edge.
        let from = match *next {
            Some(n) if n >= oldest && n <= newest + 1 => n,
            _ => newest.saturating_sub(2).max(oldest),
        };
        let mut added = 0.0;
        for (sequence, uri, duration) in segments.segments.iter().filter(|s| s.0 >= from) {
            let timeout = Duration::from_secs_f64((duration * 2.0).max(1.0));
            let url = resolve(&path, uri);
            let separator = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{separator}CMCD={}", data.encoded());
            let segment = http::get(base, &url, timeout).await?;
            let ms = segment.elapsed.as_millis().max(1) as u64;
            *throughput_kbps = Some(segment.body.len() as u64 * 8 / ms);
            if segment.status != 200 {
                return Err(format!("{uri}: HTTP {}", segment.status));
            }
            if segment.body.first() != Some(&0x47) {
                return Err(format!("{uri}: not MPEG-TS"));
            }
            added += duration;
            seen.segments += 1;
            seen.downloaded_bytes += segment.body.len() as u64;
            seen.downloading += segment.elapsed;
            if seen.servers.last() != Some(&server) {
                seen.servers.push(server);
                timeline.record(&self.lane, What::SegmentsFrom(server));
            }
            timeline.record(
                &self.lane,
                What::Segment {
                    server,
                    sequence: *sequence,
                },
            );
            *next = Some(sequence + 1);
        }
        Ok(Some((added, segments.target_duration)))
    }
}

/// Where a viewer is in the stream of the server it plays from; starts over with another
/// server.
#[derive(Debug, Default)]
struct Session {
    /// The media playlist played (the channel's, or the first rendition of its master).
    media: Option<String>,
    /// The next segment to fetch.
    next: Option<u64>,
    /// The newest segment the playlist listed, and since when.
    progress: Option<(u64, Instant)>,
    /// Throughput of the last segment fetched, for CMCD's `mtp`.
    throughput_kbps: Option<u64>,
}

/// What a player says of its playback on each request (CMCD, CTA-5004), as hls.js sends it:
/// keys in alphabetical order, in the `CMCD` query parameter.
#[derive(Debug, Clone, PartialEq)]
struct ClientData {
    /// Media left in the buffer (`bl`, rounded to 100 ms as the spec asks).
    buffer: Duration,
    /// Still starting (`su`).
    startup: bool,
    /// The buffer ran empty since the previous request (`bs`).
    starved: bool,
    /// Throughput measured on the last segment (`mtp`, kbit/s).
    throughput_kbps: Option<u64>,
    /// The playback session (`sid`).
    session: String,
}

impl ClientData {
    /// The list, percent-encoded for the query.
    fn encoded(&self) -> String {
        let mut keys = vec![format!("bl={}", self.buffer.as_millis() / 100 * 100)];
        if self.starved {
            keys.push("bs".to_owned());
        }
        if let Some(mtp) = self.throughput_kbps {
            keys.push(format!("mtp={mtp}"));
        }
        keys.push("ot=av".to_owned());
        keys.push("sf=h".to_owned());
        let sid = self.session.replace('\\', "\\\\").replace('"', "\\\"");
        keys.push(format!("sid=\"{sid}\""));
        if self.startup {
            keys.push("su".to_owned());
        }
        percent_encode(&keys.join(","))
    }
}

/// Percent-encodes a query parameter's value: everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// GETs a playlist's text.
async fn playlist_text(base: &str, path: &str) -> Result<String, String> {
    let fetched = http::get(base, path, Duration::from_secs(2)).await?;
    if fetched.status != 200 {
        return Err(format!("{path}: HTTP {}", fetched.status));
    }
    String::from_utf8(fetched.body.to_vec()).map_err(|_| format!("{path}: not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_data_is_what_a_stream_node_reads() {
        let data = ClientData {
            buffer: Duration::from_millis(4_250),
            startup: false,
            starved: true,
            throughput_kbps: Some(25_000),
            session: "viewer Amsterdam \"1\"".to_owned(),
        };
        let query = format!("CMCD={}", data.encoded());
        assert!(!query[5..].contains([',', '=', '"', ' ']), "{query}");
        let list = streamnode::cmcd::query_value(&query, "CMCD").unwrap();
        assert_eq!(
            list,
            r#"bl=4200,bs,mtp=25000,ot=av,sf=h,sid="viewer Amsterdam \"1\"""#
        );
        let read = streamnode::cmcd::Cmcd::parse([list.as_str()]).unwrap();
        assert_eq!(read.buffer_ms, Some(4_200));
        assert_eq!(read.throughput_kbps, Some(25_000));
        assert!(read.starved && !read.startup);
        assert_eq!(read.session.as_deref(), Some("viewer Amsterdam \"1\""));
        let starting = ClientData {
            buffer: Duration::ZERO,
            startup: true,
            starved: false,
            throughput_kbps: None,
            session: "v".to_owned(),
        };
        let list = streamnode::cmcd::query_value(&format!("CMCD={}", starting.encoded()), "CMCD");
        let read = streamnode::cmcd::Cmcd::parse([list.unwrap().as_str()]).unwrap();
        assert!(read.startup && !read.starved);
        assert_eq!(read.buffer_ms, Some(0));
    }
}
