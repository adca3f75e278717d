//! hls.js, the browser player, for tests and benchmarks of what viewers' players do: a page
//! served from an origin of its own (as a broadcaster's site is, so every stream request is
//! cross-origin) that runs any number of players, each sampled every 100 ms: the playing
//! position, the buffer ahead of it, stalls, the host fragments come from, errors and the
//! steering manifests loaded.
//!
//! hls.js comes from the npm registry; `./scripts/test.sh` installs it under
//! `target/npm/`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::Missing;
use crate::browser::Page;

/// Where `./scripts/test.sh` installs hls.js's browser build.
pub fn library() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("npm/node_modules/hls.js/dist/hls.min.js")
}

/// hls.js's path, or `None` after skipping `test` (a failure under `REQUIRE_PEERS`).
pub fn require(test: &str) -> Option<PathBuf> {
    let path = library();
    if path.is_file() {
        return Some(path);
    }
    crate::skip_or_fail(
        test,
        &[Missing::File {
            path,
            what: "hls.js (npm package hls.js)".into(),
        }],
    );
    None
}

/// The page's players and their sampling.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>players</title>
<script src="/hls.min.js"></script></head>
<body>
<script>
const players = {};
function play(id, url, config) {
  const video = document.createElement('video');
  Object.assign(video, { id, muted: true, autoplay: true, playsInline: true, width: 320 });
  document.body.appendChild(video);
  const hls = new Hls(Object.assign({ liveSyncDurationCount: 3 }, config || {}));
  const p = { hls, video, frags: 0, host: null, switches: [], errors: [], steering: [],
              last: null, started: null, stallSince: null, longestStall: 0, stalledTotal: 0,
              lowestAhead: null };
  players[id] = p;
  hls.on(Hls.Events.FRAG_LOADED, (e, d) => {
    p.frags++;
    const host = new URL(d.frag.url).host;
    if (host !== p.host) { p.switches.push({ at: Date.now(), host }); p.host = host; }
  });
  hls.on(Hls.Events.ERROR, (e, d) => p.errors.push({
    at: Date.now(), details: d.details, fatal: d.fatal,
    url: (d.frag && d.frag.url) || (d.context && d.context.url) || d.url || '' }));
  hls.on(Hls.Events.STEERING_MANIFEST_LOADED, (e, d) => p.steering.push({
    at: Date.now(), priority: d.steeringManifest['PATHWAY-PRIORITY'], ttl: d.steeringManifest.TTL }));
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(() => {});
  return true;
}
function ahead(v) {
  const b = v.buffered;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= v.currentTime + 0.1 && v.currentTime <= b.end(i)) return b.end(i) - v.currentTime;
  }
  return 0;
}
let lastTick = Date.now();
setInterval(() => {
  const now = Date.now();
  const tick = now - lastTick;
  lastTick = now;
  for (const id in players) {
    const p = players[id];
    const t = p.video.currentTime;
    if (p.last === null || t > p.last + 0.001) {
      if (t > 0 && p.started === null) p.started = now;
      p.last = t;
      p.stallSince = null;
    } else if (p.started !== null && p.stallSince === null) {
      p.stallSince = now;
    }
    if (p.stallSince !== null) {
      p.longestStall = Math.max(p.longestStall, now - p.stallSince);
      p.stalledTotal += tick;
    }
    if (p.started !== null) {
      const a = ahead(p.video);
      p.lowestAhead = p.lowestAhead === null ? a : Math.min(p.lowestAhead, a);
    }
  }
}, 100);
function mark(id) {
  const p = players[id];
  p.longestStall = p.stallSince === null ? 0 : Date.now() - p.stallSince;
  p.stalledTotal = 0;
  p.lowestAhead = null;
  return true;
}
function report(id) {
  const p = players[id];
  return { currentTime: p.video.currentTime, ahead: ahead(p.video), started: p.started,
           frags: p.frags, host: p.host, switches: p.switches, errors: p.errors,
           steering: p.steering, longestStall: p.longestStall, stalledTotal: p.stalledTotal,
           stalled: p.stallSince === null ? 0 : Date.now() - p.stallSince,
           lowestAhead: p.lowestAhead };
}
</script>
</body></html>
"#;

/// The page's origin: an HTTP server on a loopback port of its own, in a thread that lives as
/// long as the test.
pub struct Site {
    addr: SocketAddr,
}

impl Site {
    /// Serves the page and `hls` (hls.js's browser build).
    pub fn start(hls: &Path) -> std::io::Result<Self> {
        let library = std::fs::read(hls)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The rest of the request head is not needed.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body): (&str, &str, &[u8]) = match path {
                    "/" => ("200 OK", "text/html", PAGE.as_bytes()),
                    "/hls.min.js" => ("200 OK", "text/javascript", &library),
                    _ => ("404 Not Found", "text/plain", b"not found\n"),
                };
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Ok(Self { addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Starts a player `id` on the page, playing `url`, with hls.js settings `config` (a JSON
/// object, `{}` for the defaults).
pub fn play(page: &mut Page<'_>, id: &str, url: &str, config: &Value) -> Result<(), String> {
    page.evaluate(&format!("play({:?}, {:?}, {config})", id, url))
        .map(|_| ())
}

/// Starts a new measuring period for player `id`: the longest stall and lowest buffer count
/// from now.
pub fn mark(page: &mut Page<'_>, id: &str) -> Result<(), String> {
    page.evaluate(&format!("mark({id:?})")).map(|_| ())
}

/// What player `id` has done so far.
pub fn report(page: &mut Page<'_>, id: &str) -> Result<Report, String> {
    page.evaluate(&format!("report({id:?})")).map(Report)
}

/// A player's account (see `report` in the page).
#[derive(Debug, Clone)]
pub struct Report(pub Value);

impl Report {
    /// Seconds of stream played.
    pub fn current_time(&self) -> f64 {
        self.0["currentTime"].as_f64().unwrap_or(0.0)
    }

    /// Seconds buffered ahead of the playing position.
    pub fn ahead(&self) -> f64 {
        self.0["ahead"].as_f64().unwrap_or(0.0)
    }

    /// Whether the position has moved at all.
    pub fn playing(&self) -> bool {
        !self.0["started"].is_null()
    }

    /// The host (and port) the last fragment came from.
    pub fn host(&self) -> Option<&str> {
        self.0["host"].as_str()
    }

    /// When fragments started coming from each host, in order.
    pub fn switches(&self) -> Vec<(SystemTime, String)> {
        self.0["switches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    at(&s["at"]),
                    s["host"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Errors hls.js reported after `since`: (details, fatal).
    pub fn errors_since(&self, since: SystemTime) -> Vec<(String, bool)> {
        self.0["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| at(&e["at"]) >= since)
            .map(|e| {
                (
                    format!(
                        "{} {}",
                        e["details"].as_str().unwrap_or("?"),
                        e["url"].as_str().unwrap_or("")
                    ),
                    e["fatal"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// Steering manifests loaded: when, and their pathway priority.
    pub fn steering(&self) -> Vec<(SystemTime, Vec<String>)> {
        self.0["steering"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let priority = s["priority"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect();
                (at(&s["at"]), priority)
            })
            .collect()
    }

    /// The longest time the position stood still since the last mark (a stall still going
    /// on included).
    pub fn longest_stall(&self) -> Duration {
        let ms = self.0["longestStall"].as_f64().unwrap_or(0.0);
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// The time the position stood still in all since the last mark.
    pub fn stalled_total(&self) -> Duration {
        let ms = self.0["stalledTotal"].as_f64().unwrap_or(0.0);
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// The least buffer ahead of the position seen since the last mark, in seconds.
    pub fn lowest_ahead(&self) -> Option<f64> {
        self.0["lowestAhead"].as_f64()
    }
}

/// A page timestamp (milliseconds since the epoch) as a time.
fn at(value: &Value) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(value.as_f64().unwrap_or(0.0).max(0.0) as u64)
}
