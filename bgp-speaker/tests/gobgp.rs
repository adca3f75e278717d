//! Interop with GoBGP: sessions both ways, attributes read back with `gobgp ... -j`.

mod common;

use std::time::Duration;

use common::{PeerSpec, Speaker, deployment};
use serde_json::Value;
use testkit::gobgp::GoBgp;
use testkit::net::Loopback;
use testkit::process::{TempDir, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn gobgp_config(net: Loopback, passive: bool) -> String {
    let (us, them) = (net.host(1), net.host(4));
    let transport = if passive {
        format!("passive-mode = true\n    local-address = \"{them}\"")
    } else {
        format!("remote-port = 1179\n    local-address = \"{them}\"")
    };
    format!(
        r#"[global.config]
  as = 65000
  router-id = "{them}"
  port = 1179
  local-address-list = ["{them}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{us}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [neighbors.transport.config]
    {transport}
  [neighbors.ebgp-multihop.config]
    enabled = true
    multihop-ttl = 2
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

fn setup(test: &str, gobgp_passive: bool) -> Option<(GoBgp, Speaker)> {
    testkit::require(test, GoBgp::PROGRAMS, false)?;
    let net = Loopback::fresh();
    let gobgp = GoBgp::start(&gobgp_config(net, gobgp_passive), (net.host(4), 50051));
    let dir = TempDir::new("speaker-gobgp");
    let socket = dir.path().join("speaker.sock");
    // GoBGP treats loopback next hops as invalid: announce a documentation address instead.
    let mut extra = "next_hop = \"192.0.2.1\"".to_owned();
    let mut speaker_extra = String::new();
    if !gobgp_passive {
        extra.push_str("\npassive = true");
        speaker_extra = format!(", listen = \"{}:1179\"", net.host(1));
    }
    let peer = PeerSpec {
        name: "gobgp",
        address: net.host(4),
        remote_asn: 65000,
        port: 1179,
        extra,
    };
    let config = dir.path().join("deploy.toml");
    std::fs::write(
        &config,
        deployment(net.host(1), &socket, &[peer], &speaker_extra),
    )
    .unwrap();
    Some((gobgp, Speaker::start_with(dir, config)))
}

/// The attributes of `prefix` in GoBGP's global RIB, by type code.
fn attrs(gobgp: &GoBgp, family: &str, prefix: &str) -> Option<Vec<Value>> {
    let v: Value = serde_json::from_str(&gobgp.cli(&["global", "rib", "-a", family, "-j"])).ok()?;
    v[prefix][0]["attrs"].as_array().cloned()
}

fn attr(attrs: &[Value], code: u64) -> Value {
    attrs
        .iter()
        .find(|a| a["type"] == code)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn routes_arrive_intact_at_gobgp() {
    let Some((gobgp, speaker)) = setup("routes_arrive_intact_at_gobgp", true) else {
        return;
    };
    assert!(
        speaker.wait_state("gobgp", "Established", WAIT),
        "{}",
        speaker.daemon.log_text()
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

    let v4 =
        wait_for(WAIT, || attrs(&gobgp, "ipv4", "198.51.100.0/24")).expect("IPv4 route at GoBGP");
    let path = attr(&v4, 2);
    assert_eq!(
        path["as_paths"][0]["segment_type"], 2,
        "AS_SEQUENCE: {path}"
    );
    assert_eq!(
        path["as_paths"][0]["asns"],
        serde_json::json!([65001, 65001, 65001])
    );
    assert_eq!(attr(&v4, 4)["metric"], 10);
    assert_eq!(
        attr(&v4, 8)["communities"],
        serde_json::json!([(65000u64 << 16) | 100])
    );
    assert_eq!(
        attr(&v4, 32)["value"][0],
        serde_json::json!({"ASN": 65000, "LocalData1": 1, "LocalData2": 2})
    );
    assert_eq!(attr(&v4, 3)["nexthop"], "192.0.2.1");

    let v6 =
        wait_for(WAIT, || attrs(&gobgp, "ipv6", "2001:db8:100::/48")).expect("IPv6 route at GoBGP");
    assert_eq!(attr(&v6, 14)["nexthop"], "2001:db8::1");

    assert!(speaker.cli(&["withdraw", "2001:db8:100::/48"]).0);
    assert!(
        wait_for(WAIT, || attrs(&gobgp, "ipv6", "2001:db8:100::/48")
            .is_none()
            .then_some(()))
        .is_some(),
        "withdrawn route still at GoBGP"
    );
}

#[test]
fn session_with_gobgp_comes_up_with_us_passive() {
    let Some((gobgp, speaker)) = setup("session_with_gobgp_comes_up_with_us_passive", false) else {
        return;
    };
    assert!(
        speaker.wait_state("gobgp", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        gobgp.cli(&["neighbor"])
    );
    assert!(speaker.cli(&["announce", "198.51.100.0/24"]).0);
    assert!(wait_for(WAIT, || attrs(&gobgp, "ipv4", "198.51.100.0/24")).is_some());
}
