//! Watching each node's status stream: node health pushed rather than polled.
//!
//! Probes play a node's stream like a viewer, which proves viewers can play it, but they find
//! a dead node only at the next probe and after `fall` failures. Beside them healthd keeps one
//! `GET /status/stream` open to each node (`healthd.node_stream`): the node sends its status
//! document at once and whenever it changes, and a heartbeat every `healthd.heartbeat`. So:
//! - a node whose process exits closes the connection: it is gone at once;
//! - a node whose host or link dies falls silent: it is gone after `heartbeat_misses`
//!   heartbeats. The connection is kept (a TCP segment resent late brings it back) until
//!   [`REDIAL_AFTER`] of silence, then dialled again;
//! - a node that says the ingest of a channel it is probed for is lost is out at once, before
//!   its playlist stalls;
//! - a node whose process is being replaced (`streamnode replace`) says so as it ends the
//!   stream: it is dialled again at once, and stays as it was (the new process answers).
//!
//! Only nodes probed with an `hls` check (stream nodes) are watched. A node that offers no
//! stream, refuses one (404, 503), or has never had one flow since healthd started is left to
//! its probes: only a node's own account, or the loss of a stream that flowed, takes it out. What the stream says goes to the site task
//! as a [`Watched`]; how it combines with the probes is [`crate::nodes::NodeEntry::up`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use config::Node;
use config::site::Site;
use daemon::sse::{Frame, SseParser};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::probe::http;
use crate::schedule::{NodeUpdate, Said};

/// Silence after which the connection is given up and dialled again.
pub const REDIAL_AFTER: Duration = Duration::from_secs(3);
/// First wait before dialling again; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a node that refused a stream is left before asking again.
const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// How long connecting and the response head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a node's status stream says of it now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Watched {
    /// Nothing to go by: not connected yet, or the node offers no stream (probes decide).
    Unknown,
    /// Heard within the allowed silence.
    Alive {
        draining: bool,
        /// Probed channels (or their renditions) whose ingest the node says is lost.
        ingest_lost: Vec<String>,
    },
    /// The node closed or refused the connection, or fell silent: why.
    Gone(String),
}

impl Watched {
    fn kind(&self) -> &'static str {
        match self {
            Watched::Unknown => "unknown",
            Watched::Alive { ingest_lost, .. } if ingest_lost.is_empty() => "alive",
            Watched::Alive { .. } => "ingest lost",
            Watched::Gone(_) => "gone",
        }
    }
}

/// The stream settings of a site, `None` when streams are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    pub heartbeat: Duration,
    pub misses: u32,
}

impl WatchSettings {
    pub fn of(site: &Site) -> Option<Self> {
        site.healthd.node_stream.then(|| Self {
            heartbeat: site.healthd.heartbeat.get(),
            misses: site.healthd.heartbeat_misses,
        })
    }

    /// Silence after which a node is gone.
    fn silence(&self) -> Duration {
        self.heartbeat * self.misses
    }
}

/// Why one connection ended.
enum Ended {
    /// The node answered, but offers or grants no stream: leave it to the probes a while.
    Refused(String),
    /// The node is gone (closed, unreachable, silent).
    Gone(String),
    /// The node's process handed over to a new one and ended the stream: dial again.
    Replaced,
}

/// Watches `node` for as long as the task lives.
#[derive(Clone)]
pub struct Watcher {
    pub node: Node,
    pub client: http::Client,
    pub settings: WatchSettings,
    /// The channels the node is probed for: only their ingest counts.
    pub channels: Vec<String>,
    pub updates: mpsc::Sender<NodeUpdate>,
    pub metrics: Arc<Metrics>,
    /// What every node's stream said last, for a hand-over.
    pub seen: WatchedRegistry,
}

/// What each node's status stream said last, by node name.
pub type WatchedRegistry = Arc<std::sync::Mutex<std::collections::HashMap<String, Watched>>>;

impl Watcher {
    pub async fn run(self) {
        let mut last = Watched::Unknown;
        let mut backoff = BACKOFF_MIN;
        let mut flowed = false;
        loop {
            let mut heard = false;
            let ended = self.once(&mut last, &mut heard).await;
            if heard {
                backoff = BACKOFF_MIN;
                flowed = true;
            }
            let wait = match ended {
                Ok(Ended::Refused(why)) => {
                    if !self.say(&mut last, Watched::Unknown).await {
                        return;
                    }
                    warn!(node = %self.node.name, "no status stream from the node, probes alone decide: {why}");
                    REFUSED_RETRY
                }
                // A stream that never flowed says nothing about the node: the probes decide.
                Ok(Ended::Replaced) => {
                    info!(node = %self.node.name, "the node's process was replaced: dialling the new one");
                    backoff = BACKOFF_MIN;
                    BACKOFF_MIN
                }
                Ok(Ended::Gone(_)) | Err(_) if !flowed => backoff,
                Ok(Ended::Gone(why)) | Err(why) => {
                    if !self.say(&mut last, Watched::Gone(why)).await {
                        return;
                    }
                    backoff
                }
            };
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection, until it ends. `heard` is set once the node said anything.
    async fn once(&self, last: &mut Watched, heard: &mut bool) -> Result<Ended, String> {
        let url = format!("{}/stream", self.node.status_url());
        let (base, path) = http::split(&url).ok_or_else(|| format!("bad status URL {url}"))?;
        let path = format!(
            "{path}?heartbeat_ms={}",
            self.settings.heartbeat.as_millis()
        );
        let response = self.client.stream(base, &path, CONNECT_TIMEOUT).await?;
        let status = response.status();
        if !status.is_success() {
            return Ok(Ended::Refused(format!("GET {path} answered {status}")));
        }
        let mut body = response.into_body();
        let mut parser = SseParser::default();
        let mut alive: Option<Watched> = None;
        let mut replaced = false;
        let mut at = Instant::now();
        let mut silent = false;
        loop {
            let bound = if silent {
                REDIAL_AFTER
            } else {
                self.settings.silence()
            };
            let frame = match tokio::time::timeout_at((at + bound).into(), body.frame()).await {
                Err(_) if silent => {
                    return Err(format!(
                        "silent for {} ms: dialling again",
                        REDIAL_AFTER.as_millis()
                    ));
                }
                Err(_) => {
                    silent = true;
                    let why = format!(
                        "silent for {} ms ({} heartbeats missed)",
                        bound.as_millis(),
                        self.settings.misses
                    );
                    if !self.say(last, Watched::Gone(why)).await {
                        return Err("healthd is stopping".into());
                    }
                    continue;
                }
                Ok(None) if replaced => return Ok(Ended::Replaced),
                Ok(None) => return Ok(Ended::Gone("the node closed its status stream".into())),
                Ok(Some(Err(e))) => return Ok(Ended::Gone(format!("status stream broke: {e}"))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(bytes) = frame.into_data() else {
                continue;
            };
            let frames = parser
                .push(&bytes)
                .map_err(|n| format!("the node sent a status event over {n} bytes"))?;
            if frames.is_empty() {
                continue;
            }
            at = Instant::now();
            *heard = true;
            let was_silent = std::mem::take(&mut silent);
            for frame in frames {
                if let Frame::Data(data) = frame {
                    match crate::report::document(data.as_bytes(), self.node.capacity_mbps) {
                        Some(doc) => {
                            replaced = doc.replaced;
                            alive = Some(Watched::Alive {
                                draining: doc.report.draining,
                                ingest_lost: self.probed(doc.ingest_lost),
                            })
                        }
                        None => {
                            warn!(node = %self.node.name, "the node's status stream sent something that is not a status document, ignored")
                        }
                    }
                }
            }
            // A document, or a heartbeat ending a silence: say what the node said last.
            if let Some(now) = &alive
                && (was_silent || now != last)
                && !self.say(last, now.clone()).await
            {
                return Err("healthd is stopping".into());
            }
        }
    }

    /// Of the channels whose ingest is lost, those the node is probed for (or their renditions).
    fn probed(&self, lost: Vec<String>) -> Vec<String> {
        lost.into_iter()
            .filter(|name| {
                self.channels.iter().any(|c| {
                    name == c
                        || name
                            .strip_prefix(c.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                })
            })
            .collect()
    }

    /// Tells the site task what the stream says, when it changed; false once nobody listens.
    async fn say(&self, last: &mut Watched, now: Watched) -> bool {
        if *last == now {
            return true;
        }
        if last.kind() != now.kind() {
            let name = self.node.name.as_str();
            match &now {
                Watched::Gone(why) => warn!(node = %name, "node gone (status stream): {why}"),
                Watched::Alive { ingest_lost, .. } if !ingest_lost.is_empty() => {
                    warn!(node = %name, "node out: its ingest is lost on {}", ingest_lost.join(", "))
                }
                Watched::Alive { .. } => info!(node = %name, "status stream flowing"),
                Watched::Unknown => {}
            }
            self.metrics
                .node_stream
                .with_label_values(&[name])
                .set(i64::from(matches!(now, Watched::Alive { .. })));
        }
        *last = now.clone();
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.node.name.clone(), now.clone());
        let update = NodeUpdate {
            node: self.node.name.clone(),
            said: Said::Stream(now),
        };
        self.updates.send(update).await.is_ok()
    }
}
