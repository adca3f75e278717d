#![no_main]

use std::sync::{Arc, LazyLock, Mutex};

use geodns::query::Worker;
use libfuzzer_sys::fuzz_target;

static WORKER: LazyLock<Mutex<Worker>> = LazyLock::new(|| {
    let text = include_str!("../../config/examples/three-sites.toml");
    let deployment = config::Deployment::parse(text, std::path::Path::new("three-sites.toml"))
        .expect("example parses");
    let shared = geodns::server::offline(deployment).expect("example builds");
    Mutex::new(Worker::new(Arc::new(shared)))
});

fuzz_target!(|data: &[u8]| {
    let mut worker = WORKER.lock().unwrap_or_else(|e| e.into_inner());
    geodns::fuzzing::query(&mut worker, data);
});
