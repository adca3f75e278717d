//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run ts_ingest`).

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
