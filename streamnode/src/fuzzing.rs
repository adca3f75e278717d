//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run ts_ingest`, `cargo fuzz run cmcd`,
//! `cargo fuzz run handover`).

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

/// What a replacement reads from the hand-over socket (the wire: length, description, payload)
/// and makes of a stream node's state: channels restored only when their bytes fit, then fed
/// and played; refused or restored, never a panic.
pub fn handover(bytes: &[u8]) {
    let Ok((sender, receiver)) = std::os::unix::net::UnixStream::pair() else {
        return;
    };
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = (&sender).write_all(&data);
        let _ = sender.shutdown(std::net::Shutdown::Write);
    });
    let received = daemon::handover::receive(&receiver);
    drop(receiver);
    let _ = writer.join();
    let Ok((handover, fds)) = received else {
        return;
    };
    assert_eq!(handover.sockets.len(), fds.len());
    let Ok(state) = serde_json::from_value::<crate::handover::State>(handover.state) else {
        return;
    };
    let mut looper = crate::ts::looper::Looper::test_channel().expect("bundled clip");
    for saved in state.channels {
        let Some(mut channel) = Channel::restore(saved, &handover.payload) else {
            continue;
        };
        for _ in 0..200 {
            channel.push(&looper.next_packet());
        }
        let _ = channel.target();
        let _ = channel.playlist();
        let _ = channel.variant();
        for segment in channel.window() {
            assert!(segment.duration >= 0.0 && segment.duration.is_finite());
        }
    }
}
