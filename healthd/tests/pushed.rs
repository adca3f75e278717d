//! healthd with real stream nodes through their status streams: a node that stops (SIGSTOP)
//! is out after the missed heartbeats, a node killed is out at once, and a node whose ingest is
//! lost is out as soon as it says so: with it the last node, the prefix is withdrawn at BIRD.
//! The times are printed (`-- --nocapture`); the bounds are generous for loaded machines.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::bird::{Bird, BirdCtl};
use testkit::net::Loopback;
use testkit::process::{Adopted, TempDir, wait_for};

mod support;

use support::{PREFIX, bird_config, deployment, feed_health, spawn_in};

#[test]
fn stopped_killed_and_ingest_lost_nodes_are_out_at_the_speed_of_their_status_streams() {
    let test = "stopped_killed_and_ingest_lost_nodes_are_out_at_the_speed_of_their_status_streams";
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-pushed");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net, dir.path())).unwrap();
    let bird = Bird::start(&bird_config(net));
    let spawn = |name: &str, args: &[&str]| spawn_in(dir.path(), &config, name, args);
    let mut node1 = spawn("streamnode", &["--node", "ams-1"]);
    let _node2 = spawn("streamnode", &["--node", "ams-2"]);
    let _speaker = spawn("bgp-speaker", &[]);
    let healthd = spawn("healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let mut ctl = BirdCtl::connect(&bird).unwrap();
    let both = wait_for(Duration::from_secs(30), || {
        (ctl.has_route(PREFIX)
            && ["ams-1", "ams-2"]
                .iter()
                .all(|n| feed_health(feed, n) == Some(true)))
        .then_some(())
    });
    assert!(both.is_some(), "never healthy:\n{}", healthd.log_text());
    // Healthy may come from the probes before a node's status stream flows; what follows
    // measures the streams, so wait for both.
    let admin = SocketAddr::from((net.host(1), 9181));
    let streams = wait_for(Duration::from_secs(10), || {
        let (_, metrics) = testkit::http::get(admin, "/metrics")?;
        ["ams-1", "ams-2"]
            .iter()
            .all(|n| metrics.contains(&format!("healthd_node_stream_up{{node=\"{n}\"}} 1")))
            .then_some(())
    });
    assert!(
        streams.is_some(),
        "status streams never flowed:\n{}",
        healthd.log_text()
    );
    let leaves = |node: &str, within: Duration| {
        let started = Instant::now();
        wait_for(within, || {
            (feed_health(feed, node) == Some(false)).then(|| started.elapsed())
        })
    };

    // Stopped: the stream falls silent; out after 6 missed 50 ms heartbeats.
    node1.signal("STOP");
    let silent = leaves("ams-1", Duration::from_secs(3));
    node1.signal("CONT");
    let silent =
        silent.unwrap_or_else(|| panic!("a stopped node stayed in:\n{}", healthd.log_text()));
    println!("node stopped -> out of the feed: {} ms", silent.as_millis());
    assert!(silent >= Duration::from_millis(200), "{silent:?}");
    assert!(healthd.log_text().contains("heartbeats missed"));
    let back = wait_for(Duration::from_secs(10), || {
        (feed_health(feed, "ams-1") == Some(true)).then_some(())
    });
    assert!(back.is_some(), "never back:\n{}", healthd.log_text());

    // Killed: the stream closes; out at once, long before a probe could tell.
    node1.signal("KILL");
    let killed = leaves("ams-1", Duration::from_secs(3))
        .unwrap_or_else(|| panic!("a killed node stayed in:\n{}", healthd.log_text()));
    println!("node killed -> out of the feed: {} ms", killed.as_millis());
    assert!(killed < Duration::from_millis(400), "{killed:?}");
    node1.wait_exit(Duration::from_secs(5));
    assert!(ctl.has_route(PREFIX), "one node left: still announced");

    // Ingest lost on the last node: withdrawn once the node says so (stall_timeout 500 ms).
    let started = Instant::now();
    let admin2 = SocketAddr::from((net.host(12), 8081));
    assert_eq!(
        testkit::http::post(admin2, "/cut-ingest").map(|r| r.0),
        Some(200)
    );
    let withdrawn = wait_for(Duration::from_secs(5), || {
        (!ctl.has_route(PREFIX)).then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("never withdrawn:\n{}", healthd.log_text()));
    println!(
        "ingest cut -> withdrawn at BIRD: {} ms",
        withdrawn.as_millis()
    );
    assert!(withdrawn < Duration::from_millis(1500), "{withdrawn:?}");
    assert!(healthd.log_text().contains("ingest is lost"));
    assert_eq!(
        testkit::http::post(admin2, "/restore-ingest").map(|r| r.0),
        Some(200)
    );
    let announced = wait_for(Duration::from_secs(10), || {
        ctl.has_route(PREFIX).then_some(())
    });
    assert!(announced.is_some(), "{}", healthd.log_text());
}

#[test]
fn a_node_replaced_by_streamnode_replace_never_leaves_the_feed() {
    let test = "a_node_replaced_by_streamnode_replace_never_leaves_the_feed";
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-replaced");
    let config = dir.path().join("deploy.toml");
    let handover = dir.path().join("ams-1.handover");
    let text = deployment(net, dir.path()).replacen(
        "name = \"ams-1\"\n",
        &format!("name = \"ams-1\"\nhandover = \"{}\"\n", handover.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let bird = Bird::start(&bird_config(net));
    let spawn = |name: &str, args: &[&str]| spawn_in(dir.path(), &config, name, args);
    let mut node1 = spawn("streamnode", &["--node", "ams-1"]);
    let _node2 = spawn("streamnode", &["--node", "ams-2"]);
    let _speaker = spawn("bgp-speaker", &[]);
    let healthd = spawn("healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let admin = SocketAddr::from((net.host(1), 9181));
    let mut ctl = BirdCtl::connect(&bird).unwrap();
    let flowing = wait_for(Duration::from_secs(30), || {
        let (_, metrics) = testkit::http::get(admin, "/metrics")?;
        (ctl.has_route(PREFIX)
            && feed_health(feed, "ams-1") == Some(true)
            && metrics.contains("healthd_node_stream_up{node=\"ams-1\"} 1"))
        .then_some(())
    });
    assert!(flowing.is_some(), "never healthy:\n{}", healthd.log_text());

    let mut replace = Command::new(support::binary("streamnode"));
    replace
        .arg("--config")
        .arg(&config)
        .args(["--node", "ams-1", "replace"]);
    let (_new, said) = Adopted::replace(replace).unwrap_or_else(|e| panic!("{e}"));
    // Through the old process's finishing (at most its keep-alive grace) and beyond.
    let started = Instant::now();
    let mut out = Vec::new();
    while started.elapsed() < Duration::from_secs(9) {
        if feed_health(feed, "ams-1") != Some(true) {
            out.push(started.elapsed().as_millis());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let exited = node1.wait_exit(Duration::from_secs(5));
    println!("{said}ams-1 out of the feed at {} samples", out.len());
    let log = healthd.log_text();
    assert!(out.is_empty(), "ams-1 left the feed at {out:?} ms:\n{log}");
    assert_eq!(exited, Some(0), "the old process stops by itself");
    assert!(log.contains("dialling the new one"), "{log}");
    assert!(!log.contains("node gone"), "{log}");
    let (_, metrics) = testkit::http::get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("healthd_node_stream_up{node=\"ams-1\"} 1"),
        "the stream flows from the new process"
    );
}
