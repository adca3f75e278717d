//! End to end in network namespaces: `lab up` builds the three-sites topology (BIRD, FRR,
//! unbound and our daemons; Frankfurt an edge site fetching from the anycast origin), `lab
//! chaos` kills stream nodes, kills the origin site the edges fetch from, lets a viewer's token
//! expire, cuts every site's feed, restarts a
//! healthd, stops an upstream router, sends garbage at geodns, kills a speaker and silences the
//! path between a speaker and a router (found by BFD), and upgrades a site in place (drain,
//! every daemon replaced, undrain) while viewers in four cities play, and the failure table's bounds hold: withdrawn at the upstreams within
//! their bounds, answers moved (or kept), DNS always answering, no viewer stalled. Needs root;
//! `lab down` removes everything afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

const TOPOLOGY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/topologies/three-sites.clab.yml"
);

fn lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lab"))
}

/// Takes the lab down however the test ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = lab().args(["down", TOPOLOGY]).status();
    }
}

#[test]
fn killed_nodes_and_sites_are_routed_and_answered_around_while_viewers_play() {
    let test = "killed_nodes_and_sites_are_routed_and_answered_around_while_viewers_play";
    let programs = [
        ("ip", "iproute2"),
        ("bird", "bird2"),
        ("bgpd", "frr"),
        ("zebra", "frr"),
        ("bfdd", "frr"),
        ("unbound", "unbound"),
    ];
    let Some(_) = testkit::require(test, &programs, true) else {
        return;
    };
    // The daemons the topology runs are found beside the lab binary.
    let dir = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    for daemon in ["bgp-speaker", "healthd", "geodns", "streamnode"] {
        assert!(
            dir.join(daemon).exists(),
            "{daemon} is not built beside the lab binary: run `cargo build --workspace` (as \
             `cargo test --workspace` does)"
        );
    }
    // A lab left over from an interrupted run is removed first.
    let _ = lab().args(["down", TOPOLOGY]).status();
    let _down = Down;
    let up = lab().args(["up", TOPOLOGY]).output().unwrap();
    assert!(
        up.status.success(),
        "lab up failed:\n{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let report: PathBuf = std::env::temp_dir().join(format!("lab-chaos-{}", std::process::id()));
    let chaos = lab()
        .args([
            "chaos",
            "site-down",
            "node-kill",
            "origin-down",
            "token-expiry",
            "ingest-loss",
            "feeds-cut",
            "all-sites-down",
            "healthd-restart",
            "router-stall",
            "dns-garbage",
            "speaker-kill",
            "link-cut",
            "site-upgrade",
            "-t",
            TOPOLOGY,
            "--observe",
            "6",
        ])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&chaos.stdout);
    let logs = || {
        let mut text = String::new();
        for node in [
            "ams-healthd",
            "ams-ctl",
            "dns1",
            "ams-r1",
            "ams-r2",
            "resolver",
        ] {
            let log = Path::new("/run/iptv-lab/three-sites")
                .join(node)
                .join("console.log");
            let tail: String = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            text.push_str(&format!("--- {node}\n{tail}\n"));
        }
        text
    };
    assert!(
        chaos.status.success(),
        "lab chaos failed:\n{stdout}{}\n{}",
        String::from_utf8_lossy(&chaos.stderr),
        logs()
    );
    for expected in [
        "pass every node down: withdrawn at ams-r1",
        "pass every node down: withdrawn at ams-r2",
        "pass answers for Amsterdam move to another site",
        "pass viewer in Amsterdam keeps playing",
        "pass 10.1.0.11 leaves the answers for Amsterdam",
        "pass the anycast origin moves away from ams",
        "pass answers for Frankfurt unchanged (the edges keep serving)",
        "pass viewer in Frankfurt gets new segments through the edges from the next origin",
        "pass viewer in Frankfurt plays with its token until it expires",
        "pass its first request past the expiry is refused with 403",
        "pass every request past the expiry refused 403, never another failure",
        "pass the site stays announced at ams-r1",
        "pass answers for Amsterdam unchanged while the feeds are cut",
        "pass geodns counts the silent feeds as past their grace",
        "pass the transit network keeps a route to 198.51.100.0/24",
        "pass ams announced at ams-r1 while every site is down (fail open)",
        "pass lon announced at lon-r2 while every site is down (fail open)",
        "pass DNS for Amsterdam follows the new healthd",
        "pass site down while ams-r1 is stopped: withdrawn at ams-r2",
        "pass geodns at dns1 serves every worker",
        "pass geodns at dns2 serves every worker",
        "pass answers for Dublin unchanged while garbage arrives",
        "pass session lost: withdrawn at ams-r1",
        "pass the transit network's traffic leaves ams-r1",
        "pass the site stays announced at ams-r2",
        "pass ams-node1 replaced in place",
        "pass ams-node2 replaced in place",
        "pass ams-healthd replaced in place",
        "pass ams-ctl replaced in place",
        "pass ams whole again after its upgrade",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    // The geodns anycast prefix is announced by Amsterdam and London; the transit network sits
    // nearest to Amsterdam and routes it there (after the run, the lab has converged), through the kernel routes BIRD installed.
    let route = lab()
        .args([
            "exec",
            "-t",
            TOPOLOGY,
            "transit",
            "ip",
            "route",
            "show",
            "exact",
            "192.0.2.0/24",
        ])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains("dev eth-ams-r"),
        "anycast DNS not routed to Amsterdam: {route:?}"
    );

    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md written");
    assert!(
        md.contains("## site-down") && md.contains("## node-kill"),
        "{md}"
    );
    let svg = std::fs::read_to_string(report.join("site-down.svg")).expect("timeline written");
    assert!(
        svg.starts_with("<svg") && svg.contains("route ams-r1"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&report);
}
