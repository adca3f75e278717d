//! BFD with real routers, in network namespaces the test makes: the speaker in one, the
//! router in the other, a veth link between them. The BFD session comes up with the router's
//! own BFD (BIRD's `bfd on`); then the link goes silent (nftables drops everything, the
//! interfaces stay up, as with a failed switch or fibre) and both sides must drop the BGP
//! session within the BFD detection time, seconds before the 90 s hold timer would. The
//! times are printed (`-- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::{PeerSpec, Speaker, deployment, wait_route};
use testkit::bird::Bird;
use testkit::netns::{self, Namespace};
use testkit::process::{TempDir, wait_for};

const PREFIX: &str = "198.51.100.0/24";

/// Drops every packet in and out of a namespace: the link is dead, the interfaces are up.
const SILENCE: &str = "table inet silence {\n  chain input { type filter hook input priority -10; policy drop; }\n  chain output { type filter hook output priority -10; policy drop; }\n}\n";

fn programs() -> Vec<(&'static str, &'static str)> {
    let mut p = Bird::PROGRAMS.to_vec();
    p.extend_from_slice(netns::PROGRAMS);
    p.push(("nft", "nftables"));
    p
}

#[test]
fn a_silent_link_takes_the_session_down_within_the_bfd_detection_time_with_bird() {
    let test = "a_silent_link_takes_the_session_down_within_the_bfd_detection_time_with_bird";
    if testkit::require(test, &programs(), true).is_none() {
        return;
    }
    let (us_ns, router_ns) = (Namespace::new("bfd-us"), Namespace::new("bfd-bird"));
    netns::link(&us_ns, "10.203.0.1/30", &router_ns, "10.203.0.2/30", "up1");
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
    let dir = TempDir::new("speaker-bfd");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "up1",
        address: "10.203.0.2".parse().unwrap(),
        remote_asn: 65000,
        port: 179,
        extra: "hold_time = 90\nbfd = { interval = \"100ms\", multiplier = 3 }".into(),
    };
    let text = deployment("10.203.0.1".parse().unwrap(), &socket, &[peer], "");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, text).unwrap();
    let speaker = Speaker::start_in(Some(&us_ns), dir, config);
    assert!(
        speaker.wait_state("up1", "Established", Duration::from_secs(20)),
        "no session:\n{}\n{}",
        speaker.daemon.log_text(),
        bird.daemon.log_text()
    );
    let (ok, out) = speaker.cli(&["announce", PREFIX]);
    assert!(ok, "{out}");
    assert!(wait_route(&bird, PREFIX, true, Duration::from_secs(10)).is_some());
    let bfd_up = |speaker: &Speaker| {
        speaker
            .neighbors()
            .iter()
            .any(|p| p["name"] == "up1" && p["bfd"] == "Up")
    };
    let up = wait_for(Duration::from_secs(15), || {
        (bfd_up(&speaker) && bird.cli("show bfd sessions").contains(" Up ")).then_some(())
    });
    assert!(
        up.is_some(),
        "BFD never came up: ours {:?}, BIRD's:\n{}\n{}",
        speaker.neighbors(),
        bird.cli("show bfd sessions"),
        speaker.daemon.log_text()
    );
    println!("BFD up with BIRD:\n{}", bird.cli("show bfd sessions"));

    // The link goes silent.
    let cut = Instant::now();
    router_ns.nft(SILENCE);
    let ours = wait_for(Duration::from_secs(5), || {
        (speaker.peer_state("up1") != "Established").then(|| cut.elapsed())
    });
    let theirs = wait_for(Duration::from_secs(5), || {
        wait_route(&bird, PREFIX, false, Duration::ZERO).map(|_| cut.elapsed())
    });
    let ours =
        ours.unwrap_or_else(|| panic!("our session outlived BFD:\n{}", speaker.daemon.log_text()));
    let theirs =
        theirs.unwrap_or_else(|| panic!("BIRD kept the route:\n{}", bird.daemon.log_text()));
    println!(
        "link silent -> our BGP session down in {} ms, BIRD's route gone in {} ms (BFD 100 ms x 3, hold 90 s)",
        ours.as_millis(),
        theirs.as_millis()
    );
    assert!(ours < Duration::from_secs(1) && theirs < Duration::from_secs(1));
    assert!(
        speaker.daemon.log_text().contains("BFD session down"),
        "the log says why:\n{}",
        speaker.daemon.log_text()
    );

    // The link comes back: BFD and BGP with it (BIRD waits its `error wait time` first).
    router_ns.nft("delete table inet silence\n");
    let back = wait_for(Duration::from_secs(30), || {
        (speaker.peer_state("up1") == "Established" && bfd_up(&speaker)).then_some(())
    });
    assert!(back.is_some(), "{}", speaker.daemon.log_text());
}
