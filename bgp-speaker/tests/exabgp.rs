//! Interop with ExaBGP: what it receives from us, decoded by ExaBGP itself.

mod common;

use std::time::Duration;

use common::{PeerSpec, Speaker, deployment};
use serde_json::Value;
use testkit::exabgp::ExaBgp;
use testkit::net::Loopback;
use testkit::process::{TempDir, wait_for};

const WAIT: Duration = Duration::from_secs(20);

/// The UPDATE bodies ExaBGP received, parsed.
fn updates(exa: &ExaBgp) -> Vec<Value> {
    exa.received()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v["neighbor"]["message"]["update"]
                .as_object()
                .map(|u| Value::Object(u.clone()))
        })
        .collect()
}

#[test]
fn exabgp_decodes_our_announcements_and_withdrawals() {
    let Some(_) = testkit::require(
        "exabgp_decodes_our_announcements_and_withdrawals",
        ExaBgp::PROGRAMS,
        false,
    ) else {
        return;
    };
    let net = Loopback::fresh();
    let (us, them) = (net.host(1), net.host(5));
    let neighbor = format!(
        "neighbor {us} {{\n  router-id {them};\n  local-address {them};\n  local-as 65000;\n  peer-as 65001;\n  passive;\n  hold-time 9;\n  family {{ ipv4 unicast; ipv6 unicast; }}\n  api {{ processes [ dump ]; receive {{ parsed; update; }} }}\n}}\n"
    );
    let exa = ExaBgp::start(&neighbor, them, 1179);
    let dir = TempDir::new("speaker-exabgp");
    let socket = dir.path().join("speaker.sock");
    let peer = PeerSpec {
        name: "exabgp",
        address: them,
        remote_asn: 65000,
        port: 1179,
        extra: String::new(),
    };
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(us, &socket, &[peer], "")).unwrap();
    let speaker = Speaker::start_with(dir, config);
    assert!(
        speaker.wait_state("exabgp", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        exa.daemon.log_text()
    );

    assert!(
        speaker
            .cli(&[
                "announce",
                "198.51.100.0/24",
                "--community",
                "65000:100",
                "--large-community",
                "65000:1:2",
                "--prepend",
                "2",
                "--med",
                "10"
            ])
            .0
    );
    assert!(
        speaker
            .cli(&["announce", "2001:db8:100::/48", "--community", "65000:200"])
            .0
    );
    let both = wait_for(WAIT, || {
        let u = updates(&exa);
        let v4 = u
            .iter()
            .find(|u| u["announce"]["ipv4 unicast"].is_object())?
            .clone();
        let v6 = u
            .iter()
            .find(|u| u["announce"]["ipv6 unicast"].is_object())?
            .clone();
        Some((v4, v6))
    });
    let (v4, v6) =
        both.unwrap_or_else(|| panic!("ExaBGP did not receive both routes: {:?}", exa.received()));
    let a = &v4["attribute"];
    assert_eq!(
        a["as-path"],
        serde_json::json!([65001, 65001, 65001]),
        "{v4}"
    );
    assert_eq!(a["med"], 10);
    assert_eq!(a["origin"], "igp");
    assert_eq!(a["community"], serde_json::json!([[65000, 100]]));
    assert_eq!(a["large-community"], serde_json::json!([[65000, 1, 2]]));
    assert_eq!(
        v4["announce"]["ipv4 unicast"][us.to_string()][0]["nlri"],
        "198.51.100.0/24"
    );
    assert_eq!(
        v6["announce"]["ipv6 unicast"]["2001:db8::1"][0]["nlri"],
        "2001:db8:100::/48"
    );

    assert!(speaker.cli(&["withdraw", "198.51.100.0/24"]).0);
    let withdrawn = wait_for(WAIT, || {
        updates(&exa)
            .into_iter()
            .find(|u| u["withdraw"]["ipv4 unicast"].is_array())
    });
    let withdrawn = withdrawn.expect("withdrawal received");
    assert_eq!(
        withdrawn["withdraw"]["ipv4 unicast"][0]["nlri"],
        "198.51.100.0/24"
    );
}
