//! The README's main command: `lab demo` comes up, shows its sites established with the route
//! collector and sends each sample city to the nearest site, and stops cleanly on SIGTERM.

use std::process::Command;
use std::time::Duration;

use testkit::process::{Daemon, TempDir, wait_for};

#[test]
fn demo_shows_sessions_and_steering_and_stops_cleanly() {
    let dir = TempDir::new("demo");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.arg("demo");
    let mut demo =
        Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).expect("start lab demo");
    let table = wait_for(Duration::from_secs(30), || {
        let text = demo.log_text();
        let ready = text.matches("Established").count() >= 3
            && text.contains("Amsterdam  198.51.100.0/24    ams");
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
}
