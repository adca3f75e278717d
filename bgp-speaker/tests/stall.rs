//! A stalled upstream stalls only itself. Two BIRDs; one is SIGSTOPped while the table churns
//! so that its send queue fills. Every question about it is answered within its deadline,
//! withdrawals still reach the other BIRD at once, the stopped one is dropped after its hold
//! time, the speaker's memory stays bounded when it wakes up, and SIGTERM ends the process.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{PeerSpec, Speaker, deployment, wait_route};
use config::types::ControlEndpoint;
use ipnet::IpNet;
use speaker_control::{Client, Op, RouteAttrs};
use testkit::bird::Bird;
use testkit::net::Loopback;
use testkit::process::wait_for;

fn bird_config(bird: Ipv4Addr, us: Ipv4Addr, hold: u16) -> String {
    format!(
        r#"router id {bird};
protocol device {{}}
protocol bgp up {{
  local {bird} port 1179 as 65000;
  neighbor {us} as 65001;
  passive on;
  multihop;
  strict bind on;
  hold time {hold};
  ipv4 {{ import all; export none; }};
}}
"#
    )
}

/// Times the table changes while r2 is stopped: more than its socket buffers take.
const CHURN: u32 = 24;

/// `count` /32 prefixes from 10.0.0.0 on.
fn table(count: u32) -> Vec<IpNet> {
    (0..count)
        .map(|i| IpNet::new(Ipv4Addr::from(0x0A00_0000 + i).into(), 32).unwrap())
        .collect()
}

#[test]
fn a_stopped_upstream_stalls_only_itself() {
    if testkit::require(
        "a_stopped_upstream_stalls_only_itself",
        Bird::PROGRAMS,
        false,
    )
    .is_none()
    {
        return;
    }
    let net = Loopback::fresh();
    let us = net.host(1);
    let (healthy, stopped) = (
        Bird::start(&bird_config(net.host(2), us, 9)),
        Bird::start(&bird_config(net.host(3), us, 90)),
    );
    let dir = testkit::process::TempDir::new("speaker-stall");
    let socket = dir.path().join("speaker.sock");
    let peer = |name, n, extra: &str| PeerSpec {
        name,
        address: net.host(n),
        remote_asn: 65000,
        port: 1179,
        extra: extra.to_owned(),
    };
    let text = deployment(
        us,
        &socket,
        &[peer("r1", 2, ""), peer("r2", 3, "hold_time = 45")],
        "",
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, text).unwrap();
    let mut speaker = Speaker::start_with(dir, config);
    for peer in ["r1", "r2"] {
        assert!(
            speaker.wait_state(peer, "Established", Duration::from_secs(15)),
            "{peer}: {:?}",
            speaker.neighbors()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let endpoint = ControlEndpoint::Unix(socket.clone());
    let mut client = runtime
        .block_on(Client::connect(&endpoint, None, Duration::from_secs(120)))
        .unwrap();
    let mut call = |op| runtime.block_on(client.call(op)).unwrap();
    let prefixes = table(50_000);
    let announce = |med: u32| Op::Announce {
        prefixes: prefixes.clone(),
        attrs: RouteAttrs {
            med: Some(med),
            ..Default::default()
        },
        service: None,
        lease_ms: None,
    };
    call(announce(0));
    assert!(
        wait_route(&healthy, "10.0.195.79/32", true, Duration::from_secs(60)).is_some(),
        "the table reached r1"
    );

    // r2 stops reading; the table churns, which r2's queue cannot take.
    stopped.daemon.signal("STOP");
    for med in 1..=CHURN {
        call(announce(med));
    }
    let rss_stopped = testkit::process::memory_mib(speaker.daemon.pid(), false) as u64;
    assert_eq!(
        speaker.peer_state("r2"),
        "Established",
        "r2 is stopped, not yet dropped"
    );

    // Questions about the stopped peer are answered within their deadline.
    for args in [
        &["show", "routes", "advertised", "r2"][..],
        &["show", "neighbors"],
        &["show", "routes"],
    ] {
        let started = Instant::now();
        let (ok, out) = speaker.cli(args);
        let took = started.elapsed();
        println!("{args:?} answered in {took:?}: {:?}", out.lines().last());
        assert!(ok, "{args:?}: {}", &out[..out.len().min(400)]);
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
    // What r2 holds is what it took before it stopped: the churn waits for it to read.
    let (_, advertised) = speaker.cli(&["--json", "show", "routes", "advertised", "r2"]);
    assert_eq!(advertised.lines().count(), 50_000);
    let latest = advertised
        .lines()
        .filter(|l| l.contains(&format!("\"med\":{CHURN},")))
        .count();
    println!("r2 holds {latest} of 50000 routes at the latest MED: the rest wait for it to read");
    assert!(latest < 50_000, "the churn was held back for r2");

    // Withdrawals still reach the healthy upstream at once.
    let probe: IpNet = "192.0.2.0/24".parse().unwrap();
    call(Op::Announce {
        prefixes: vec![probe],
        attrs: RouteAttrs::default(),
        service: None,
        lease_ms: None,
    });
    assert!(wait_route(&healthy, "192.0.2.0/24", true, Duration::from_secs(30)).is_some());
    let started = Instant::now();
    call(Op::Withdraw {
        prefixes: vec![probe],
    });
    assert!(wait_route(&healthy, "192.0.2.0/24", false, Duration::from_secs(5)).is_some());
    let withdraw = started.elapsed();
    println!("withdraw reached r1 in {withdraw:?} (birdc polling included) while r2 is stopped");
    assert!(withdraw < Duration::from_secs(1), "{withdraw:?}");

    // The stopped peer is dropped after its hold time, with the cause in its last error.
    let dropped = wait_for(Duration::from_secs(60), || {
        let p = speaker
            .neighbors()
            .into_iter()
            .find(|p| p["name"] == "r2")?;
        let error = p["last_error"].as_str()?.to_owned();
        (p["state"] != "Established").then_some(error)
    });
    println!("r2 dropped: {dropped:?}");
    assert!(
        dropped.is_some(),
        "the stopped peer was never dropped:\n{}",
        speaker.daemon.log_text()
    );
    assert!(speaker.wait_state("r1", "Established", Duration::from_secs(1)));

    // r2 wakes up: it gets the table again, and the speaker's memory stays bounded.
    stopped.daemon.signal("CONT");
    let mut peak = rss_stopped;
    let back = wait_for(Duration::from_secs(60), || {
        peak = peak.max(testkit::process::memory_mib(speaker.daemon.pid(), false) as u64);
        stopped.route("10.0.195.79/32").map(|_| ())
    });
    println!("speaker memory: {rss_stopped} MiB with r2 stopped, peak {peak} MiB as it came back");
    assert!(back.is_some(), "r2 got the table again");
    assert!(
        peak <= rss_stopped * 2 + 64,
        "memory grew from {rss_stopped} to {peak} MiB"
    );

    // SIGTERM ends the process within a bounded time.
    speaker.daemon.signal("TERM");
    assert!(
        speaker.daemon.wait_exit(Duration::from_secs(10)).is_some(),
        "bgp-speaker did not exit on SIGTERM"
    );
}
