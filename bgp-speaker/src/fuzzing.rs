//! Entry points for fuzzing, shared by the bounded runs in `tests/fuzz.rs` and the
//! coverage-guided targets in `fuzz/` (`cargo fuzz run bgp_messages`).

use crate::packet::open::Open;
use crate::packet::update_rx::{RxContext, UpdateOutcome, parse_update};
use crate::packet::{HEADER_LEN, MessageType, Notification, next_message};

/// What a session does with a stream of bytes from its peer: framing, then OPEN, NOTIFICATION
/// and UPDATE (under every negotiated combination) decoded; nothing may panic.
pub fn messages(data: &[u8]) {
    let mut buf = data;
    while let Ok(Some((kind, len))) = next_message(buf) {
        let body = &buf[HEADER_LEN..len];
        match kind {
            MessageType::Open => {
                // What we decoded must encode (our answer to it is built from it).
                if let Ok(open) = Open::decode(body) {
                    drop(open.encode());
                }
            }
            MessageType::Notification => drop(Notification::decode(body).map(|n| n.to_string())),
            MessageType::Update => {
                for bits in 0..16u8 {
                    let ctx = RxContext {
                        four_octet_as: bits & 1 != 0,
                        ibgp: bits & 2 != 0,
                        ipv4_unicast: bits & 4 != 0,
                        ipv6_unicast: bits & 8 != 0,
                    };
                    if let UpdateOutcome::Routes { announced, .. } = parse_update(body, &ctx) {
                        for prefix in announced {
                            assert!(prefix.to_net().is_some(), "{prefix}");
                        }
                    }
                }
            }
            MessageType::Keepalive | MessageType::RouteRefresh => {}
        }
        buf = &buf[len..];
    }
    // Bodies without a header too, so generated inputs reach the parsers directly.
    drop(Open::decode(data));
    drop(Notification::decode(data));
    let ctx = RxContext {
        four_octet_as: true,
        ibgp: false,
        ipv4_unicast: true,
        ipv6_unicast: true,
    };
    drop(parse_update(data, &ctx));
}
