//! What a node says of itself, for healthd: the status document (`GET /status`) and the status
//! stream (`GET /status/stream`, server-sent events).
//!
//! The stream sends the document at once, again the moment something it reports changes (the
//! node drained or undrained, a channel's ingest lost or back), and a comment every heartbeat
//! in between (`?heartbeat_ms=`, within `config::site::HEARTBEAT_MIN..=HEARTBEAT_MAX`, 50 ms
//! when absent). healthd keeps one open to each node: a node that exits closes it, so it is
//! down at once; one that falls silent is down after a few missed heartbeats; one that loses
//! its ingest is down before its playlist stalls.
//!
//! Both are served on the viewer port, which is what viewers reach, so a stream that flows
//! proves that listener alive. At most [`MAX_STREAMS`] streams run at once: a client that
//! holds them all leaves healthd on its probes alone; it cannot make a node look down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use config::site::{HEARTBEAT_MAX, HEARTBEAT_MIN};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::channel::Ingest;
use crate::server::{NodeState, cors};

/// Status streams served at once (a site's healthd needs one per node).
pub const MAX_STREAMS: usize = 16;

/// The heartbeat of a stream that asks for none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(50);

/// Tells the node's status streams that something they report changed.
#[derive(Debug, Clone)]
pub struct Changes(Arc<watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Changes {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The status document.
#[derive(Debug, Serialize)]
pub struct Status {
    pub node: String,
    pub draining: bool,
    /// A replacement process serves in this one's place: dial again (the last document of a
    /// status stream).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    pub capacity_mbps: u32,
    /// The node's `version` label (a canary's nodes carry the canary's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version of the streamnode binary serving.
    pub build: &'static str,
    /// Clients that fetched a segment in the last 30 s.
    pub viewers: usize,
    /// Egress in bits per second, over the interval between status reads (at least 1 s).
    pub egress_bps: u64,
    pub channels: Vec<ChannelStatus>,
    /// An edge's cache: hit ratio, requests by how they were served, origin fetches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<crate::edge::EdgeStatus>,
}

#[derive(Debug, Serialize)]
pub struct ChannelStatus {
    /// The URL path: `CHANNEL`, or `CHANNEL/RENDITION`.
    pub name: String,
    pub live: bool,
    pub media_sequence: Option<u64>,
    /// Seconds since the newest segment started.
    pub newest_segment_age: Option<f64>,
    pub active_feed: &'static str,
    pub ingest: Ingest,
}

/// The node's status now.
pub fn document(node: &NodeState) -> Status {
    let now = SystemTime::now();
    let mut channels: Vec<ChannelStatus> = node
        .channels
        .iter()
        .map(|(name, c)| {
            let c = c.read().unwrap_or_else(|e| e.into_inner());
            let newest = c.newest();
            ChannelStatus {
                name: name.clone(),
                live: newest.is_some(),
                media_sequence: newest.map(|s| s.sequence),
                newest_segment_age: newest.map(|s| {
                    now.duration_since(s.started)
                        .map_or(0.0, |d| d.as_secs_f64())
                }),
                active_feed: c.active_feed,
                ingest: c.ingest(),
            }
        })
        .collect();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    let viewers = {
        let mut v = node.viewers.write().unwrap_or_else(|e| e.into_inner());
        v.retain(|_, seen| seen.elapsed().as_secs() < 30);
        v.len()
    };
    let egress_bps = {
        let mut e = node.egress.lock().unwrap_or_else(|e| e.into_inner());
        let served = node.served.load(Ordering::Relaxed);
        let secs = e.0.elapsed().as_secs_f64();
        if secs >= 1.0 {
            *e = (
                Instant::now(),
                served,
                ((served - e.1) as f64 * 8.0 / secs) as u64,
            );
        }
        e.2
    };
    Status {
        node: node.name.clone(),
        draining: node.draining(),
        replaced: node.replaced(),
        capacity_mbps: node.capacity_mbps,
        version: node.version.clone(),
        build: env!("CARGO_PKG_VERSION"),
        viewers,
        egress_bps,
        channels,
        edge: node.edge.as_ref().map(|e| e.status()),
    }
}

/// `GET /status`.
pub async fn whole(State(node): State<Arc<NodeState>>) -> Response {
    cors(axum::Json(document(&node)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    heartbeat_ms: Option<u64>,
}

/// `GET /status/stream`.
pub async fn stream(
    State(node): State<Arc<NodeState>>,
    Query(query): Query<StreamQuery>,
) -> Response {
    let heartbeat = query
        .heartbeat_ms
        .map_or(DEFAULT_HEARTBEAT, Duration::from_millis)
        .clamp(HEARTBEAT_MIN, HEARTBEAT_MAX);
    let Some(slot) = Slot::take(&node.status_streams) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} status streams are open already\n"),
        )
            .into_response();
    };
    let mut changes = node.changes.subscribe();
    let events = daemon::sse::from_task(move |tx| async move {
        let _slot = slot;
        loop {
            changes.borrow_and_update();
            let doc = document(&node);
            let data = serde_json::to_string(&doc).unwrap_or_default();
            let event = Event::default().event("status").data(data);
            if tx
                .send(Ok::<_, std::convert::Infallible>(event))
                .await
                .is_err()
                || doc.replaced
            {
                return;
            }
            loop {
                tokio::select! {
                    changed = changes.changed() => match changed {
                        Ok(()) => break,
                        Err(_) => return,
                    },
                    _ = tokio::time::sleep(heartbeat) => {
                        if tx.send(Ok(Event::default().comment(""))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Sse::new(events).into_response()
}

/// One of the [`MAX_STREAMS`] places, given back when the stream ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
