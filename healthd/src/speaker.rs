//! Driving the site's speaker over its control API: every round's requests, renewing the
//! leases. Every call has a deadline: a speaker that does not answer is logged (once per
//! outage), counted, and dialled again next round, while the leases it holds run out by
//! themselves (the failure table: a stuck healthd's routes go within the lease).

use std::sync::Arc;
use std::time::{Duration, Instant};

use config::site::Site;
use feed::PeerState;
use speaker_control::{Client, Op, Reply};
use tracing::{info, warn};

use crate::metrics::{Metrics, SpeakerError};

/// How long a call to the speaker may take before healthd gives up on it this round.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// How often the speaker's sessions are asked for: they go into the feed for operators.
const PEERS_EVERY: Duration = Duration::from_secs(1);

/// A call slower than this is logged: every withdraw waits on the speaker's answer.
const SLOW_CALL: Duration = Duration::from_millis(100);

/// A session as the speaker's `neighbors` answer describes it; `None` when it lacks the
/// essentials (a speaker of another version).
fn peer_state(v: &serde_json::Value) -> Option<PeerState> {
    Some(PeerState {
        name: v["name"].as_str()?.to_owned(),
        address: v["address"].as_str()?.to_owned(),
        state: v["state"].as_str()?.to_owned(),
        since: v["since"].as_u64().unwrap_or(0),
        prefixes_advertised: v["prefixes_advertised"].as_u64().unwrap_or(0),
        bfd: v["bfd"].as_str().map(str::to_owned),
    })
}

/// The request's name, for metrics and logs.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Announce { .. } => "announce",
        Op::Withdraw { .. } => "withdraw",
        _ => "other",
    }
}

/// The connection to the speaker, made again after any failure.
pub struct SpeakerLink {
    client: Option<Client>,
    /// The speaker has heard everything since (re)connecting: End-of-RIB may go out.
    synced: bool,
    /// A failure was logged and not followed by a success yet.
    failing: bool,
    metrics: Arc<Metrics>,
    /// The speaker's sessions when last asked (none while it does not answer).
    peers: Vec<PeerState>,
    peers_asked: Option<Instant>,
}

impl SpeakerLink {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            client: None,
            synced: false,
            failing: false,
            metrics,
            peers: Vec::new(),
            peers_asked: None,
        }
    }

    /// The speaker's BGP sessions as last heard.
    pub fn peers(&self) -> &[PeerState] {
        &self.peers
    }

    /// Sends a round's requests; after a speaker restart, everything is announced again at
    /// once and then `synced` tells it so.
    pub async fn drive(&mut self, site: &Site, ops: Vec<Op>) {
        if self.client.is_none() {
            let endpoint = site.speaker.control_endpoint(&site.name);
            let token = site
                .speaker
                .control_token
                .as_ref()
                .and_then(|t| t.resolve().ok());
            match Client::connect(&endpoint, token, DEADLINE).await {
                Ok(client) => {
                    info!(%endpoint, "connected to the speaker");
                    self.client = Some(client);
                    self.synced = false;
                    self.failing = false;
                }
                Err(e) => {
                    self.peers.clear();
                    self.failed(
                        SpeakerError::Connect,
                        &format!(
                            "cannot reach the speaker, routes will follow once it answers: {e}"
                        ),
                    );
                    return;
                }
            }
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        for op in ops {
            let kind = op_name(&op);
            let started = std::time::Instant::now();
            let reply = client.call(op).await;
            let took = started.elapsed();
            self.metrics
                .speaker_calls
                .with_label_values(&[kind])
                .observe(took.as_secs_f64());
            if took >= SLOW_CALL {
                warn!(
                    op = kind,
                    "the speaker took {} ms to answer",
                    took.as_millis()
                );
            }
            match reply {
                Ok(Reply::Error(e)) => warn!("the speaker refused a request: {e}"),
                Ok(_) => {}
                Err(e) => {
                    self.client = None;
                    self.failed(
                        SpeakerError::Call,
                        &format!("lost the speaker, dialling it again next round: {e}"),
                    );
                    return;
                }
            }
        }
        if !self.synced {
            match client.call(Op::Synced).await {
                Ok(_) => self.synced = true,
                Err(e) => {
                    self.client = None;
                    self.failed(SpeakerError::Call, &format!("lost the speaker: {e}"));
                    return;
                }
            }
        }
        if self.peers_asked.is_none_or(|t| t.elapsed() >= PEERS_EVERY) {
            self.peers_asked = Some(Instant::now());
            match client.call(Op::Neighbors).await {
                Ok(Reply::Neighbors(peers)) => {
                    self.peers = peers.iter().filter_map(peer_state).collect();
                }
                Ok(_) => {}
                Err(e) => {
                    self.client = None;
                    self.peers.clear();
                    self.failed(SpeakerError::Call, &format!("lost the speaker: {e}"));
                }
            }
        }
    }

    /// Counts a failed exchange and logs it once per outage.
    fn failed(&mut self, kind: SpeakerError, message: &str) {
        self.metrics
            .speaker_errors
            .with_label_values(&[kind.label()])
            .inc();
        if !self.failing {
            warn!("{message}");
            self.failing = true;
        }
    }
}
