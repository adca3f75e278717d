//! Replacing a running healthd (`healthd replace`): the new process takes the feed and admin
//! listeners and what the old one knew of each node, and goes on deciding from there. Sampled
//! every 20 ms through the replace, the prefix never leaves BIRD, the feed always answers, the
//! healthy node stays healthy and the node whose ingest is cut stays out (the new process does
//! not wait for a first probe, nor take a node's word before probing it).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::bird::{Bird, BirdCtl};
use testkit::net::Loopback;
use testkit::process::{Adopted, TempDir, wait_for};

mod support;

use support::{PREFIX, bird_config, deployment, feed_health, spawn_in};

#[test]
fn a_replaced_healthd_goes_on_deciding_with_no_route_or_node_moving() {
    let test = "a_replaced_healthd_goes_on_deciding_with_no_route_or_node_moving";
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-replace");
    let config = dir.path().join("deploy.toml");
    let handover = dir.path().join("healthd.handover");
    let text = deployment(net, dir.path()).replacen(
        "lease = \"2s\" }",
        &format!("lease = \"2s\", handover = \"{}\" }}", handover.display()),
        1,
    );
    assert!(text.contains("handover"), "{text}");
    std::fs::write(&config, text).unwrap();
    let bird = Bird::start(&bird_config(net));
    let _node1 = spawn_in(dir.path(), &config, "streamnode", &["--node", "ams-1"]);
    let _node2 = spawn_in(dir.path(), &config, "streamnode", &["--node", "ams-2"]);
    let _speaker = spawn_in(dir.path(), &config, "bgp-speaker", &[]);
    let mut old = spawn_in(dir.path(), &config, "healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let mut ctl = BirdCtl::connect(&bird).unwrap();
    let ready = wait_for(Duration::from_secs(30), || {
        (ctl.has_route(PREFIX) && feed_health(feed, "ams-1") == Some(true)).then_some(())
    });
    assert!(ready.is_some(), "never healthy:\n{}", old.log_text());
    // ams-2 loses its ingest: out, and it must stay out through the replace.
    let admin2 = SocketAddr::from((net.host(12), 8081));
    assert_eq!(
        testkit::http::post(admin2, "/cut-ingest").map(|r| r.0),
        Some(200)
    );
    let out = wait_for(Duration::from_secs(10), || {
        (feed_health(feed, "ams-2") == Some(false)).then_some(())
    });
    assert!(out.is_some(), "{}", old.log_text());

    let sampling = std::thread::spawn(move || {
        let mut ctl = BirdCtl::connect(&bird).unwrap();
        let (mut samples, mut missed) = (0u32, Vec::new());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(7) {
            let at = started.elapsed().as_millis();
            if !ctl.has_route(PREFIX) {
                missed.push(format!("{at} ms: no route at BIRD"));
            }
            match (feed_health(feed, "ams-1"), feed_health(feed, "ams-2")) {
                (Some(true), Some(false)) => {}
                other => missed.push(format!("{at} ms: feed said {other:?}")),
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (samples, missed, bird)
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut replace = Command::new(support::binary("healthd"));
    replace.arg("--config").arg(&config).arg("replace");
    let (_new, said) =
        Adopted::replace(replace).unwrap_or_else(|e| panic!("{e}\n{}", old.log_text()));
    let exited = old.wait_exit(Duration::from_secs(10));
    let (samples, missed, _bird) = sampling.join().unwrap();
    print!("{said}");
    println!(
        "{samples} samples through the replace, {} off",
        missed.len()
    );
    assert_eq!(exited, Some(0), "{}", old.log_text());
    assert!(samples > 100, "{samples}");
    assert!(missed.is_empty(), "{missed:?}\n{}", old.log_text());
    let log = old.log_text();
    assert!(
        log.contains("going on from the replaced healthd's nodes"),
        "{log}"
    );
    // The new process decides on its own: ams-2 back once its ingest is.
    assert_eq!(
        testkit::http::post(admin2, "/restore-ingest").map(|r| r.0),
        Some(200)
    );
    let back = wait_for(Duration::from_secs(10), || {
        (feed_health(feed, "ams-2") == Some(true)).then_some(())
    });
    assert!(back.is_some(), "{}", old.log_text());
}
