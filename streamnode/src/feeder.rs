//! Feeding channels: the built-in test channel, paced in real time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use config::service::Clip;

use crate::channel::{Channel, Ingest};
use crate::handover::{Feeder, HoldPoint};
use crate::status::Changes;
use crate::ts::looper::Looper;
use crate::ts::{Packet, WRAP};

/// Media seconds produced at once at start, so the playlist is full when players arrive.
const PREROLL: f64 = 6.0;

/// Fault injection shared by a node's feeders (labs and demos set `fault_injection`).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Packaging stops while ingest goes on: the playlist stops advancing, the failure only a
    /// player-like probe can see.
    pub frozen: Arc<AtomicBool>,
    /// Ingest stops, as when an encoder or its network fails: the node finds it out after
    /// `stall_timeout`, like a real loss, and says so on its status stream.
    pub cut: Arc<AtomicBool>,
}

/// Records what a feeder sees of its source in `channel`, logging a change and telling the
/// status streams.
pub fn report_ingest(channel: &RwLock<Channel>, ingest: Ingest, changes: &Changes) {
    let mut c = channel.write().unwrap_or_else(|e| e.into_inner());
    if c.set_ingest(ingest) {
        match ingest {
            Ingest::Flowing => tracing::info!(channel = %c.name, "ingest flowing"),
            Ingest::Lost => {
                tracing::warn!(channel = %c.name, "ingest lost: no feed delivers the channel")
            }
        }
        drop(c);
        changes.notify();
    }
}

/// When the built-in channels of a node started: every feeder paces itself from the same
/// instant, so renditions made from clips with the same timing are cut at the same moments and
/// carry the same program date times, as a player switching between them expects.
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    started: Instant,
    wall: SystemTime,
}

impl Epoch {
    pub fn now() -> Self {
        Self {
            started: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The epoch of a node that started at `wall` (a replaced process's), on this process's
    /// monotonic clock.
    pub fn since(wall: SystemTime) -> Self {
        let age = SystemTime::now().duration_since(wall).unwrap_or_default();
        Self {
            started: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            wall,
        }
    }

    pub fn wall(&self) -> SystemTime {
        self.wall
    }
}

/// Where a built-in feeder goes on from (a replaced process's [`Feeder::Builtin`]).
#[derive(Debug, Clone)]
pub struct Resume {
    pub position: crate::ts::looper::Position,
    pub first: Option<u64>,
}

/// Plays a bundled clip into `channel` forever, at the speed of its timestamps, from the
/// start or from where a replaced process stopped (`resume`, with `channel` as it left it).
/// Fault injection: while `faults.frozen` is set nothing is packaged (the node keeps answering
/// HTTP with a playlist that no longer moves, the failure healthd's `hls` probe exists to
/// catch); while `faults.cut` is set nothing is produced either, and after `stall` the
/// channel's ingest is reported lost. A `hold` stops it for a hand-over.
#[allow(clippy::too_many_arguments)]
pub async fn builtin(
    channel: Arc<RwLock<Channel>>,
    clip: Clip,
    epoch: Epoch,
    faults: Faults,
    changes: Changes,
    stall: Duration,
    mut hold: HoldPoint,
    resume: Option<Resume>,
) {
    let mut looper = match Looper::builtin(clip) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("the built-in test clip is unusable: {e}");
            return;
        }
    };
    let started = epoch.started;
    let path = {
        let mut c = channel.write().unwrap_or_else(|e| e.into_inner());
        if resume.is_none() {
            c.set_clock(epoch.wall - Duration::from_secs_f64(PREROLL));
        }
        c.name.clone()
    };
    let mut first: Option<u64> = None;
    if let Some(resume) = resume {
        looper.seek(&resume.position);
        first = resume.first;
    }
    // What was last reported; channels start with ingest lost until their source delivers.
    let mut ingest = channel.read().unwrap_or_else(|e| e.into_inner()).ingest();
    let mut batch = Vec::with_capacity(512);
    // The looper's position at the batch's first packet: the channel has had everything
    // before it, so a hold may stop here whatever the batch holds.
    let mut unsent = looper.position();
    loop {
        if hold.held() {
            let at = Feeder::Builtin {
                position: unsent.clone(),
                first,
            };
            hold.stop(&path, at).await;
        }
        let packet = looper.next_packet();
        let media = Packet(&packet)
            .pes_timestamps()
            .map(|(pts, dts)| dts.unwrap_or(pts));
        batch.push(packet);
        let Some(t) = media else { continue };
        let origin = *first.get_or_insert(t);
        let media_secs = (t.wrapping_sub(origin) % WRAP) as f64 / 90_000.0;
        let ahead = media_secs - PREROLL - started.elapsed().as_secs_f64();
        let mut cut_since = None;
        while (faults.frozen.load(Ordering::Relaxed) || faults.cut.load(Ordering::Relaxed))
            && !hold.held()
        {
            if faults.cut.load(Ordering::Relaxed) {
                let since = *cut_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall && ingest == Ingest::Flowing {
                    ingest = Ingest::Lost;
                    report_ingest(&channel, ingest, &changes);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if hold.held() {
            // Stopped before this batch reached the channel: it is made again from `unsent`.
            continue;
        }
        if ingest == Ingest::Lost {
            ingest = Ingest::Flowing;
            report_ingest(&channel, ingest, &changes);
        }
        if ahead > 0.0 || batch.len() >= 512 {
            {
                let mut c = channel.write().unwrap_or_else(|e| e.into_inner());
                for p in batch.drain(..) {
                    c.push(&p);
                }
            }
            unsent = looper.position();
            if ahead > 0.0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs_f64(ahead.min(0.5))) => {}
                    () = hold.requested() => {}
                }
            }
        }
    }
}
