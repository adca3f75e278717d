//! A peer that sends a full Internet-size table (one million IPv4 routes) must neither drop the
//! session nor exhaust the host, with import disabled (count and discard) or enabled.

mod common;

use std::time::{Duration, Instant};

use common::{PeerSpec, Speaker, deployment};
use testkit::bird::Bird;
use testkit::net::Loopback;
use testkit::process::{TempDir, wait_for};

const ROUTES: u32 = 1_000_000;

/// BIRD exporting ROUTES static /24s to us.
fn flooding_bird(net: Loopback) -> String {
    let (us, bird) = (net.host(1), net.host(2));
    testkit::bird::flood_table(bird, ROUTES)
        + &format!(
            "protocol bgp up1 {{\n  local {bird} port 1179 as 65000;\n  neighbor {us} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  hold time 9;\n  ipv4 {{ import none; export all; next hop self; }};\n}}\n"
        )
}

fn survive_flood(test: &str, import: &str, max_rss_mib: u64) {
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let bird = Bird::start(&flooding_bird(net));
    let dir = TempDir::new("speaker-flood");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "bird",
        address: net.host(2),
        remote_asn: 65000,
        port: 1179,
        extra: import.to_owned(),
    };
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net.host(1), &socket, &[peer], "")).unwrap();
    let speaker = Speaker::start_with(dir, config);
    let started = Instant::now();
    let all = wait_for(Duration::from_secs(180), || {
        let p = speaker
            .neighbors()
            .into_iter()
            .find(|p| p["name"] == "bird")?;
        (p["prefixes_received"].as_u64() == Some(u64::from(ROUTES))).then_some(p)
    });
    let elapsed = started.elapsed();
    let peer = all.unwrap_or_else(|| {
        panic!(
            "table not received: {:?}\n{}",
            speaker.neighbors(),
            bird.cli("show protocols all up1")
        )
    });
    assert_eq!(peer["state"], "Established");
    assert_eq!(peer["flaps"], 0, "the session never dropped");
    let rss = testkit::process::memory_mib(speaker.daemon.pid(), true) as u64;
    eprintln!(
        "{test}: {ROUTES} routes in {:.1}s, speaker peak RSS {rss} MiB",
        elapsed.as_secs_f64()
    );
    assert!(
        rss < max_rss_mib,
        "speaker used {rss} MiB for {ROUTES} routes (limit {max_rss_mib})"
    );
}

#[test]
fn full_table_is_counted_and_discarded_in_constant_memory() {
    survive_flood(
        "full_table_is_counted_and_discarded_in_constant_memory",
        "",
        64,
    );
}

#[test]
fn full_table_is_kept_with_import_enabled() {
    survive_flood(
        "full_table_is_kept_with_import_enabled",
        "import = { enabled = true, max_prefixes = 2000000 }",
        128,
    );
}
