//! Feeding channels: the built-in test channel, paced in real time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use config::service::Clip;

use crate::channel::Channel;
use crate::ts::looper::Looper;
use crate::ts::{Packet, WRAP};

/// Media seconds produced at once at start, so the playlist is full when players arrive.
const PREROLL: f64 = 6.0;

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
}

/// Plays a bundled clip into `channel` forever, at the speed of its timestamps. While
/// `frozen` is set nothing is fed (fault injection: the node keeps answering HTTP with a
/// playlist that no longer moves, the failure healthd's `hls` probe exists to catch).
pub async fn builtin(
    channel: Arc<RwLock<Channel>>,
    clip: Clip,
    epoch: Epoch,
    frozen: Arc<AtomicBool>,
) {
    let mut looper = match Looper::builtin(clip) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("the built-in test clip is unusable: {e}");
            return;
        }
    };
    let started = epoch.started;
    channel
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .set_clock(epoch.wall - Duration::from_secs_f64(PREROLL));
    let mut first: Option<u64> = None;
    let mut batch = Vec::with_capacity(512);
    loop {
        let packet = looper.next_packet();
        let media = Packet(&packet)
            .pes_timestamps()
            .map(|(pts, dts)| dts.unwrap_or(pts));
        batch.push(packet);
        let Some(t) = media else { continue };
        let origin = *first.get_or_insert(t);
        let media_secs = (t.wrapping_sub(origin) % WRAP) as f64 / 90_000.0;
        let ahead = media_secs - PREROLL - started.elapsed().as_secs_f64();
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if ahead > 0.0 || batch.len() >= 512 {
            {
                let mut c = channel.write().unwrap_or_else(|e| e.into_inner());
                for p in batch.drain(..) {
                    c.push(&p);
                }
            }
            if ahead > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(ahead.min(0.5))).await;
            }
        }
    }
}
