//! The operators' console in a real browser: headless Chromium opens geodns's `/console` while
//! the demo runs every daemon; the page loads with no console error or exception, shows every
//! site with its BGP sessions, nodes and steering, and shows a site drained through healthd
//! within 2 s. Screenshots are kept under `target/artifacts/` for the run's record.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::browser::{Browser, CHROMIUM};
use testkit::process::{Daemon, TempDir, wait_for};

fn artifacts() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("artifacts")
}

#[test]
fn the_console_shows_every_site_and_a_drain_within_two_seconds() {
    let test = "the_console_shows_every_site_and_a_drain_within_two_seconds";
    if testkit::require(test, &CHROMIUM, false).is_none() {
        return;
    }
    let dir = TempDir::new("console");
    let d = lab::demo::demo_deployment(dir.path()).unwrap();
    let admin: SocketAddr = d.dns.as_ref().unwrap().admin;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.args(["demo", "--collector", "ours"]);
    let mut demo = Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).unwrap();

    // Every site's feed heard, and its speaker's session up, before the page opens.
    let sites: Vec<String> = d.sites.iter().map(|s| s.name.clone()).collect();
    wait_for(Duration::from_secs(60), || {
        let (200, text) = testkit::http::get(admin, "/console/state")? else {
            return None;
        };
        let state: serde_json::Value = serde_json::from_str(&text).ok()?;
        let cards = state["sites"].as_array()?;
        cards
            .iter()
            .all(|c| c["feed"] == "live" && c["peers"].as_array().is_some_and(|p| !p.is_empty()))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the demo's sites never came up:\n{}", demo.log_text()));

    let mut browser = Browser::launch(1400, 1000).expect("chromium starts");
    let url = format!("http://{admin}/console");
    let mut page = browser.open(&url).unwrap();
    page.wait_for(
        Duration::from_secs(10),
        "document.querySelectorAll('.card[data-site]').length > 0",
    )
    .unwrap();
    for site in &sites {
        let card = format!("document.querySelector('.card[data-site=\"{site}\"]')");
        page.wait_for(
            Duration::from_secs(10),
            &format!("{card} !== null && {card}.querySelector('[data-peer][data-state=\"Established\"]') !== null"),
        )
        .unwrap_or_else(|e| panic!("site {site}: {e}"));
        let nodes = page
            .evaluate(&format!(
                "{card}.querySelectorAll('[data-node][data-state=\"up\"]').length"
            ))
            .unwrap();
        let expected = d
            .sites
            .iter()
            .find(|s| &s.name == site)
            .unwrap()
            .nodes
            .len();
        assert_eq!(
            nodes,
            serde_json::json!(expected),
            "site {site}: nodes shown up"
        );
    }
    let rows = page
        .evaluate("document.querySelectorAll('#steering tr[data-region]').length")
        .unwrap();
    assert!(
        rows.as_u64().unwrap_or(0) >= sites.len() as u64,
        "steering rows: {rows}"
    );
    let link = page
        .evaluate("document.getElementById('link').textContent")
        .unwrap();
    assert_eq!(link, "live");
    std::fs::create_dir_all(artifacts()).unwrap();
    let shot = artifacts().join("console.png");
    page.screenshot(&shot).unwrap();
    println!("console screenshot: {}", shot.display());

    // Drain the first site through its healthd, as an operator would.
    let first = &d.sites[0];
    let started = Instant::now();
    let (status, body) =
        testkit::http::post(first.healthd.admin, "/drain").expect("healthd answers");
    assert_eq!(status, 200, "{body}");
    let card = format!(
        "document.querySelector('.card[data-site=\"{}\"]')",
        first.name
    );
    let drained = format!(
        "{card}.querySelectorAll('[data-node][data-state=\"draining\"]').length === {}",
        first.nodes.len()
    );
    page.wait_for(Duration::from_secs(10), &drained).unwrap();
    let took = started.elapsed();
    println!(
        "the console showed the drain {} ms after it was asked",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(2),
        "the drain showed after {took:?}"
    );
    // Its clients go to the next site, and the events say why.
    let moved = format!(
        "[...document.querySelectorAll('#steering tr[data-region^=\"{}>\"]')].every(r => r.dataset.site !== '{}')",
        first.name, first.name
    );
    page.wait_for(Duration::from_secs(2), &moved).unwrap();
    page.wait_for(
        Duration::from_secs(2),
        &format!(
            "document.getElementById('events').textContent.includes('node {}-1 draining')",
            first.name
        ),
    )
    .unwrap();
    page.screenshot(&artifacts().join("console-drained.png"))
        .unwrap();

    let (status, _) = testkit::http::post(first.healthd.admin, "/undrain").unwrap();
    assert_eq!(status, 200);
    page.wait_for(
        Duration::from_secs(10),
        &format!(
            "{card}.querySelectorAll('[data-node][data-state=\"up\"]').length === {}",
            first.nodes.len()
        ),
    )
    .unwrap();

    let problems = browser.problems();
    assert!(problems.is_empty(), "the page raised: {problems:#?}");
    drop(browser);
    demo.signal("TERM");
    assert_eq!(demo.wait_exit(Duration::from_secs(10)), Some(0));
}
