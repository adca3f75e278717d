//! Generated and mutated BGP messages through every decoder a peer's bytes reach, on stable
//! Rust, bounded (see `testkit::fuzz`): framing, OPEN with its capabilities, UPDATE under every
//! negotiated combination (RFC 7606), NOTIFICATION and ROUTE-REFRESH. The same inputs as
//! `bgp-speaker/fuzz` (`cargo fuzz run messages`), whose crashes are kept in
//! `tests/fuzz-regressions/bgp/` and replayed here.

use std::net::Ipv4Addr;
use std::path::Path;

use bgp_speaker::packet::open::{Capabilities, GracefulRestart, Open};
use bgp_speaker::packet::update_rx::{RxContext, UpdateOutcome, parse_update};
use bgp_speaker::packet::{
    HEADER_LEN, MessageType, Notification, frame, keepalive, next_message, route_refresh,
};

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code, value.len() as u8];
    out.extend_from_slice(value);
    out
}

fn update(withdrawn: &[u8], attrs: &[Vec<u8>], nlri: &[u8]) -> Vec<u8> {
    let block = attrs.concat();
    let mut body = (withdrawn.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(block.len() as u16).to_be_bytes());
    body.extend_from_slice(&block);
    body.extend_from_slice(nlri);
    frame(MessageType::Update, &body)
}

fn seeds() -> Vec<Vec<u8>> {
    let open = Open {
        asn: 4_200_000_000,
        hold_time: 9,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        caps: Capabilities {
            four_octet_as: Some(4_200_000_000),
            ipv4_unicast: true,
            ipv6_unicast: true,
            route_refresh: true,
            enhanced_route_refresh: true,
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                restarting: true,
                families: vec![(1, 1, true), (2, 1, false)],
            }),
            other: Vec::new(),
        },
    }
    .encode();
    let origin = attr(0x40, 1, &[0]);
    let as_path = attr(0x40, 2, &[2, 2, 0, 0, 0xfd, 0xe8, 0xfa, 0x56, 0xea, 0x00]);
    let next_hop = attr(0x40, 3, &[192, 0, 2, 7]);
    let med = attr(0x80, 4, &[0, 0, 0, 50]);
    let communities = attr(0xC0, 8, &[0xFD, 0xE8, 0, 100, 0xFF, 0xFF, 0, 0]);
    let large = attr(0xC0, 32, &[0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2]);
    // MP_REACH_NLRI for 2001:db8:100::/48 with next hop 2001:db8::1.
    let mut mp = vec![0, 2, 1, 16, 0x20, 0x01, 0x0d, 0xb8];
    mp.extend_from_slice(&[0; 11]);
    mp.extend_from_slice(&[1, 0, 48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    let mp_reach = attr(0x80, 14, &mp);
    let mp_unreach = attr(0x80, 15, &[0, 2, 1, 48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    vec![
        open,
        keepalive(),
        update(
            &[],
            &[
                origin.clone(),
                as_path.clone(),
                next_hop.clone(),
                med,
                communities,
                large,
            ],
            &[24, 198, 51, 100, 16, 10, 1],
        ),
        update(&[24, 203, 0, 113], &[], &[]),
        update(&[], &[origin, as_path, mp_reach], &[]),
        update(&[], &[mp_unreach], &[]),
        update(&[], &[], &[]),
        Notification::new(6, 2, b"\x0bmaintenance".to_vec()).encode(),
        route_refresh(1, 1),
        route_refresh(2, 128),
    ]
}

#[test]
fn peer_bytes_never_panic_a_decoder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/bgp");
    let seeds = seeds();
    // Single messages, and streams of several.
    let mut all = seeds.clone();
    all.push(seeds.concat());
    testkit::fuzz::run("bgp-messages", &dir, &all, bgp_speaker::fuzzing::messages);
}

#[test]
fn the_seeds_are_the_messages_they_claim_to_be() {
    let kinds: Vec<MessageType> = seeds()
        .iter()
        .map(|m| next_message(m).unwrap().unwrap().0)
        .collect();
    assert_eq!(kinds[0], MessageType::Open);
    assert_eq!(kinds[2], MessageType::Update);
    let ctx = RxContext {
        four_octet_as: true,
        ibgp: false,
        ipv4_unicast: true,
        ipv6_unicast: true,
    };
    for update in &seeds()[2..7] {
        let outcome = parse_update(&update[HEADER_LEN..], &ctx);
        assert!(
            matches!(outcome, UpdateOutcome::Routes { .. }),
            "{outcome:?}"
        );
    }
}
