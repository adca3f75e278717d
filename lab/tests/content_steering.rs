//! HLS content steering with a real player: hls.js in headless Chromium, on a page of another
//! origin, plays the demo's steered channel while a second player plays the same stream with
//! DNS steering alone. The site both play from is frozen (its streams stop, HTTP still
//! answers 200); the steered player must move to the next site within one steering TTL and one
//! segment of the steering server putting another site first, without its playing position
//! standing still; how the DNS-only player fares is printed beside it.
//!
//! Chromium resolves every host name the players meet with the answer geodns gives for it
//! (`--host-resolver-rules`): the service name, the steering server and each site's pathway.

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use testkit::browser::{Browser, CHROMIUM};
use testkit::hlsjs::{self, Report};
use testkit::process::{Daemon, TempDir, wait_for};

/// The steered channel (the one with renditions, hence a master playlist).
const CHANNEL: &str = "sports";

#[test]
fn a_steered_player_leaves_a_frozen_site_within_one_ttl_and_one_segment() {
    let test = "a_steered_player_leaves_a_frozen_site_within_one_ttl_and_one_segment";
    if testkit::require(test, &CHROMIUM, false).is_none() {
        return;
    }
    let Some(library) = hlsjs::require(test) else {
        return;
    };
    let dir = TempDir::new("content-steering");
    let d = lab::demo::demo_deployment(dir.path()).unwrap();
    let dns = d.dns.as_ref().unwrap();
    let (dns_addr, admin) = (dns.listen[0], dns.admin);
    let live = d.service("live").unwrap();
    let steering = live.content_steering.clone().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.args(["demo", "--collector", "ours"]);
    let demo = Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).unwrap();
    wait_for(Duration::from_secs(60), || {
        let (200, text) = testkit::http::get(admin, "/console/state")? else {
            return None;
        };
        let state: serde_json::Value = serde_json::from_str(&text).ok()?;
        state["sites"]
            .as_array()?
            .iter()
            .all(|c| c["feed"] == "live")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the demo's sites never came up:\n{}", demo.log_text()));

    // Every host a player meets, resolved by geodns.
    let service_host = &live.hostnames[0];
    let steer_url = url_of(&steering.server);
    let mut hosts = vec![service_host.clone(), steer_url.0.clone()];
    hosts.extend(
        d.sites
            .iter()
            .filter_map(|s| steering.pathway_host(&s.name)),
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolved: Vec<(String, IpAddr)> = hosts
        .iter()
        .map(|host| {
            let answer =
                lab::dnsquery::ask_a(&socket, dns_addr, host, None, false, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("geodns does not answer {host}: {e}"));
            let address = answer.addresses.first().copied();
            (
                host.clone(),
                address.unwrap_or_else(|| panic!("no address for {host}")),
            )
        })
        .collect();
    let rules: Vec<String> = resolved
        .iter()
        .map(|(host, address)| format!("MAP {host} {address}"))
        .collect();
    println!("resolved by geodns: {}", rules.join(", "));
    // The site a fragment's host (`NAME:PORT`) leads to.
    let site_of = |authority: &str| -> String {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let address = resolved.iter().find(|(h, _)| h == host).map(|(_, a)| *a);
        d.nodes()
            .find(|(_, n)| address.is_some() && n.ipv4.map(IpAddr::V4) == address)
            .map_or_else(|| authority.to_owned(), |(s, _)| s.name.clone())
    };

    let page_site = hlsjs::Site::start(&library).unwrap();
    let mut browser = Browser::launch_with(
        800,
        600,
        &[
            format!("--host-resolver-rules={}", rules.join(",")),
            "--autoplay-policy=no-user-gesture-required".into(),
        ],
    )
    .expect("chromium starts");
    let mut page = browser.open(&page_site.url()).unwrap();
    let port = d.sites[0].nodes[0].listen.port();
    let steered = format!("http://{service_host}:{port}/{CHANNEL}/index.m3u8");
    let rendition = &d.channel(CHANNEL).unwrap().renditions[0].name;
    let dns_only = format!("http://{service_host}:{port}/{CHANNEL}/{rendition}/index.m3u8");
    hlsjs::play(&mut page, "steered", &steered, &json!({})).unwrap();
    hlsjs::play(&mut page, "dns", &dns_only, &json!({})).unwrap();
    // Both play a few segments before the fault.
    let warm = wait_for(Duration::from_secs(40), || {
        let s = hlsjs::report(&mut page, "steered").ok()?;
        let n = hlsjs::report(&mut page, "dns").ok()?;
        (s.current_time() > 4.0 && n.current_time() > 4.0).then_some((s, n))
    });
    let Some((before, _)) = warm else {
        panic!(
            "the players did not start:\nsteered {:?}\ndns {:?}\nbrowser problems: {:?}\n{}",
            hlsjs::report(&mut page, "steered").map(|r| r.0),
            hlsjs::report(&mut page, "dns").map(|r| r.0),
            browser.problems(),
            demo.log_text()
        );
    };
    let first = site_of(before.host().unwrap_or_default());
    assert!(
        !before.steering().is_empty(),
        "the steered player loaded no steering manifest: {:?}",
        before.0
    );
    println!(
        "playing from {first}, {:.1} s buffered ahead; steering says {:?}",
        before.ahead(),
        before.steering().last().map(|(_, p)| p.clone())
    );

    // Freeze the site the players are on: its encoders stop, its HTTP keeps answering.
    let frozen = d.site(&first).unwrap();
    for node in &frozen.nodes {
        let admin = node.admin.unwrap();
        let (status, body) = testkit::http::post(admin, "/freeze").expect("node admin answers");
        assert_eq!(status, 200, "{}: {body}", node.name);
    }
    let froze = SystemTime::now();
    let frozen_at = Instant::now();
    for id in ["steered", "dns"] {
        hlsjs::mark(&mut page, id).unwrap();
    }
    let buffer_at_freeze = hlsjs::report(&mut page, "steered").unwrap().ahead();

    // When the steering server stops putting the frozen site first (as a player asks it).
    let steer_addr = dns.content_steering.as_ref().unwrap().listen[0];
    let steer_path = steer_url.1.clone();
    let steered_away = wait_for(Duration::from_secs(15), || {
        let (200, text) = testkit::http::get(steer_addr, &steer_path)? else {
            return None;
        };
        let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
        (manifest["PATHWAY-PRIORITY"][0] != json!(first)).then(SystemTime::now)
    })
    .expect("the steering server never moved away from the frozen site");
    println!(
        "the steering server put another site first {} ms after the freeze",
        since(froze, steered_away)
    );

    // The steered player moves.
    let moved = wait_for(Duration::from_secs(20), || {
        let r = hlsjs::report(&mut page, "steered").ok()?;
        r.switches()
            .into_iter()
            .find(|(at, host)| *at >= froze && site_of(host) != first)
    });
    let after_move = Duration::from_secs(6);
    std::thread::sleep(after_move);
    let steered_report = hlsjs::report(&mut page, "steered").unwrap();
    let dns_report = hlsjs::report(&mut page, "dns").unwrap();
    let Some((moved_at, host)) = moved else {
        panic!(
            "the steered player stayed on {first}: {:?}\n{}",
            steered_report.0,
            demo.log_text()
        );
    };
    let target = d.channel(CHANNEL).unwrap().segment_duration.get();
    let bound = Duration::from_secs(u64::from(steering.ttl)) + target;
    let took = moved_at.duration_since(steered_away).unwrap_or_default();
    println!(
        "content steering: moved to {} {} ms after the freeze, {} ms after the steering server; longest stall {} ms (buffer at the freeze {buffer_at_freeze:.1} s, lowest since {:.1} s); errors {:?}",
        site_of(&host),
        since(froze, moved_at),
        took.as_millis(),
        steered_report.longest_stall().as_millis(),
        steered_report.lowest_ahead().unwrap_or(0.0),
        steered_report.errors_since(froze),
    );
    report_dns_only(&dns_report, &first, froze, frozen_at, &site_of);
    // A request's latency and the player's timer granularity on top of TTL plus a segment.
    let slack = Duration::from_millis(1000);
    assert!(
        took <= bound + slack,
        "moved {took:?} after the steering server did: more than one TTL and one segment ({bound:?})"
    );
    assert!(
        steered_report.longest_stall().as_secs_f64() < buffer_at_freeze.max(1.0),
        "the steered player stood still for {:?}, longer than the {buffer_at_freeze:.1} s it had buffered: {:?}",
        steered_report.longest_stall(),
        steered_report.0
    );
    let fatal: Vec<_> = steered_report
        .errors_since(froze)
        .into_iter()
        .filter(|(_, fatal)| *fatal)
        .collect();
    assert!(fatal.is_empty(), "fatal player errors: {fatal:?}");
    assert!(
        browser
            .problems()
            .iter()
            .all(|p| !p.contains("uncaught exception")),
        "{:?}",
        browser.problems()
    );
}

/// What DNS steering alone did for the same viewer over the same time.
fn report_dns_only(
    r: &Report,
    frozen: &str,
    froze: SystemTime,
    frozen_at: Instant,
    site_of: &dyn Fn(&str) -> String,
) {
    let moved = r
        .switches()
        .into_iter()
        .find(|(at, host)| *at >= froze && site_of(host) != frozen);
    match moved {
        Some((at, host)) => println!(
            "DNS steering alone: moved to {} {} ms after the freeze; longest stall {} ms",
            site_of(&host),
            since(froze, at),
            r.longest_stall().as_millis()
        ),
        None => println!(
            "DNS steering alone: still on {frozen} {} ms after the freeze (the player keeps its connection and its address), stalled for {} ms",
            frozen_at.elapsed().as_millis(),
            r.longest_stall().as_millis()
        ),
    }
}

/// Milliseconds from `a` to `b` (0 when `b` is earlier).
fn since(a: SystemTime, b: SystemTime) -> u128 {
    b.duration_since(a).map_or(0, |d| d.as_millis())
}

/// The host and the path (with query) of an `http://HOST:PORT/PATH` URL.
fn url_of(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (host.to_owned(), path.to_owned())
}
