//! Arbitrary bytes from a peer through everything that reads them: framing, OPEN,
//! NOTIFICATION, and UPDATE parsing under every negotiated combination. Nothing may panic.
//!
//! Run: `cd bgp-speaker/fuzz && cargo fuzz run messages -- -max_total_time=60`

#![no_main]

use bgp_speaker::packet::open::Open;
use bgp_speaker::packet::update_rx::{RxContext, parse_update};
use bgp_speaker::packet::{HEADER_LEN, MessageType, Notification, next_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    // The stream as a session reads it: message after message until one is broken.
    while let Ok(Some((kind, len))) = next_message(buf) {
        let body = &buf[HEADER_LEN..len];
        match kind {
            MessageType::Open => drop(Open::decode(body)),
            MessageType::Notification => drop(Notification::decode(body).map(|n| n.to_string())),
            MessageType::Update => {
                for bits in 0..16u8 {
                    let ctx = RxContext {
                        four_octet_as: bits & 1 != 0,
                        ibgp: bits & 2 != 0,
                        ipv4_unicast: bits & 4 != 0,
                        ipv6_unicast: bits & 8 != 0,
                    };
                    drop(parse_update(body, &ctx));
                }
            }
            MessageType::Keepalive | MessageType::RouteRefresh => {}
        }
        buf = &buf[len..];
    }
    // Bodies without a header too, so the fuzzer reaches the parsers directly.
    drop(Open::decode(data));
    drop(parse_update(data, &RxContext { four_octet_as: true, ibgp: false, ipv4_unicast: true, ipv6_unicast: true }));
});
