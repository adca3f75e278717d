//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run bfd_packet`).

use std::time::{Duration, Instant};

use crate::packet::Packet;
use crate::session::{Config, Session};

/// A datagram from the network, decoded and, when it passes, fed to a session that is Down
/// and to one that is Up; nothing may panic, and what decodes encodes back to the same
/// fields.
pub fn packet(bytes: &[u8]) {
    let Ok(packet) = Packet::decode(bytes) else {
        return;
    };
    assert_eq!(Packet::decode(&packet.encode()), Ok(packet));
    let now = Instant::now();
    let mut down = Session::new(Config::default(), 1);
    let _ = down.receive(&packet, now);
    let _ = down.transmit(now, 0.5);
    let _ = down.expire(now + Duration::from_secs(3600));
    let mut up = Session::new(Config::default(), packet.your_discr.max(1));
    let _ = up.receive(&packet, now);
    let _ = up.transmit(now, 0.99);
    if let Some(wake) = up.next_wakeup() {
        let _ = up.expire(wake);
        let _ = up.transmit(wake, 0.0);
    }
}
