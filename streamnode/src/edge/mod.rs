//! The edge role (`role = "edge"`): the node serves the same URLs as an origin, from the
//! service's origins through a cache ([`cache`]). Concurrent misses for one object cause one
//! origin fetch, and every waiter gets the bytes as they arrive ([`fill`]). Live playlists
//! are fresh for at most half their target duration; segments until evicted. When the origins
//! fail, a segment is served from the cache if there, a playlist only if no older than
//! `playlist_stale`. Tokens are checked here as at an origin and are never part of a cache
//! key; toward a protected origin the edge presents a token of its own. With a disk tier
//! ([`disk`]), segments memory lets go are kept on disk and a memory miss reads them back
//! before asking the origin (still counted a miss: it is not from memory).

pub mod cache;
pub mod disk;
pub mod fill;
pub mod origin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use config::site::EdgeSettings;
use serde::Serialize;

use crate::access::Checked;
use cache::{Cache, Lookup, Object};
use disk::Disk;
use fill::{Fill, Head};
use origin::{Origins, Outcome};

/// An edge node's cache, origins and counts.
pub struct Edge {
    /// The channels the node's services carry: anything else is not fetched.
    channels: std::collections::HashSet<String>,
    cache: Cache,
    /// The second tier, for segments memory let go.
    disk: Option<Arc<Disk>>,
    origins: Origins,
    playlist_ttl: Duration,
    playlist_stale: Duration,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    /// By [`Served`].
    served: [AtomicU64; 4],
    origin_answered: AtomicU64,
    origin_failed: AtomicU64,
}

/// How a request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    Miss,
    Coalesced,
    Stale,
}

impl Served {
    const ALL: [Self; 4] = [Self::Hit, Self::Miss, Self::Coalesced, Self::Stale];

    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
        }
    }
}

/// What the status document says of the cache.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeStatus {
    /// Requests served from the cache (hits, coalesced and stale) over all requests.
    pub hit_ratio: f64,
    pub requests: std::collections::BTreeMap<&'static str, u64>,
    pub origin_fetches: u64,
    pub origin_failures: u64,
    pub cache_objects: usize,
    pub cache_bytes: usize,
    /// The disk tier, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskStatus>,
}

/// What the status document says of the disk tier.
#[derive(Debug, Clone, Serialize)]
pub struct DiskStatus {
    /// Memory misses served from the disk instead of the origin.
    pub reads: u64,
    pub objects: usize,
    pub bytes: usize,
}

/// Longest a playlist is fresh for: half its target duration, so a player asking every
/// target duration sees each segment at most half a duration late.
fn playlist_ttl(text: &[u8], configured: Duration) -> Duration {
    let text = String::from_utf8_lossy(text);
    let target = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0);
    match target {
        Some(t) => configured.min(Duration::from_secs_f64(t / 2.0)),
        None => configured,
    }
}

impl Edge {
    /// An edge of `channels` fetching from `origins` with `settings` (their defaults when
    /// none); an error when its disk tier's directory cannot be used.
    pub fn new(
        channels: impl IntoIterator<Item = String>,
        origins: Vec<SocketAddr>,
        settings: Option<&EdgeSettings>,
    ) -> std::io::Result<Self> {
        let defaults = EdgeSettings::default();
        let s = settings.unwrap_or(&defaults);
        let disk = match &s.disk {
            Some(tier) => Some(Arc::new(
                Disk::open(&tier.path, cache::mib(tier.mib)).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("the disk tier in {}: {e}", tier.path.display()),
                    )
                })?,
            )),
            None => None,
        };
        Ok(Self {
            channels: channels.into_iter().collect(),
            cache: Cache::new(cache::mib(s.cache_mib)),
            disk,
            origins: Origins::new(origins, s.origin_timeout.get()),
            playlist_ttl: s.playlist_ttl.get(),
            playlist_stale: s.playlist_stale.get(),
            counts: Counts::default(),
        })
    }

    fn count(&self, served: Served) {
        let i = Served::ALL.iter().position(|s| *s == served).unwrap_or(0);
        self.counts.served[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Serves `path` (the cache key: never the query) as `checked` allows; on a miss, fetches
    /// it with the query `origin_query` makes (the edge's own token for a protected origin:
    /// minted only then, never on a hit).
    pub async fn serve(
        self: &Arc<Self>,
        path: &str,
        checked: &Checked<'_>,
        origin_query: impl FnOnce() -> Option<String>,
    ) -> Response {
        // A channel the node does not carry is no reason to ask the origin (nor a way to
        // fill the cache with what anyone asks for).
        let channel = path.split('/').nth(1).unwrap_or_default();
        if !self.channels.contains(channel) {
            return (
                StatusCode::NOT_FOUND,
                format!("no channel {channel:?} on this node\n"),
            )
                .into_response();
        }
        let (fill, stale, served) = match self.cache.lookup(path, Instant::now()) {
            Lookup::Hit(object) => {
                self.count(Served::Hit);
                return self.whole(&object, path, checked, "HIT");
            }
            Lookup::Coalesced { fill, stale } => (fill, stale, Served::Coalesced),
            Lookup::Miss { fill, stale } => {
                self.fetch(path, &fill, origin_query());
                (fill, stale, Served::Miss)
            }
        };
        let playlist = path.ends_with(".m3u8");
        let stale = stale.filter(|s| !playlist || s.fetched.elapsed() < self.playlist_stale);
        let head = match fill.answered().await {
            Ok(head) if head.status < 500 => head,
            failed => {
                if let Some(old) = stale {
                    self.count(Served::Stale);
                    return self.whole(&old, path, checked, "STALE");
                }
                self.count(served);
                let why = match failed {
                    Ok(head) => format!("the origin answered {}", head.status),
                    Err(why) => why,
                };
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("no origin could serve {path}: {why}\n"),
                )
                    .into_response();
            }
        };
        self.count(served);
        let x_cache = if served == Served::Miss {
            "MISS"
        } else {
            "HIT"
        };
        if playlist && head.status == 200 {
            // A playlist is read whole: the viewer's token is written into its URIs.
            return match fill.complete().await {
                Ok(body) => self.playlist(&body, path, checked, x_cache),
                Err(why) => match stale {
                    Some(old) => self.whole(&old, path, checked, "STALE"),
                    None => (
                        StatusCode::BAD_GATEWAY,
                        format!("the origin broke off {path}: {why}\n"),
                    )
                        .into_response(),
                },
            };
        }
        // Bytes as they come from the origin.
        let mut response = fill.body().into_response();
        *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
        let headers = response.headers_mut();
        if let Some(length) = head.length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        object_headers(headers, &head, x_cache);
        response
    }

    /// Starts fetching `path` into `fill`. The fetch belongs to the cache, not to the request
    /// that missed: a viewer who goes away leaves it running for the others.
    fn fetch(self: &Arc<Self>, path: &str, fill: &Arc<Fill>, origin_query: Option<String>) {
        let target = match origin_query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let edge = self.clone();
        let (key, filling) = (path.to_owned(), fill.clone());
        tokio::spawn(async move {
            let playlist = key.ends_with(".m3u8");
            if !playlist && edge.fill_from_disk(&key, &filling).await {
                edge.keep(edge.cache.finished(&key, &filling, None));
                return;
            }
            let counts = &edge.counts;
            edge.origins
                .fetch(&target, &filling, |_, outcome| {
                    let counter = match outcome {
                        Outcome::Answered => &counts.origin_answered,
                        Outcome::Failed => &counts.origin_failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                .await;
            let ttl = playlist.then(|| playlist_ttl(&filling.bytes(), edge.playlist_ttl));
            edge.keep(edge.cache.finished(&key, &filling, ttl));
        });
    }

    /// Fills `fill` with the disk tier's copy of `path`, if it has one.
    async fn fill_from_disk(&self, path: &str, fill: &Fill) -> bool {
        let Some(disk) = self.disk.clone() else {
            return false;
        };
        let key = path.to_owned();
        let Ok(Some((content_type, body))) =
            tokio::task::spawn_blocking(move || disk.get(&key)).await
        else {
            return false;
        };
        fill.head(Head {
            status: 200,
            content_type,
            length: Some(body.len() as u64),
        });
        fill.push(body);
        fill.done();
        true
    }

    /// Hands the segments memory let go to the disk tier, if there is one.
    fn keep(&self, evicted: Vec<(String, Arc<Object>)>) {
        let Some(disk) = self.disk.clone() else {
            return;
        };
        if evicted.is_empty() {
            return;
        }
        for (path, object) in &evicted {
            disk.stage(path, object.head.content_type.clone(), object.body.clone());
        }
        tokio::task::spawn_blocking(move || {
            for (path, object) in evicted {
                disk.put_staged(&path, object.head.content_type.clone(), &object.body);
            }
        });
    }

    /// A whole object from the cache: one piece, its length known.
    fn whole(
        &self,
        object: &Object,
        path: &str,
        checked: &Checked<'_>,
        x_cache: &'static str,
    ) -> Response {
        if path.ends_with(".m3u8") {
            return self.playlist(&object.body, path, checked, x_cache);
        }
        let mut response = object.body.clone().into_response();
        object_headers(response.headers_mut(), &object.head, x_cache);
        response
    }

    /// A playlist as `checked` allows: the edge's own token (if it fetched with one) taken
    /// out, the viewer's written in.
    fn playlist(
        &self,
        body: &[u8],
        path: &str,
        checked: &Checked<'_>,
        x_cache: &'static str,
    ) -> Response {
        let text = String::from_utf8_lossy(body).into_owned();
        // A protected channel's origin wrote the edge's token into the URIs (an open one's
        // wrote none: nothing to take out).
        let text = match checked.params().as_slice() {
            [] => text,
            params => tokens::carry::strip(&text, params),
        };
        let max_age = playlist_ttl(text.as_bytes(), self.playlist_ttl)
            .as_secs()
            .max(1);
        let mut response = checked.playlist(text, path, max_age as u32);
        response
            .headers_mut()
            .insert("x-cache", HeaderValue::from_static(x_cache));
        response
    }

    /// The cache's figures for the status document.
    pub fn status(&self) -> EdgeStatus {
        let requests: std::collections::BTreeMap<&'static str, u64> = Served::ALL
            .iter()
            .zip(&self.counts.served)
            .map(|(s, n)| (s.label(), n.load(Ordering::Relaxed)))
            .collect();
        let total: u64 = requests.values().sum();
        let from_cache = total - requests.get("miss").copied().unwrap_or(0);
        let (cache_objects, cache_bytes) = self.cache.size();
        EdgeStatus {
            hit_ratio: if total == 0 {
                0.0
            } else {
                from_cache as f64 / total as f64
            },
            requests,
            origin_fetches: self.counts.origin_answered.load(Ordering::Relaxed),
            origin_failures: self.counts.origin_failed.load(Ordering::Relaxed),
            cache_objects,
            cache_bytes,
            disk: self.disk.as_ref().map(|disk| {
                let (objects, bytes) = disk.size();
                DiskStatus {
                    reads: disk.reads(),
                    objects,
                    bytes,
                }
            }),
        }
    }

    /// `(label, count)` of requests by how they were served.
    pub fn served(&self) -> Vec<(&'static str, u64)> {
        Served::ALL
            .iter()
            .zip(&self.counts.served)
            .map(|(s, n)| (s.label(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The headers of a segment (or an error) served from the cache or a fill.
fn object_headers(headers: &mut axum::http::HeaderMap, head: &fill::Head, x_cache: &'static str) {
    headers.insert(
        header::CONTENT_TYPE,
        head.content_type
            .clone()
            .unwrap_or(HeaderValue::from_static("video/mp2t")),
    );
    if head.status == 200 {
        // Segments never change: caches may keep them as long as they are listed.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
    }
    headers.insert("x-cache", HeaderValue::from_static(x_cache));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_playlist_is_fresh_for_half_its_target_duration_at_most() {
        let text = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n";
        assert_eq!(
            playlist_ttl(text, Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            playlist_ttl(text, Duration::from_millis(300)),
            Duration::from_millis(300)
        );
        assert_eq!(
            playlist_ttl(b"#EXTM3U\n", Duration::from_secs(5)),
            Duration::from_secs(5),
            "a master playlist: the configured TTL"
        );
    }
}
