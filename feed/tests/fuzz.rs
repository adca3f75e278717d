//! Generated and mutated feed streams through the follower's reading of them, on stable Rust,
//! bounded (see `testkit::fuzz`): the server-sent-event framing, cut at every chunk size, and the
//! site document's JSON. Crashes are kept in `tests/fuzz-regressions/feed/`.

use std::path::Path;

use feed::{NodeState, PeerState, ServiceState, SiteFeed};

fn seeds() -> Vec<Vec<u8>> {
    let doc = SiteFeed {
        site: "ams".into(),
        instance: "5eed".into(),
        generation: 7,
        services: vec![ServiceState {
            name: "live".into(),
            healthy: true,
            announcement: "announced".into(),
            reason: "2 of 2 nodes healthy, load 10%".into(),
        }],
        nodes: vec![NodeState {
            name: "ams-1".into(),
            ipv4: Some("192.0.2.10".parse().unwrap()),
            ipv6: Some("2001:db8::10".parse().unwrap()),
            services: vec!["live".into()],
            healthy: true,
            load: 0.1,
            capacity_mbps: 10_000,
            draining: false,
            reason: None,
        }],
        peers: vec![PeerState {
            name: "transit-a".into(),
            address: "192.0.2.1".into(),
            state: "Established".into(),
            since: 1_790_000_000,
            prefixes_advertised: 2,
            bfd: Some("Up".into()),
        }],
    };
    let json = serde_json::to_string(&doc).unwrap();
    vec![
        format!(": ping\n\nevent: feed\ndata: {json}\n\n: ping\n\n").into_bytes(),
        format!("data: {json}\r\n\r\n").into_bytes(),
        json.into_bytes(),
    ]
}

#[test]
fn feed_streams_never_panic_the_follower() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/feed");
    let mut chunk = 1;
    testkit::fuzz::run("feed-stream", &dir, &seeds(), |bytes| {
        chunk = chunk % 97 + 1;
        feed::fuzzing::stream(bytes, chunk);
    });
}
