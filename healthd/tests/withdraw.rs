//! healthd end to end, with real processes: nodes served by nginx (an `http` check), the real
//! bgp-speaker, and BIRD as the upstream. A node going down leaves the feed; every node down
//! withdraws the prefix at BIRD; a dead healthd's lease runs out and the route goes.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::bird::{Bird, BirdCtl};
use testkit::net::Loopback;
use testkit::nginx::Nginx;
use testkit::process::{Daemon, TempDir, wait_for};

mod support;

use support::PREFIX;

fn deployment(net: Loopback, dir: &std::path::Path) -> String {
    format!(
        r#"{site}[[sites.nodes]]
name = "ams-1"
ipv4 = "{n1}"
listen = "{n1}:8080"
capacity_mbps = 1000
services = ["live"]

[[sites.nodes]]
name = "ams-2"
ipv4 = "{n2}"
listen = "{n2}:8080"
capacity_mbps = 1000
services = ["live"]

[[services]]
name = "live"
hostnames = ["live.tv.example.net"]
prefixes = ["{PREFIX}"]
check = "web"
min_healthy_nodes = 1

[[checks]]
name = "web"
kind = "http"
interval = "200ms"
timeout = "150ms"
fast_interval = "50ms"
rise = 2
fall = 2
"#,
        site = support::site(net, dir),
        n1 = net.host(11),
        n2 = net.host(12),
    )
}

fn feed_nodes(addr: SocketAddr) -> Vec<(String, bool)> {
    let Some((200, body)) = testkit::http::get(addr, "/feed") else {
        return Vec::new();
    };
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_owned(),
                n["healthy"] == true,
            )
        })
        .collect()
}

#[test]
fn nodes_going_down_leave_the_feed_then_withdraw_the_prefix_and_a_dead_healthd_lets_the_lease_expire()
 {
    let test = "nodes_going_down_leave_the_feed_then_withdraw_the_prefix_and_a_dead_healthd_lets_the_lease_expire";
    let mut programs = Bird::PROGRAMS.to_vec();
    programs.extend_from_slice(Nginx::PROGRAMS);
    let Some(_) = testkit::require(test, &programs, false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd");
    let (root1, root2) = (dir.path().join("n1"), dir.path().join("n2"));
    for root in [&root1, &root2] {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(root.join("healthz"), "ok\n").unwrap();
    }
    let _nginx = Nginx::start(&[
        (SocketAddr::from((net.host(11), 8080)), root1.clone()),
        (SocketAddr::from((net.host(12), 8080)), root2.clone()),
    ]);
    let bird = Bird::start(&format!(
        "router id {b};\nprotocol device {{}}\nprotocol bgp up1 {{\n  local {b} port 1179 as 65000;\n  neighbor {us} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  ipv4 {{ import all; export none; }};\n}}\n",
        b = net.host(2),
        us = net.host(1)
    ));
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net, dir.path())).unwrap();
    // The speaker binary sits beside ours when the workspace is built (`cargo test --workspace`).
    let speaker_bin =
        std::path::Path::new(env!("CARGO_BIN_EXE_healthd")).with_file_name("bgp-speaker");
    assert!(
        speaker_bin.exists(),
        "{} is missing: run `cargo build -p bgp-speaker` (or test the whole workspace)",
        speaker_bin.display()
    );
    let mut speaker_cmd = Command::new(speaker_bin);
    speaker_cmd.arg("--config").arg(&config);
    let _speaker =
        Daemon::spawn("bgp-speaker", speaker_cmd, &dir.path().join("speaker.log")).unwrap();
    let mut healthd_cmd = Command::new(env!("CARGO_BIN_EXE_healthd"));
    healthd_cmd.arg("--config").arg(&config);
    let mut healthd =
        Daemon::spawn("healthd", healthd_cmd, &dir.path().join("healthd.log")).unwrap();
    let feed = SocketAddr::from((net.host(1), 9180));
    let mut ctl = BirdCtl::connect(&bird).unwrap();

    let announced = wait_for(Duration::from_secs(20), || {
        ctl.has_route(PREFIX).then_some(())
    });
    assert!(
        announced.is_some(),
        "healthd did not announce:\n{}",
        healthd.log_text()
    );

    // One node down: it leaves the feed, the prefix stays (one healthy node is enough).
    std::fs::remove_file(root1.join("healthz")).unwrap();
    let left = wait_for(Duration::from_secs(5), || {
        feed_nodes(feed)
            .contains(&("ams-1".into(), false))
            .then_some(())
    });
    assert!(left.is_some(), "{:?}", feed_nodes(feed));
    assert!(
        ctl.has_route(PREFIX),
        "still announced with one healthy node"
    );

    // Every node down: the prefix is withdrawn at BIRD, quickly.
    let started = Instant::now();
    std::fs::remove_file(root2.join("healthz")).unwrap();
    let gone = wait_for(Duration::from_secs(5), || {
        (!ctl.has_route(PREFIX)).then_some(())
    });
    assert!(gone.is_some(), "not withdrawn:\n{}", healthd.log_text());
    eprintln!(
        "all nodes down -> withdrawn at BIRD in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(
        healthd
            .log_text()
            .contains("service unhealthy at this site"),
        "a log line says why"
    );

    // Back up: announced again.
    std::fs::write(root2.join("healthz"), "ok\n").unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || ctl
            .has_route(PREFIX)
            .then_some(()))
        .is_some()
    );

    // healthd dies: nothing renews the lease, the route goes when it runs out (2 s).
    healthd.signal("KILL");
    healthd.wait_exit(Duration::from_secs(5));
    let started = Instant::now();
    let expired = wait_for(Duration::from_secs(6), || {
        (!ctl.has_route(PREFIX)).then_some(())
    });
    assert!(expired.is_some(), "lease did not expire");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "withdrawn before the lease ran out"
    );
}
