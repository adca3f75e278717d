//! Serving a node's channels over HTTP: live playlists and segments; the status document and
//! its stream are [`crate::status`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::access::Checked;
use crate::channel::Channel;
use crate::feeder::Faults;
use crate::status::Changes;

/// Everything the HTTP handlers share.
pub struct NodeState {
    pub name: String,
    /// Packagers by URL path: `CHANNEL`, or `CHANNEL/RENDITION` for a channel with renditions.
    pub channels: HashMap<String, Arc<RwLock<Channel>>>,
    /// Channels with renditions: their rendition names, in the order the master lists them.
    pub renditions: HashMap<String, Vec<String>>,
    /// Channels with renditions whose service has content steering: their pathways.
    pub pathways: HashMap<String, crate::channel::Pathways>,
    pub capacity_mbps: u32,
    /// The node's `version` label from the deployment (a canary's nodes carry the canary's).
    pub version: Option<String>,
    /// Subscriber tokens of the protected channels.
    pub access: crate::access::Access,
    /// An edge's cache and origins; none on an origin.
    pub edge: Option<Arc<crate::edge::Edge>>,
    draining: AtomicBool,
    /// A replacement serves: status streams end, telling healthd to dial again.
    replaced: AtomicBool,
    /// Fault injection shared with the feeders.
    pub faults: Faults,
    /// Tells the status streams when the node's state changes.
    pub changes: Changes,
    /// Status streams open now.
    pub(crate) status_streams: Arc<AtomicUsize>,
    /// Bytes of segments served, for egress.
    pub(crate) served: AtomicU64,
    /// Requests answered, by outcome: playlists, segments, not found.
    pub(crate) requests: [AtomicU64; 3],
    /// Segment requests per client address in the current window, for "viewers seen".
    pub(crate) viewers: RwLock<HashMap<std::net::IpAddr, Instant>>,
    /// (when, bytes served then, bits per second over the interval before it): egress is the
    /// rate between status reads at least a second apart, so it follows the load of now, not
    /// the average since start.
    pub(crate) egress: std::sync::Mutex<(Instant, u64, u64)>,
    /// Limits per client, and what they refused.
    pub admission: Arc<daemon::admission::Admission>,
    /// Viewer QoE from the players' CMCD.
    pub(crate) qoe: crate::qoe::Qoe,
}

impl NodeState {
    pub fn new(
        name: &str,
        capacity_mbps: u32,
        channels: HashMap<String, Arc<RwLock<Channel>>>,
        admission: daemon::admission::Admission,
    ) -> Self {
        // QoE is per channel: a channel with renditions is one.
        let names: std::collections::BTreeSet<&str> = channels
            .keys()
            .map(|path| path.split('/').next().unwrap_or(path))
            .collect();
        let qoe = crate::qoe::Qoe::new(names);
        Self {
            name: name.to_owned(),
            channels,
            renditions: HashMap::new(),
            pathways: HashMap::new(),
            capacity_mbps,
            version: None,
            access: Default::default(),
            edge: None,
            draining: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            faults: Faults::default(),
            changes: Changes::default(),
            status_streams: Arc::default(),
            served: AtomicU64::new(0),
            requests: Default::default(),
            viewers: RwLock::new(HashMap::new()),
            egress: std::sync::Mutex::new((Instant::now(), 0, 0)),
            qoe,
            admission: Arc::new(admission),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }

    /// A replacement serves in this node's place: the status streams say so and end.
    pub fn set_replaced(&self) {
        self.replaced.store(true, Ordering::Relaxed);
        self.changes.notify();
    }

    /// Bytes of segments served and requests answered (playlists, segments, not found).
    pub fn counters(&self) -> (u64, [u64; 3]) {
        (
            self.served.load(Ordering::Relaxed),
            self.requests.each_ref().map(|r| r.load(Ordering::Relaxed)),
        )
    }

    /// Goes on from a replaced process's counters.
    pub fn carry_counters(&self, served: u64, requests: [u64; 3]) {
        self.served.fetch_add(served, Ordering::Relaxed);
        for (counter, n) in self.requests.iter().zip(requests) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Drains the node (healthd takes it out, its viewers keep playing) or ends the drain;
    /// the status streams say so at once.
    pub fn set_draining(&self, draining: bool) {
        if self.draining.swap(draining, Ordering::Relaxed) != draining {
            self.changes.notify();
        }
    }
}

/// The HTTP routes of a node.
pub fn router(node: Arc<NodeState>) -> Router {
    Router::new()
        .route("/status", get(crate::status::whole))
        .route("/status/stream", get(crate::status::stream))
        .route("/healthz", get(healthz))
        .route("/{channel}/{file}", get(file))
        .route("/{channel}/{rendition}/{file}", get(rendition_file))
        .with_state(node)
}

pub(crate) fn cors(mut response: Response) -> Response {
    // Web players fetch playlists and segments from another origin.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn healthz(State(node): State<Arc<NodeState>>) -> Response {
    let live = node
        .channels
        .values()
        .all(|c| c.read().map(|c| c.newest().is_some()).unwrap_or(false));
    let (code, text) = if live {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "channels not live yet\n")
    };
    cors((code, text).into_response())
}

type ClientAddr = axum::extract::ConnectInfo<daemon::public::Client>;

async fn file(
    State(node): State<Arc<NodeState>>,
    Path((channel, file)): Path<(String, String)>,
    axum::extract::ConnectInfo(daemon::public::Client(client)): ClientAddr,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let checked = match admit(&node, &channel, &uri, query.as_deref(), &headers, client).await {
        Ok(checked) => checked,
        Err(answered) => return answered,
    };
    // Segments never look at renditions: a channel with renditions has no packager of its
    // own, so anything but its master playlist misses in `serve`, which explains why.
    if file == "index.m3u8"
        && let Some(names) = node.renditions.get(&channel)
    {
        return master(&node, &channel, names, &checked, uri.path());
    }
    serve(&node, &channel, &file, client, &checked, uri.path())
}

async fn rendition_file(
    State(node): State<Arc<NodeState>>,
    Path((channel, rendition, file)): Path<(String, String, String)>,
    axum::extract::ConnectInfo(daemon::public::Client(client)): ClientAddr,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let checked = match admit(&node, &channel, &uri, query.as_deref(), &headers, client).await {
        Ok(checked) => checked,
        Err(answered) => return answered,
    };
    let path = format!("{channel}/{rendition}");
    serve(&node, &path, &file, client, &checked, uri.path())
}

/// What every request for a file of `channel` goes through first: its token, then the
/// player's CMCD, then, on an edge, the cache. `Err` is the answer already made (a refusal,
/// or the edge's); `Ok`, what the origin may serve.
async fn admit<'a>(
    node: &'a NodeState,
    channel: &str,
    uri: &Uri,
    query: Option<&str>,
    headers: &HeaderMap,
    client: std::net::SocketAddr,
) -> Result<Checked<'a>, Response> {
    let checked = node
        .access
        .check(channel, uri.path(), query, headers, client.ip())
        .map_err(|refused| cors(refused.into_response()))?;
    client_data(node, channel, query, headers);
    match &node.edge {
        Some(edge) => {
            let origin = || node.access.origin_query(channel);
            Err(cors(edge.serve(uri.path(), &checked, origin).await))
        }
        None => Ok(checked),
    }
}

/// Reads what the player says in CMCD (the `CMCD` query parameter, or the `CMCD-*` headers)
/// into the channel's QoE. Never changes the answer: malformed CMCD is counted and ignored.
fn client_data(node: &NodeState, channel: &str, query: Option<&str>, headers: &HeaderMap) {
    if !node.channels.contains_key(channel) && !node.renditions.contains_key(channel) {
        return;
    }
    let from_query = query.and_then(|q| crate::cmcd::query_value(q, "CMCD"));
    let parsed = match &from_query {
        Some(list) => crate::cmcd::Cmcd::parse([list.as_str()]),
        None => {
            let lists: Vec<&str> = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"]
                .iter()
                .filter_map(|h| headers.get(*h))
                .map(|v| v.to_str().unwrap_or("\u{0}"))
                .collect();
            if lists.is_empty() {
                return;
            }
            crate::cmcd::Cmcd::parse(lists)
        }
    };
    match parsed {
        Ok(cmcd) => node.qoe.observe(channel, &cmcd),
        Err(e) => {
            tracing::debug!(channel, "CMCD ignored: {e}");
            node.qoe.malformed();
        }
    }
}

/// The master playlist of a channel with renditions, served at `path` as `checked` allows.
fn master(
    node: &NodeState,
    channel: &str,
    names: &[String],
    checked: &Checked<'_>,
    path: &str,
) -> Response {
    let variants = names.iter().filter_map(|name| {
        let c = node.channels.get(&format!("{channel}/{name}"))?;
        let variant = c.read().unwrap_or_else(|e| e.into_inner()).variant()?;
        Some((name.as_str(), variant))
    });
    // Each master names its own session in the steering URL, so that the steering server's
    // logs can follow one player from reload to reload.
    let pathways = node.pathways.get(channel).map(|p| {
        let separator = if p.server.contains('?') { '&' } else { '?' };
        crate::channel::Pathways {
            server: format!("{}{separator}session={:016x}", p.server, session_tag()),
            ..p.clone()
        }
    });
    match crate::channel::master_playlist(channel, variants, pathways.as_ref()) {
        Some(text) => {
            node.requests[0].fetch_add(1, Ordering::Relaxed);
            // Bandwidths follow the window; the list of renditions rarely changes.
            cors(checked.playlist(text, path, 5))
        }
        None => cors((StatusCode::SERVICE_UNAVAILABLE, "channel not live yet\n").into_response()),
    }
}

/// An opaque tag, different for each call: std's per-map random keys, spread by one hash.
fn session_tag() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// A media playlist or segment of the packager at `channel` (a channel or a rendition's path),
/// asked for at `path` and served as `checked` allows.
fn serve(
    node: &NodeState,
    channel: &str,
    file: &str,
    client: std::net::SocketAddr,
    checked: &Checked<'_>,
    path: &str,
) -> Response {
    let Some(c) = node.channels.get(channel) else {
        node.requests[2].fetch_add(1, Ordering::Relaxed);
        let why = if node.renditions.contains_key(channel) {
            format!(
                "channel {channel:?} has renditions: its files are under /{channel}/RENDITION/\n"
            )
        } else {
            format!("no channel {channel:?} on this node\n")
        };
        return cors((StatusCode::NOT_FOUND, why).into_response());
    };
    let c = c.read().unwrap_or_else(|e| e.into_inner());
    if file == "index.m3u8" {
        return match c.playlist() {
            Some(text) => {
                node.requests[0].fetch_add(1, Ordering::Relaxed);
                cors(checked.playlist(text, path, 1))
            }
            None => {
                cors((StatusCode::SERVICE_UNAVAILABLE, "channel not live yet\n").into_response())
            }
        };
    }
    // Only `segN.ts` names exist: anything else (paths, dots) is simply not found.
    let Some(sequence) = file
        .strip_prefix("seg")
        .and_then(|r| r.strip_suffix(".ts"))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        node.requests[2].fetch_add(1, Ordering::Relaxed);
        return cors((StatusCode::NOT_FOUND, "no such file\n").into_response());
    };
    let Some(segment) = c.segment(sequence) else {
        node.requests[2].fetch_add(1, Ordering::Relaxed);
        return cors(
            (
                StatusCode::NOT_FOUND,
                format!("segment {sequence} is not (or no longer) available\n"),
            )
                .into_response(),
        );
    };
    let bytes = segment.bytes.clone();
    drop(c);
    node.served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    node.requests[1].fetch_add(1, Ordering::Relaxed);
    node.viewers
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(client.ip(), Instant::now());
    // Segments never change: caches may keep them as long as they are listed.
    cors(
        (
            [
                (header::CONTENT_TYPE, "video/mp2t"),
                (header::CACHE_CONTROL, "max-age=60"),
            ],
            bytes,
        )
            .into_response(),
    )
}
