//! Interop with BIRD 2: sessions both ways, attributes read back with `birdc show route all`,
//! withdrawals, leases, drain, MD5 and the hold timer.

mod common;

use std::time::Duration;

use common::{PeerSpec, Speaker, deployment, wait_route};
use testkit::bird::Bird;
use testkit::net::Loopback;

const WAIT: Duration = Duration::from_secs(15);
const MD5_KEY: &str = "s3cret-key";

fn bird_config(net: Loopback, passive: bool, extra: &str) -> String {
    let (us, bird) = (net.host(1), net.host(2));
    let (neighbor, mode) = if passive {
        (format!("neighbor {us} as 65001;"), "passive on;")
    } else {
        (format!("neighbor {us} port 1179 as 65001;"), "")
    };
    format!(
        r#"router id {bird};
protocol device {{}}
protocol bgp up1 {{
  local {bird} port 1179 as 65000;
  {neighbor}
  {mode}
  multihop;
  strict bind on;
  hold time 9;
  connect retry time 1;
  error wait time 1, 2;
  {extra}
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
"#
    )
}

/// Who opens the TCP connection.
#[derive(Clone, Copy, PartialEq)]
enum Opener {
    Us,
    Bird,
    /// Both sides connect at once: a connection collision (RFC 4271 section 6.8).
    Both,
}

fn setup(
    test: &str,
    opener: Opener,
    peer_extra: &str,
    bird_extra: &str,
) -> Option<(Bird, Speaker)> {
    testkit::require(test, Bird::PROGRAMS, false)?;
    let net = Loopback::fresh();
    let bird = Bird::start(&bird_config(net, opener == Opener::Us, bird_extra));
    let (peer_extra, speaker_extra) = match opener {
        Opener::Us => (peer_extra.to_owned(), String::new()),
        Opener::Bird => (
            format!("passive = true\n{peer_extra}"),
            format!(", listen = \"{}:1179\"", net.host(1)),
        ),
        Opener::Both => (
            peer_extra.to_owned(),
            format!(", listen = \"{}:1179\"", net.host(1)),
        ),
    };
    let dir = testkit::process::TempDir::new("speaker-sock");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "bird",
        address: net.host(2),
        remote_asn: 65000,
        port: 1179,
        extra: peer_extra,
    };
    let text = deployment(net.host(1), &socket, &[peer], &speaker_extra);
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, text).unwrap();
    std::fs::write(dir.path().join("md5.key"), format!("{MD5_KEY}\n")).unwrap();
    let speaker = Speaker::start_with(dir, config);
    Some((bird, speaker))
}

#[test]
fn session_comes_up_with_us_active_and_routes_arrive_intact() {
    let Some((bird, speaker)) = setup(
        "session_comes_up_with_us_active_and_routes_arrive_intact",
        Opener::Us,
        "",
        "",
    ) else {
        return;
    };
    assert!(
        speaker.wait_state("bird", "Established", WAIT),
        "{}",
        speaker.daemon.log_text()
    );

    let (ok, out) = speaker.cli(&[
        "announce",
        "198.51.100.0/24",
        "--community",
        "65000:100",
        "--large-community",
        "65000:1:2",
        "--prepend",
        "2",
        "--med",
        "10",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = speaker.cli(&[
        "announce",
        "2001:db8:100::/48",
        "--community",
        "65000:200",
        "--large-community",
        "4200000000:7:8",
    ]);
    assert!(ok, "{out}");

    let v4 = wait_route(&bird, "198.51.100.0/24", true, WAIT).expect("IPv4 route at BIRD");
    assert!(v4.contains("BGP.as_path: 65001 65001 65001"), "{v4}");
    assert!(v4.contains("BGP.community: (65000,100)"), "{v4}");
    assert!(v4.contains("BGP.large_community: (65000, 1, 2)"), "{v4}");
    assert!(v4.contains("BGP.med: 10"), "{v4}");
    assert!(v4.contains("BGP.origin: IGP"), "{v4}");
    let v6 = wait_route(&bird, "2001:db8:100::/48", true, WAIT).expect("IPv6 route at BIRD");
    assert!(
        v6.contains("BGP.as_path: 65001\n") || v6.contains("BGP.as_path: 65001"),
        "{v6}"
    );
    assert!(v6.contains("BGP.next_hop: 2001:db8::1"), "{v6}");
    assert!(
        v6.contains("BGP.large_community: (4200000000, 7, 8)"),
        "{v6}"
    );

    let (ok, table) = speaker.cli(&["show", "routes", "advertised", "bird"]);
    assert!(ok, "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("198.51.100.0/24"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("65001 65001 65001") && row.contains("65000:100") && row.contains("65000:1:2"),
        "{row}"
    );
    let (ok, out) = speaker.cli(&["show", "routes", "received", "bird"]);
    assert!(!ok && out.contains("import is disabled"), "{out}");

    let (ok, out) = speaker.cli(&["withdraw", "198.51.100.0/24"]);
    assert!(ok, "{out}");
    assert!(
        wait_route(&bird, "198.51.100.0/24", false, WAIT).is_some(),
        "withdrawn route still at BIRD"
    );
    assert!(
        bird.route("2001:db8:100::/48").is_some(),
        "the other route stays"
    );
}

#[test]
fn negotiated_capabilities_are_as_expected() {
    let Some((bird, speaker)) = setup(
        "negotiated_capabilities_are_as_expected",
        Opener::Us,
        "",
        "",
    ) else {
        return;
    };
    assert!(
        speaker.wait_state("bird", "Established", WAIT),
        "{}",
        speaker.daemon.log_text()
    );
    let peer = speaker
        .neighbors()
        .into_iter()
        .find(|p| p["name"] == "bird")
        .unwrap();
    let n = &peer["negotiated"];
    assert_eq!(n["hold_time"], 9);
    assert_eq!(n["keepalive"], 3);
    assert_eq!(n["four_octet_as"], true);
    assert_eq!(n["ipv4_unicast"], true);
    assert_eq!(n["ipv6_unicast"], true);
    assert_eq!(n["route_refresh"], true);
    let proto = bird.cli("show protocols all up1");
    for cap in ["4-octet AS numbers", "Route refresh", "Graceful restart"] {
        let neighbor_caps = proto.split("Neighbor capabilities").nth(1).unwrap_or("");
        assert!(
            neighbor_caps.contains(cap),
            "BIRD does not see our {cap}:\n{proto}"
        );
    }
}

#[test]
fn session_comes_up_with_us_passive() {
    let Some((bird, speaker)) = setup("session_comes_up_with_us_passive", Opener::Bird, "", "")
    else {
        return;
    };
    assert!(
        speaker.wait_state("bird", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        bird.cli("show protocols all up1")
    );
    assert!(
        speaker
            .cli(&["announce", "198.51.100.0/24", "--community", "65000:100"])
            .0
    );
    let route = wait_route(&bird, "198.51.100.0/24", true, WAIT).expect("route at BIRD");
    assert!(route.contains("(65000,100)"), "{route}");
}

#[test]
fn lease_expiry_withdraws_the_route() {
    let Some((bird, speaker)) = setup("lease_expiry_withdraws_the_route", Opener::Us, "", "")
    else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    let (ok, out) = speaker.cli(&["announce", "198.51.100.0/24", "--lease", "2s"]);
    assert!(ok, "{out}");
    assert!(wait_route(&bird, "198.51.100.0/24", true, WAIT).is_some());
    // Not renewed: gone within the lease plus a little.
    let started = std::time::Instant::now();
    assert!(wait_route(&bird, "198.51.100.0/24", false, Duration::from_secs(6)).is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "withdrawn before the lease ran out"
    );
}

#[test]
fn drain_sends_graceful_shutdown_then_withdraws() {
    let Some((bird, speaker)) = setup(
        "drain_sends_graceful_shutdown_then_withdraws",
        Opener::Us,
        "",
        "",
    ) else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    assert!(speaker.cli(&["announce", "198.51.100.0/24"]).0);
    assert!(wait_route(&bird, "198.51.100.0/24", true, WAIT).is_some());
    let (ok, out) = speaker.cli(&["drain", "--delay", "2s"]);
    assert!(ok, "{out}");
    let tagged = testkit::process::wait_for(WAIT, || {
        bird.route("198.51.100.0/24")
            .filter(|r| r.contains("(65535,0)"))
    });
    assert!(
        tagged.is_some(),
        "no GRACEFUL_SHUTDOWN community: {:?}",
        bird.route("198.51.100.0/24")
    );
    assert!(
        wait_route(&bird, "198.51.100.0/24", false, WAIT).is_some(),
        "drained route not withdrawn"
    );
}

#[test]
fn hold_timer_fires_when_the_peer_goes_silent() {
    let Some((bird, speaker)) = setup(
        "hold_timer_fires_when_the_peer_goes_silent",
        Opener::Us,
        "hold_time = 3",
        "",
    ) else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    bird.daemon.signal("STOP");
    let down = testkit::process::wait_for(Duration::from_secs(8), || {
        let peer = speaker
            .neighbors()
            .into_iter()
            .find(|p| p["name"] == "bird")?;
        let error = peer["last_error"].as_str()?.to_owned();
        (peer["state"] != "Established" && error.contains("Hold Timer Expired")).then_some(error)
    });
    bird.daemon.signal("CONT");
    assert!(
        down.is_some(),
        "hold timer did not fire: {:?}",
        speaker.neighbors()
    );
}

#[test]
fn md5_key_authenticates_the_session() {
    let bird_md5 = format!("password \"{MD5_KEY}\";");
    let Some((bird, speaker)) = setup(
        "md5_key_authenticates_the_session",
        Opener::Us,
        "md5_key = { file = \"md5.key\" }",
        &bird_md5,
    ) else {
        return;
    };
    assert!(
        speaker.wait_state("bird", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        bird.cli("show protocols all up1")
    );
}

#[test]
fn wrong_md5_key_fails_with_a_clear_error() {
    let Some((bird, speaker)) = setup(
        "wrong_md5_key_fails_with_a_clear_error",
        Opener::Us,
        "md5_key = { file = \"md5.key\" }",
        "password \"another-key\";",
    ) else {
        return;
    };
    let error = testkit::process::wait_for(Duration::from_secs(20), || {
        let peer = speaker
            .neighbors()
            .into_iter()
            .find(|p| p["name"] == "bird")?;
        peer["last_error"]
            .as_str()
            .filter(|e| e.contains("TCP-MD5"))
            .map(str::to_owned)
    });
    assert!(
        error.is_some(),
        "no clear MD5 error: {:?}",
        speaker.neighbors()
    );
    assert!(!bird.established("up1"));
    let (_, table) = speaker.cli(&["show", "neighbors"]);
    assert!(
        table.contains("check that the peer uses the same key"),
        "{table}"
    );
}

#[test]
fn graceful_restart_keeps_our_routes_at_the_peer_through_a_crash() {
    let Some((bird, mut speaker)) = setup(
        "graceful_restart_keeps_our_routes_at_the_peer_through_a_crash",
        Opener::Us,
        "",
        "graceful restart on;",
    ) else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    assert!(
        speaker
            .cli(&["announce", "198.51.100.0/24", "--community", "65000:100"])
            .0
    );
    assert!(wait_route(&bird, "198.51.100.0/24", true, WAIT).is_some());
    // The startup hold (3 s) is over before the crash, so this is a steady state.
    std::thread::sleep(Duration::from_secs(3));

    speaker.crash_and_restart();
    assert!(
        speaker
            .cli(&["announce", "198.51.100.0/24", "--community", "65000:100"])
            .0,
        "re-announce after restart"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    let mut established_again = false;
    while std::time::Instant::now() < deadline {
        assert!(
            bird.route("198.51.100.0/24").is_some(),
            "BIRD dropped the route during our restart:\n{}",
            bird.cli("show protocols all up1")
        );
        established_again |= bird.established("up1");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        established_again,
        "session did not come back: {}",
        bird.cli("show protocols all up1")
    );
    assert!(speaker.cli(&["synced"]).0);
    std::thread::sleep(Duration::from_millis(500));
    let route = bird
        .route("198.51.100.0/24")
        .expect("route kept after End-of-RIB");
    assert!(
        route.contains("(65000,100)") && !route.contains("stale"),
        "{route}"
    );
}

#[test]
fn metrics_report_peer_state_messages_and_routes() {
    let Some((bird, speaker)) = setup(
        "metrics_report_peer_state_messages_and_routes",
        Opener::Us,
        "",
        "",
    ) else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    assert!(
        speaker
            .cli(&["announce", "198.51.100.0/24", "--service", "live"])
            .0
    );
    assert!(wait_route(&bird, "198.51.100.0/24", true, WAIT).is_some());
    let text = std::fs::read_to_string(&speaker.config).unwrap();
    let admin: std::net::SocketAddr = text
        .split("admin = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = testkit::http::get(admin, "/metrics").expect("metrics endpoint answers");
    assert_eq!(status, 200);
    for line in [
        "bgp_peer_state{address=",
        "bgp_peer_established{peer=\"bird\"} 1",
        "bgp_peer_prefixes_advertised{peer=\"bird\"} 1",
        "bgp_routes_originated{service=\"live\"} 1",
        "bgp_peer_messages_sent_total{peer=\"bird\",type=\"update\"}",
        "bgp_peer_messages_received_total{peer=\"bird\",type=\"keepalive\"}",
    ] {
        assert!(body.contains(line), "missing {line} in:\n{body}");
    }
}

#[test]
fn sigterm_closes_sessions_with_a_cease_and_exits_cleanly() {
    let Some((bird, mut speaker)) = setup(
        "sigterm_closes_sessions_with_a_cease_and_exits_cleanly",
        Opener::Us,
        "",
        "",
    ) else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    speaker.daemon.signal("TERM");
    assert_eq!(
        speaker.daemon.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        speaker.daemon.log_text()
    );
    let proto = testkit::process::wait_for(WAIT, || {
        let p = bird.cli("show protocols all up1");
        p.contains("Administrative shutdown").then_some(p)
    });
    assert!(
        proto.is_some(),
        "BIRD did not see a Cease: {}",
        bird.cli("show protocols all up1")
    );
}

#[test]
fn ttl_security_session_comes_up_with_gtsm() {
    let Some((bird, speaker)) = setup(
        "ttl_security_session_comes_up_with_gtsm",
        Opener::Us,
        "ttl_security = true",
        "ttl security on;",
    ) else {
        return;
    };
    assert!(
        speaker.wait_state("bird", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        bird.cli("show protocols all up1")
    );
}

/// BIRD exporting the given static routes to us, with graceful restart.
fn exporting_bird(net: Loopback, routes: &[&str]) -> String {
    let statics: String = routes
        .iter()
        .map(|r| format!("  route {r} unreachable;\n"))
        .collect();
    format!(
        "router id {b};\nprotocol device {{}}\nprotocol static stat1 {{\n  ipv4;\n{statics}}}\nprotocol bgp up1 {{\n  local {b} port 1179 as 65000;\n  neighbor {us} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  graceful restart on;\n  ipv4 {{ import none; export all; next hop self; }};\n}}\n",
        b = net.host(2),
        us = net.host(1)
    )
}

#[test]
fn graceful_restart_helper_keeps_the_peers_routes_until_its_end_of_rib() {
    let test = "graceful_restart_helper_keeps_the_peers_routes_until_its_end_of_rib";
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let bird = Bird::start(&exporting_bird(
        net,
        &["10.7.1.0/24", "10.7.2.0/24", "10.7.3.0/24"],
    ));
    let dir = testkit::process::TempDir::new("speaker-gr-helper");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "bird",
        address: net.host(2),
        remote_asn: 65000,
        port: 1179,
        extra: "import = { enabled = true }".into(),
    };
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net.host(1), &socket, &[peer], "")).unwrap();
    let speaker = Speaker::start_with(dir, config);
    let received = |want: u64| {
        testkit::process::wait_for(WAIT, || {
            let p = speaker
                .neighbors()
                .into_iter()
                .find(|p| p["name"] == "bird")?;
            (p["prefixes_received"].as_u64() == Some(want)).then_some(p)
        })
    };
    assert!(received(3).is_some(), "{:?}", speaker.neighbors());

    // BIRD dies without a NOTIFICATION: its routes stay, stale, while it restarts.
    bird.daemon.signal("KILL");
    drop(bird);
    let down = testkit::process::wait_for(WAIT, || {
        (speaker.peer_state("bird") != "Established").then_some(())
    });
    assert!(down.is_some());
    std::thread::sleep(Duration::from_millis(500));
    let (ok, table) = speaker.cli(&["show", "routes", "received", "bird"]);
    assert!(
        ok && table.contains("10.7.3.0/24"),
        "stale routes kept during the restart:\n{table}"
    );

    // It comes back without 10.7.3.0/24: after its End-of-RIB that stale route is gone.
    let _bird = Bird::start(&exporting_bird(net, &["10.7.1.0/24", "10.7.2.0/24"]));
    assert!(received(2).is_some(), "{:?}", speaker.neighbors());
    let (_, table) = speaker.cli(&["show", "routes", "received", "bird"]);
    assert!(
        !table.contains("10.7.3.0/24") && table.contains("10.7.1.0/24"),
        "{table}"
    );
}

#[test]
fn connection_collision_leaves_one_session() {
    let Some((bird, speaker)) = setup(
        "connection_collision_leaves_one_session",
        Opener::Both,
        "",
        "",
    ) else {
        return;
    };
    assert!(
        speaker.wait_state("bird", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        bird.cli("show protocols all up1")
    );
    // Stable: one session survives and stays up.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(speaker.peer_state("bird"), "Established");
    assert!(bird.established("up1"));
    assert!(speaker.cli(&["announce", "198.51.100.0/24"]).0);
    assert!(wait_route(&bird, "198.51.100.0/24", true, WAIT).is_some());
}

#[test]
fn sighup_starts_added_peers_and_closes_removed_ones() {
    let test = "sighup_starts_added_peers_and_closes_removed_ones";
    let Some((bird, speaker)) = setup(test, Opener::Us, "", "") else {
        return;
    };
    assert!(speaker.wait_state("bird", "Established", WAIT));
    // A second router appears in the deployment file.
    let net2 = Loopback::fresh();
    let second = Bird::start(
        &bird_config(net2, true, "").replace(&net2.host(1).to_string(), &local_of(&speaker)),
    );
    let text = std::fs::read_to_string(&speaker.config).unwrap();
    let added = format!(
        "\n[[sites.peers]]\nname = \"bird2\"\naddress = \"{}\"\nremote_asn = 65000\nport = 1179\nlocal_address = \"{}\"\nnext_hop_v6 = \"2001:db8::1\"\n",
        net2.host(2),
        local_of(&speaker)
    );
    let at = text.find("\n[[sites.nodes]]").unwrap();
    std::fs::write(
        &speaker.config,
        format!("{}{added}{}", &text[..at], &text[at..]),
    )
    .unwrap();
    speaker.daemon.signal("HUP");
    assert!(
        speaker.wait_state("bird2", "Established", WAIT),
        "{}",
        speaker.daemon.log_text()
    );
    assert_eq!(
        speaker.peer_state("bird"),
        "Established",
        "the existing session was not disturbed"
    );

    // The first router is removed: its session closes with a Cease.
    let text = std::fs::read_to_string(&speaker.config).unwrap();
    let start = text.find("[[sites.peers]]\nname = \"bird\"\n").unwrap();
    let end = start
        + text[start..]
            .find("\n[[sites.peers]]\nname = \"bird2\"")
            .unwrap();
    std::fs::write(
        &speaker.config,
        format!("{}{}", &text[..start], &text[end + 1..]),
    )
    .unwrap();
    speaker.daemon.signal("HUP");
    let closed = testkit::process::wait_for(WAIT, || {
        bird.cli("show protocols all up1")
            .contains("Administrative shutdown")
            .then_some(())
    });
    assert!(closed.is_some(), "{}", bird.cli("show protocols all up1"));
    assert!(speaker.neighbors().iter().all(|p| p["name"] != "bird"));
    assert!(second.established("up1"));
}

/// Our local address in the generated deployment.
fn local_of(speaker: &Speaker) -> String {
    let text = std::fs::read_to_string(&speaker.config).unwrap();
    text.split("local_address = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}
