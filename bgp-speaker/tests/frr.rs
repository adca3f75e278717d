//! Interop with FRR's bgpd: sessions both ways, attributes read back with
//! `vtysh -c 'show bgp ... json'`, withdrawal and TCP-MD5.

mod common;

use std::time::Duration;

use common::{PeerSpec, Speaker, deployment};
use serde_json::Value;
use testkit::frr::Frr;
use testkit::net::Loopback;
use testkit::process::{TempDir, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn frr_config(net: Loopback, passive: bool, extra: &str) -> String {
    let (us, frr) = (net.host(1), net.host(3));
    let mode = if passive {
        format!(" neighbor {us} passive\n")
    } else {
        format!(" neighbor {us} port 1179\n")
    };
    format!(
        "frr defaults traditional\nhostname r1\nrouter bgp 65000\n bgp router-id {frr}\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor {us} remote-as 65001\n neighbor {us} ebgp-multihop 2\n neighbor {us} timers 3 9\n neighbor {us} timers connect 1\n neighbor {us} update-source {frr}\n{mode}{extra} address-family ipv6 unicast\n  neighbor {us} activate\n exit-address-family\n"
    )
}

fn setup(
    test: &str,
    frr_passive: bool,
    peer_extra: &str,
    frr_extra: &str,
) -> Option<(Frr, Speaker)> {
    testkit::require(test, Frr::PROGRAMS, false)?;
    let net = Loopback::fresh();
    // `US` in the extra lines stands for our address.
    let frr_extra = frr_extra.replace("US", &net.host(1).to_string());
    let frr = Frr::start(&frr_config(net, frr_passive, &frr_extra), net.host(3), 1179);
    let dir = TempDir::new("speaker-frr");
    let socket = dir.path().join("speaker.sock");
    // FRR rejects loopback next hops as martians: announce a documentation address instead.
    let mut extra = format!("next_hop = \"192.0.2.1\"\n{peer_extra}");
    let mut speaker_extra = String::new();
    if !frr_passive {
        extra.push_str("\npassive = true");
        speaker_extra = format!(", listen = \"{}:1179\"", net.host(1));
    }
    let peer = PeerSpec {
        name: "frr",
        address: net.host(3),
        remote_asn: 65000,
        port: 1179,
        extra,
    };
    std::fs::write(dir.path().join("md5.key"), "frr-secret\n").unwrap();
    let config = dir.path().join("deploy.toml");
    std::fs::write(
        &config,
        deployment(net.host(1), &socket, &[peer], &speaker_extra),
    )
    .unwrap();
    Some((frr, Speaker::start_with(dir, config)))
}

fn route(frr: &Frr, afi: &str, prefix: &str) -> Option<Value> {
    let out = frr.vtysh(&format!("show bgp {afi} unicast {prefix} json"));
    let v: Value = serde_json::from_str(&out).ok()?;
    v["paths"].as_array()?.first().cloned()
}

#[test]
fn routes_arrive_intact_at_frr_with_us_active() {
    let Some((frr, speaker)) = setup("routes_arrive_intact_at_frr_with_us_active", true, "", "")
    else {
        return;
    };
    assert!(
        speaker.wait_state("frr", "Established", WAIT),
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

    let v4 = wait_for(WAIT, || route(&frr, "ipv4", "198.51.100.0/24")).expect("IPv4 route at FRR");
    assert_eq!(v4["aspath"]["string"], "65001 65001 65001", "{v4}");
    assert_eq!(v4["aspath"]["segments"][0]["type"], "as-sequence");
    assert_eq!(v4["community"]["string"], "65000:100");
    assert_eq!(v4["largeCommunity"]["string"], "65000:1:2");
    assert_eq!(v4["metric"], 10);
    assert_eq!(v4["origin"], "IGP");
    assert_eq!(v4["nexthops"][0]["ip"], "192.0.2.1");
    let v6 =
        wait_for(WAIT, || route(&frr, "ipv6", "2001:db8:100::/48")).expect("IPv6 route at FRR");
    assert_eq!(v6["community"]["string"], "65000:200");
    assert_eq!(v6["nexthops"][0]["ip"], "2001:db8::1");

    assert!(speaker.cli(&["withdraw", "198.51.100.0/24"]).0);
    assert!(
        wait_for(WAIT, || route(&frr, "ipv4", "198.51.100.0/24")
            .is_none()
            .then_some(()))
        .is_some(),
        "withdrawn route still at FRR"
    );
}

#[test]
fn session_with_frr_comes_up_with_us_passive() {
    let Some((frr, speaker)) = setup("session_with_frr_comes_up_with_us_passive", false, "", "")
    else {
        return;
    };
    assert!(
        speaker.wait_state("frr", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        frr.vtysh("show bgp summary")
    );
    assert!(speaker.cli(&["announce", "198.51.100.0/24"]).0);
    assert!(wait_for(WAIT, || route(&frr, "ipv4", "198.51.100.0/24")).is_some());
}

#[test]
fn frr_sees_our_capabilities() {
    let Some((frr, speaker)) = setup("frr_sees_our_capabilities", true, "", "") else {
        return;
    };
    assert!(speaker.wait_state("frr", "Established", WAIT));
    let out = frr.vtysh(&format!(
        "show bgp neighbors {} json",
        speaker_addr(&speaker)
    ));
    let v: Value = serde_json::from_str(&out).expect("neighbor json");
    let neighbor = v
        .as_object()
        .and_then(|m| m.values().next())
        .expect("one neighbor");
    let caps = &neighbor["neighborCapabilities"];
    assert_eq!(caps["4byteAs"], "advertisedAndReceived", "{caps}");
    assert_eq!(caps["gracefulRestart"], "advertisedAndReceived", "{caps}");
    assert!(
        caps["routeRefresh"]
            .as_str()
            .is_some_and(|s| s.contains("Received")),
        "{caps}"
    );
    let families = &caps["multiprotocolExtensions"];
    assert_eq!(
        families["ipv4Unicast"]["advertisedAndReceived"], true,
        "{caps}"
    );
    assert_eq!(
        families["ipv6Unicast"]["advertisedAndReceived"], true,
        "{caps}"
    );
}

#[test]
fn md5_key_authenticates_the_session_with_frr() {
    let md5 = "md5_key = { file = \"md5.key\" }";
    let Some((frr, speaker)) = setup(
        "md5_key_authenticates_the_session_with_frr",
        true,
        md5,
        " neighbor US password frr-secret\n",
    ) else {
        return;
    };
    assert!(
        speaker.wait_state("frr", "Established", WAIT),
        "{}\n{}",
        speaker.daemon.log_text(),
        frr.vtysh("show bgp summary")
    );
}

#[test]
fn wrong_md5_key_with_frr_fails_with_a_clear_error() {
    let md5 = "md5_key = { file = \"md5.key\" }";
    let Some((frr, speaker)) = setup(
        "wrong_md5_key_with_frr_fails_with_a_clear_error",
        true,
        md5,
        " neighbor US password other-secret\n",
    ) else {
        return;
    };
    let error = wait_for(WAIT, || {
        let peer = speaker
            .neighbors()
            .into_iter()
            .find(|p| p["name"] == "frr")?;
        peer["last_error"]
            .as_str()
            .filter(|e| e.contains("TCP-MD5"))
            .map(str::to_owned)
    });
    assert!(
        error.is_some(),
        "no clear MD5 error: {:?}\n{}",
        speaker.neighbors(),
        frr.vtysh("show bgp summary")
    );
}

fn speaker_addr(speaker: &Speaker) -> String {
    speaker.neighbors()[0]["local_addr"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .map(|(ip, _)| ip.to_owned())
        .unwrap_or_default()
}
