#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static SHARED: LazyLock<geodns::Shared> = LazyLock::new(|| {
    let text = include_str!("../../config/examples/three-sites.toml");
    let deployment = config::Deployment::parse(text, std::path::Path::new("three-sites.toml"))
        .expect("example parses");
    geodns::server::offline(deployment).expect("example builds")
});

fuzz_target!(|data: &[u8]| geodns::fuzzing::steering_request(&SHARED, data));
