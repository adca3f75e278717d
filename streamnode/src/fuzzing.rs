//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run ts_ingest`, `cargo fuzz run cmcd`).

use std::time::{Duration, SystemTime};

use crate::channel::Channel;
use crate::ts::PACKET;

/// What a node does with a feed: packets in, segments, playlists and the media probe out,
/// across a switch to the backup feed; nothing may panic and segment durations stay sane.
pub fn ingest(bytes: &[u8]) {
    let mut channel = Channel::new("fuzz", Duration::from_secs(1), 4);
    channel.set_clock(SystemTime::now());
    let half = bytes.len() / PACKET / 2 * PACKET;
    for (i, packet) in bytes.chunks_exact(PACKET).enumerate() {
        if i * PACKET == half {
            channel.switch_feed("backup");
        }
        let packet: &[u8; PACKET] = packet.try_into().expect("chunks of a packet");
        channel.push(packet);
    }
    let _ = channel.playlist();
    let _ = channel.variant();
    for segment in channel.window() {
        assert!(segment.duration >= 0.0 && segment.duration.is_finite());
    }
}

/// What a player's CMCD reaches, as a query parameter (percent-encoded) and as headers: read or
/// refused, never a panic, and a list read keeps only sane values.
pub fn cmcd(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Some(value) = crate::cmcd::query_value(&format!("CMCD={text}"), "CMCD") {
        let _ = crate::cmcd::Cmcd::parse([value.as_str()]);
    }
    let parts: Vec<&str> = text.split('\n').collect();
    if let Ok(c) = crate::cmcd::Cmcd::parse(parts) {
        assert!(c.session.as_ref().is_none_or(|s| s.len() <= text.len()));
    }
}
