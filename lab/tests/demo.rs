//! The README's main command: `lab demo` comes up, shows its sites established with the route
//! collector (BIRD when installed, else our own speaker; both are run) and sends each sample
//! city to the nearest site, and stops cleanly on SIGTERM.

use std::process::Command;
use std::time::Duration;

use testkit::process::{Daemon, TempDir, wait_for};

#[test]
fn demo_shows_sessions_and_steering_and_stops_cleanly() {
    let bird = testkit::require(
        "demo_shows_sessions_and_steering_and_stops_cleanly (BIRD collector)",
        testkit::bird::Bird::PROGRAMS,
        false,
    )
    .is_some();
    let table = run_demo("ours");
    assert!(
        table.contains("route collector: our bgp-speaker"),
        "{table}"
    );
    if bird {
        let table = run_demo("auto");
        assert!(table.contains("route collector: BIRD 2"), "{table}");
    }
}

/// Runs the demo with a collector choice until its table is complete; returns the table.
fn run_demo(collector: &str) -> String {
    let dir = TempDir::new("demo");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.args(["demo", "--collector", collector]);
    let mut demo =
        Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).expect("start lab demo");
    let table = wait_for(Duration::from_secs(30), || {
        let text = demo.log_text();
        // Every site established, its prefixes at the collector, Amsterdam steered home.
        let ready = ["ams", "fra", "lon"].iter().all(|site| {
            text.lines().any(|l| {
                l.starts_with(site) && l.contains("Established") && l.contains("198.51.100.0/24")
            })
        }) && text.contains("Amsterdam  198.51.100.0/24    ams");
        ready.then_some(text)
    });
    let table = table.unwrap_or_else(|| panic!("the demo did not come up:\n{}", demo.log_text()));
    for (city, site) in [
        ("Frankfurt", "fra"),
        ("London", "lon"),
        ("Paris", "lon"),
        ("Warsaw", "fra"),
    ] {
        let row = table
            .lines()
            .rev()
            .find(|l| l.starts_with(city))
            .unwrap_or_default();
        assert!(
            row.contains(&format!("  {site}  (")),
            "{city} should go to {site}: {row}"
        );
    }
    demo.signal("TERM");
    assert_eq!(
        demo.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        demo.log_text()
    );
    table
}
