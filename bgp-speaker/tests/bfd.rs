//! BFD with real routers, in network namespaces the test makes: the speaker in one, the
//! router in the other, a veth link between them. The BFD session comes up with the router's
//! own BFD (BIRD's `bfd on`, FRR's bfdd with `neighbor X bfd`); then the link goes silent
//! (nftables drops everything, the interfaces stay up, as with a failed switch or fibre) and
//! both sides must drop the BGP session within the BFD detection time, long before the 90 s
//! hold timer would. Then the link comes back, and BFD and BGP with it. The times are printed
//! (`-- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::{PeerSpec, Speaker, deployment};
use testkit::bird::Bird;
use testkit::frr::Frr;
use testkit::netns::{self, Namespace};
use testkit::process::{TempDir, wait_for};

const PREFIX: &str = "198.51.100.0/24";

fn programs(router: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut p = router.to_vec();
    p.extend_from_slice(netns::PROGRAMS);
    p.push(("nft", "nftables"));
    p.push(("curl", "curl"));
    p
}

/// What the scenario needs to know of the router, whichever it is.
struct Router<'a> {
    name: &'static str,
    namespace: &'a Namespace,
    has_route: &'a dyn Fn() -> bool,
    bfd_up: &'a dyn Fn() -> bool,
    logs: &'a dyn Fn() -> String,
}

/// The speaker in `us`, peering with the router at `router_addr` over BGP and BFD at
/// 100 ms x 3 with a 90 s hold time.
fn speaker(us: &Namespace, local: &str, router_addr: &str) -> Speaker {
    let dir = TempDir::new("speaker-bfd");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "up1",
        address: router_addr.parse().unwrap(),
        remote_asn: 65000,
        port: 179,
        extra: "hold_time = 90\nbfd = { interval = \"100ms\", multiplier = 3 }".into(),
    };
    let text = deployment(local.parse().unwrap(), &socket, &[peer], "");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, text).unwrap();
    Speaker::start_in(Some(us), dir, config)
}

fn our_bfd_up(speaker: &Speaker) -> bool {
    speaker
        .neighbors()
        .iter()
        .any(|p| p["name"] == "up1" && p["bfd"] == "Up")
}

/// Established, announced, BFD up on both sides; then silence, then the link back.
fn silence_and_restore(us: &Namespace, local: &str, speaker: &Speaker, router: &Router<'_>) {
    let name = router.name;
    assert!(
        speaker.wait_state("up1", "Established", Duration::from_secs(30)),
        "no session with {name}:\n{}\n{}",
        speaker.daemon.log_text(),
        (router.logs)()
    );
    let (ok, out) = speaker.cli(&["announce", PREFIX]);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(10), || (router.has_route)()
            .then_some(()))
        .is_some(),
        "{name} never got the route:\n{}",
        (router.logs)()
    );
    let up = wait_for(Duration::from_secs(15), || {
        (our_bfd_up(speaker) && (router.bfd_up)()).then_some(())
    });
    assert!(
        up.is_some(),
        "BFD never came up with {name}: ours {:?}\n{}\n{}",
        speaker.neighbors(),
        speaker.daemon.log_text(),
        (router.logs)()
    );

    let cut = Instant::now();
    router.namespace.silence();
    let ours = wait_for(Duration::from_secs(5), || {
        (speaker.peer_state("up1") != "Established").then(|| cut.elapsed())
    });
    let theirs = wait_for(Duration::from_secs(5), || {
        (!(router.has_route)()).then(|| cut.elapsed())
    });
    let ours = ours.unwrap_or_else(|| {
        panic!(
            "our session with {name} outlived BFD:\n{}",
            speaker.daemon.log_text()
        )
    });
    let theirs = theirs.unwrap_or_else(|| panic!("{name} kept the route:\n{}", (router.logs)()));
    println!(
        "{name}: link silent -> our BGP session down in {} ms, the route gone at {name} in {} ms (BFD 100 ms x 3, hold 90 s)",
        ours.as_millis(),
        theirs.as_millis()
    );
    // Detection is 300 ms; the rest is margin for a loaded machine, still far below the hold time.
    assert!(ours < Duration::from_secs(1) && theirs < Duration::from_secs(1));
    assert!(
        speaker.daemon.log_text().contains("BFD session down"),
        "the log says why:\n{}",
        speaker.daemon.log_text()
    );

    let metrics = us
        .command("curl")
        .args(["-sf", &format!("http://{local}:9179/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        "bgp_peer_bfd_down_total{peer=\"up1\"} 1",
        "bgp_peer_bfd_up{peer=\"up1\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    // The session went down once, for one reason.
    let downs: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("bgp_peer_downs_total{peer=\"up1\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(downs, 1.0, "{metrics}");

    router.namespace.unsilence();
    let back = wait_for(Duration::from_secs(30), || {
        (speaker.peer_state("up1") == "Established" && our_bfd_up(speaker) && (router.has_route)())
            .then_some(())
    });
    assert!(
        back.is_some(),
        "no session with {name} after the link came back:\n{}\n{}",
        speaker.daemon.log_text(),
        (router.logs)()
    );
}

#[test]
fn a_silent_link_takes_the_session_down_within_the_bfd_detection_time_with_bird() {
    let test = "a_silent_link_takes_the_session_down_within_the_bfd_detection_time_with_bird";
    if testkit::require(test, &programs(Bird::PROGRAMS), true).is_none() {
        return;
    }
    let (us_ns, router_ns) = (Namespace::new("bfd-us"), Namespace::new("bfd-bird"));
    netns::link(&us_ns, "10.203.0.1/30", &router_ns, "10.203.0.2/30", "up1");
    // BIRD holds a peer down for its `error wait time` after an error such as BFD down.
    let bird = Bird::start_in(
        Some(&router_ns),
        r#"router id 10.203.0.2;
protocol device {}
protocol bfd {
  interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol bgp up1 {
  local 10.203.0.2 as 65000;
  neighbor 10.203.0.1 as 65001;
  hold time 90;
  error wait time 1, 5;
  bfd on;
  ipv4 { import all; export none; };
}
"#,
    );
    let speaker = speaker(&us_ns, "10.203.0.1", "10.203.0.2");
    silence_and_restore(
        &us_ns,
        "10.203.0.1",
        &speaker,
        &Router {
            name: "BIRD",
            namespace: &router_ns,
            has_route: &|| bird.route(PREFIX).is_some(),
            bfd_up: &|| {
                let sessions = bird.cli("show bfd sessions");
                sessions.contains("10.203.0.1") && sessions.contains(" Up ")
            },
            logs: &|| bird.daemon.log_text(),
        },
    );
}

#[test]
fn a_silent_link_takes_the_session_down_within_the_bfd_detection_time_with_frr() {
    let test = "a_silent_link_takes_the_session_down_within_the_bfd_detection_time_with_frr";
    let mut needs = programs(Frr::PROGRAMS);
    needs.extend_from_slice(Frr::BFD_PROGRAMS);
    if testkit::require(test, &needs, true).is_none() {
        return;
    }
    let (us_ns, router_ns) = (Namespace::new("bfd-us"), Namespace::new("bfd-frr"));
    netns::link(&us_ns, "10.204.0.1/30", &router_ns, "10.204.0.2/30", "up1");
    let frr = Frr::start_with_bfd(
        &router_ns,
        "frr defaults traditional\nhostname r1\nrouter bgp 65000\n bgp router-id 10.204.0.2\n no bgp ebgp-requires-policy\n neighbor 10.204.0.1 remote-as 65001\n neighbor 10.204.0.1 timers 30 90\n neighbor 10.204.0.1 timers connect 1\n neighbor 10.204.0.1 bfd\n neighbor 10.204.0.1 bfd profile fast\n",
        "bfd\n profile fast\n  detect-multiplier 3\n  receive-interval 100\n  transmit-interval 100\n !\n!\n",
    );
    let speaker = speaker(&us_ns, "10.204.0.1", "10.204.0.2");
    let has_route = || {
        let out = frr.vtysh(&format!("show bgp ipv4 unicast {PREFIX} json"));
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v["paths"].as_array().map(|p| !p.is_empty()))
            .unwrap_or(false)
    };
    let bfd_up = || {
        let out = frr.vtysh("show bfd peers json");
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| {
                v.as_array().map(|peers| {
                    peers
                        .iter()
                        .any(|p| p["peer"] == "10.204.0.1" && p["status"] == "up")
                })
            })
            .unwrap_or(false)
    };
    silence_and_restore(
        &us_ns,
        "10.204.0.1",
        &speaker,
        &Router {
            name: "FRR",
            namespace: &router_ns,
            has_route: &has_route,
            bfd_up: &bfd_up,
            logs: &|| frr.logs(),
        },
    );
}
