//! Replacing a running node without a failed request (`streamnode replace`): the running
//! process offers its viewer, admin and ingest sockets on the node's `handover` socket
//! ([`daemon::handover`]). When a replacement connects, every feeder stops at a clean point
//! ([`Hold`]) and the node's state is captured ([`State`]): each channel as its packager has
//! it (the segments in the window, the one being cut, program tables, timestamps, sequence
//! numbers) and where each feeder is (a built-in clip's position, an ingest's feeds). The
//! replacement restores it, feeds on from there (datagrams that arrived meanwhile wait in the
//! ingest sockets it now reads), serves, and says so; the old process stops accepting, tells
//! its status streams to dial again, lets the responses in flight complete and exits. If the
//! replacement fails, the feeders go on where they stopped and the old process serves on.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use daemon::handover::{Captured, Carry};
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Saved};
use crate::server::NodeState;
use crate::ts::looper::Position;

/// How long the feeders have to reach a clean point (a built-in feeder is between batches at
/// once; an ingest between two datagrams).
const HOLD_WITHIN: Duration = Duration::from_secs(2);

/// What a node hands its replacement.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// When the node's built-in channels started, on the wall clock (their pacing).
    pub epoch: SystemTime,
    pub draining: bool,
    pub channels: Vec<Saved>,
    /// Where each feeder stopped, by channel path.
    pub feeders: HashMap<String, Feeder>,
    /// Bytes of segments served and requests answered, so counters do not go back.
    pub served: u64,
    pub requests: [u64; 3],
}

/// Where a feeder stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Feeder {
    /// A built-in clip: the looper's position of the first packet the channel has not had,
    /// and the clip's first timestamp (the pacing's origin).
    Builtin {
        position: Position,
        first: Option<u64>,
    },
    /// A UDP ingest: which feeds were fit to carry the channel.
    Udp { primary: bool, backup: bool },
}

/// Stops the node's feeders at a clean point for a hand-over, and lets them go on.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    held: Arc<tokio::sync::watch::Sender<bool>>,
    stopped: Arc<(Mutex<Stopped>, Condvar)>,
}

#[derive(Debug, Default)]
struct Stopped {
    feeders: usize,
    at: HashMap<String, Feeder>,
}

impl Hold {
    /// A feeder the hold must wait for: its place to stop at.
    pub fn register(&self) -> HoldPoint {
        self.lock().feeders += 1;
        HoldPoint {
            held: self.held.subscribe(),
            hold: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stopped> {
        self.stopped.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every feeder (blocking: from the hand-over's thread); where each stopped, or
    /// `None` when one did not within [`HOLD_WITHIN`] (the hold is then released).
    fn hold(&self) -> Option<HashMap<String, Feeder>> {
        self.held.send_replace(true);
        let deadline = Instant::now() + HOLD_WITHIN;
        let mut stopped = self.lock();
        while stopped.at.len() < stopped.feeders {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(stopped);
                self.release();
                return None;
            }
            stopped = self
                .stopped
                .1
                .wait_timeout(stopped, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Some(stopped.at.clone())
    }

    /// Lets the feeders go on.
    fn release(&self) {
        self.lock().at.clear();
        self.held.send_replace(false);
    }
}

/// One feeder's side of a [`Hold`]: asked on every datagram or batch, so it keeps its own
/// receiver rather than subscribing each time.
#[derive(Debug)]
pub struct HoldPoint {
    hold: Hold,
    held: tokio::sync::watch::Receiver<bool>,
}

impl HoldPoint {
    /// Whether the feeder must stop.
    pub fn held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves once the feeder must stop (for its waits).
    pub async fn requested(&mut self) {
        let _ = self.held.wait_for(|h| *h).await;
    }

    /// At a clean point while held: says where the feeder stopped (the channel's packager
    /// untouched since) and waits until the hold ends.
    pub async fn stop(&mut self, channel: &str, at: Feeder) {
        {
            let mut stopped = self.hold.lock();
            stopped.at.insert(channel.to_owned(), at);
            self.hold.stopped.1.notify_all();
        }
        let _ = self.held.wait_for(|h| !*h).await;
    }
}

/// The node's state as its replacement takes it.
pub struct Carried {
    pub node: Arc<NodeState>,
    pub hold: Hold,
    pub epoch: SystemTime,
}

impl Carry for Carried {
    fn capture(&self) -> Result<Captured, String> {
        let feeders = self
            .hold
            .hold()
            .ok_or("a feeder did not stop within 2 s: not handed over")?;
        let mut payload = Vec::new();
        let mut paths: Vec<&String> = self.node.channels.keys().collect();
        paths.sort();
        let channels = paths
            .into_iter()
            .map(|path| read(&self.node.channels[path]).save(&mut payload))
            .collect();
        let (served, requests) = self.node.counters();
        let state = State {
            epoch: self.epoch,
            draining: self.node.draining(),
            channels,
            feeders,
            served,
            requests,
        };
        let state = serde_json::to_value(state).map_err(|e| e.to_string())?;
        Ok(Captured { state, payload })
    }

    fn resume(&self) {
        self.hold.release();
    }
}

fn read(channel: &RwLock<Channel>) -> std::sync::RwLockReadGuard<'_, Channel> {
    channel.read().unwrap_or_else(|e| e.into_inner())
}

/// The name an ingest socket is handed over under.
pub fn ingest_name(channel: &str, feed: &str, addr: std::net::SocketAddr) -> String {
    daemon::handover::name(&format!("ingest {channel} {feed}"), addr)
}
