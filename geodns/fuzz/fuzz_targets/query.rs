//! Arbitrary datagrams through everything a UDP query reaches: the hand-written fast path,
//! hickory-proto's parser and the answer logic. Nothing may panic.
//!
//! Run: `cd geodns/fuzz && cargo fuzz run query --sanitizer none -- -max_total_time=60`

#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;

use geodns::state::Shared;
use libfuzzer_sys::fuzz_target;

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let text = include_str!("../../../config/examples/three-sites.toml");
    let deployment = config::Deployment::parse(text, std::path::Path::new("three-sites.toml")).expect("example parses");
    geodns::server::offline(deployment).expect("example builds")
});

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let from: SocketAddr = "192.0.2.1:5300".parse().unwrap();
    let mut memo = geodns::memo::Memo::new(&SHARED);
    let now = std::time::Instant::now();
    let _ = geodns::udp::handle(&SHARED, &mut memo, data, from, now, &mut out);
});
