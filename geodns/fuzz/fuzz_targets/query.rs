//! Arbitrary datagrams through everything a query reaches: the hot codec, the OPT scanner,
//! hickory-proto's parser and the answer logic, over UDP (with a worker's memo) and TCP.
//! Nothing may panic; every answer must decode.
//!
//! Run: `cd geodns/fuzz && cargo fuzz run query --sanitizer none -- -max_total_time=60`
//! Crashes found are kept as regression inputs in `geodns/tests/fuzz-regressions/dns/`,
//! which `cargo test -p geodns --test fuzz` replays on every CI run.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use geodns::query::Worker;
use libfuzzer_sys::fuzz_target;

static WORKER: LazyLock<Mutex<Worker>> = LazyLock::new(|| {
    let text = include_str!("../../../config/examples/three-sites.toml");
    let deployment = config::Deployment::parse(text, std::path::Path::new("three-sites.toml"))
        .expect("example parses");
    let shared = geodns::server::offline(deployment).expect("example builds");
    Mutex::new(Worker::new(Arc::new(shared)))
});

fuzz_target!(|data: &[u8]| {
    let from: SocketAddr = "192.0.2.1:5300".parse().unwrap();
    let mut worker = WORKER.lock().unwrap();
    let mut out = Vec::new();
    if worker.udp(data, from, &mut out) {
        assert!(hickory_proto::op::Message::from_vec(&out).is_ok());
    }
    if worker.tcp(data, from, &mut out) {
        assert!(hickory_proto::op::Message::from_vec(&out).is_ok());
    }
});
