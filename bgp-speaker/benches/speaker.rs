//! bgp-speaker against real peers, on loopback, in one run:
//!
//! 1. withdraw latency: control-API call to route gone at BIRD (p50/p95 over many trials);
//! 2. 100,000 prefixes announced to BIRD: time until BIRD has them all, ours vs GoBGP;
//! 3. 1,000,000 IPv4 routes received from BIRD with import enabled: time and peak memory,
//!    ours vs BIRD receiving the same table.
//!
//! Run: `cargo bench -p bgp-speaker --bench speaker` (needs bird2 and gobgpd installed).
//! Machines are shared and noisy: compare the ratios, not the absolute figures.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use config::types::ControlEndpoint;
use ipnet::{IpNet, Ipv4Net};
use speaker_control::{Client, Op, Reply, RouteAttrs};
use testkit::bird::{Bird, BirdCtl};
use testkit::gobgp::GoBgp;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, wait_for};

const WITHDRAW_TRIALS: usize = 40;
const ANNOUNCE_PREFIXES: u32 = 100_000;
const RECEIVE_ROUTES: u32 = 1_000_000;

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects one part.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let programs = [
        ("bird", "bird2"),
        ("birdc", "bird2"),
        ("gobgpd", "gobgpd"),
        ("gobgp", "gobgpd"),
    ];
    let missing: Vec<&str> = programs
        .iter()
        .filter(|(p, _)| testkit::find_program(p).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        println!(
            "bgp-speaker benchmark skipped: install {}",
            missing.join(" ")
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("bgp-speaker benchmark (loopback; ratios matter more than absolute figures)\n");
    if only.as_deref().is_none_or(|o| o == "withdraw") {
        runtime.block_on(withdraw_latency());
    }
    if only.as_deref().is_none_or(|o| o == "announce") {
        runtime.block_on(announce_many());
    }
    if only.as_deref().is_none_or(|o| o == "receive") {
        runtime.block_on(receive_full_table());
    }
}

/// Starts our speaker peering with `peer` (passive BIRD/GoBGP on port 1179) from `us`.
fn start_speaker(
    dir: &TempDir,
    us: Ipv4Addr,
    peer: Ipv4Addr,
    peer_extra: &str,
    speaker_extra: &str,
) -> (Daemon, ControlEndpoint) {
    let socket = dir.path().join("speaker.sock");
    let text = format!(
        r#"[[sites]]
name = "ams"
country = "NL"
latitude = 52.37
longitude = 4.90
asn = 65001
router_id = "10.0.0.1"
speaker = {{ control = "unix:{}", admin = "{us}:9179", startup_hold = "0s"{speaker_extra} }}

[[sites.peers]]
name = "peer"
address = "{peer}"
remote_asn = 65000
port = 1179
local_address = "{us}"
next_hop = "192.0.2.1"
{peer_extra}

[[sites.nodes]]
name = "ams-1"
ipv4 = "127.0.1.1"
listen = "127.0.1.1:8080"
capacity_mbps = 1000
services = ["live"]

[[services]]
name = "live"
hostnames = ["live.tv.example.net"]
check = "stream"

[[checks]]
name = "stream"
kind = "hls"
"#,
        socket.display()
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, text).expect("write deployment");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bgp-speaker"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "warn");
    let daemon = Daemon::spawn("bgp-speaker", cmd, &dir.path().join("speaker.log"))
        .expect("start bgp-speaker");
    (daemon, ControlEndpoint::Unix(socket))
}

async fn connect(endpoint: &ControlEndpoint) -> Client {
    for _ in 0..200 {
        // Announcing a full table takes the speaker a while: a generous deadline.
        if let Ok(c) = Client::connect(endpoint, None, Duration::from_secs(60)).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("bgp-speaker control socket did not come up");
}

async fn wait_established(client: &mut Client) -> Instant {
    loop {
        if let Ok(Reply::Neighbors(peers)) = client.call(Op::Neighbors).await
            && peers.iter().any(|p| p["state"] == "Established")
        {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn passive_bird(net: Loopback, us: Ipv4Addr, tables: &str) -> String {
    let bird = net.host(2);
    format!(
        "router id {bird};\nprotocol device {{}}\nprotocol bgp up1 {{\n  local {bird} port 1179 as 65000;\n  neighbor {us} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  {tables}\n}}\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn withdraw_latency() {
    let net = Loopback::fresh();
    let bird = Bird::start(&passive_bird(
        net,
        net.host(1),
        "ipv4 { import all; export none; };",
    ));
    let dir = TempDir::new("bench-withdraw");
    let (_speaker, endpoint) = start_speaker(&dir, net.host(1), net.host(2), "", "");
    let mut client = connect(&endpoint).await;
    wait_established(&mut client).await;
    let mut ctl = BirdCtl::connect(&bird).expect("bird control socket");
    let prefix: IpNet = "198.51.100.0/24".parse().expect("prefix");
    let mut samples = Vec::with_capacity(WITHDRAW_TRIALS);
    for _ in 0..WITHDRAW_TRIALS {
        let announce = Op::Announce {
            prefixes: vec![prefix],
            attrs: RouteAttrs::default(),
            service: None,
            lease_ms: None,
        };
        client.call(announce).await.expect("announce");
        wait_for(Duration::from_secs(10), || {
            ctl.has_route("198.51.100.0/24").then_some(())
        })
        .expect("route at BIRD");
        let t0 = Instant::now();
        client
            .call(Op::Withdraw {
                prefixes: vec![prefix],
            })
            .await
            .expect("withdraw");
        while ctl.has_route("198.51.100.0/24") {}
        samples.push(t0.elapsed());
    }
    samples.sort();
    println!(
        "1. withdraw latency, control API -> route gone at BIRD ({WITHDRAW_TRIALS} trials): p50 {}  p95 {}  max {}",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.95)),
        ms(*samples.last().expect("samples"))
    );
}

fn prefixes(count: u32) -> Vec<IpNet> {
    (0..count)
        .map(|i| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x1000_0000 + (i << 8)), 24).expect("valid /24"))
        })
        .collect()
}

async fn announce_many() {
    // Ours, live: one control-API call with every prefix, until BIRD has them all.
    let net = Loopback::fresh();
    let bird = Bird::start(&passive_bird(
        net,
        net.host(1),
        "ipv4 { import all; export none; };",
    ));
    let dir = TempDir::new("bench-announce");
    let (_speaker, endpoint) = start_speaker(&dir, net.host(1), net.host(2), "", "");
    let mut client = connect(&endpoint).await;
    wait_established(&mut client).await;
    let mut ctl = BirdCtl::connect(&bird).expect("bird control socket");
    let t0 = Instant::now();
    let announce = Op::Announce {
        prefixes: prefixes(ANNOUNCE_PREFIXES),
        attrs: RouteAttrs::default(),
        service: None,
        lease_ms: None,
    };
    client.call(announce).await.expect("announce");
    wait_count(&mut ctl, t0);
    let live = t0.elapsed();

    // Ours and GoBGP with the table already loaded, to a BIRD whose session is then enabled:
    // the same initial transfer for both. GoBGP learns the table from another BIRD, because
    // its bulk loaders (MRT inject, gRPC streams) are not usable from here.
    ctl.query("disable up1").expect("disable");
    wait_for(Duration::from_secs(10), || {
        (ctl.route_count("master4") == 0).then_some(())
    })
    .expect("BIRD flushed the routes");
    ctl.query("enable up1").expect("enable");
    let t0 = wait_session(&mut ctl);
    wait_count(&mut ctl, t0);
    let ours = t0.elapsed();

    let net = Loopback::fresh();
    let (source_addr, gobgp_addr, sink_addr) = (net.host(5), net.host(4), net.host(2));
    let _source = Bird::start(&source_bird(source_addr, gobgp_addr, ANNOUNCE_PREFIXES));
    let sink = Bird::start(&format!(
        "router id {sink_addr};\nprotocol device {{}}\nprotocol bgp up1 {{\n  local {sink_addr} port 1179 as 65000;\n  neighbor {gobgp_addr} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  disabled;\n  ipv4 {{ import all; export none; }};\n}}\n"
    ));
    let gobgp = GoBgp::start(
        &gobgp_config(gobgp_addr, sink_addr, source_addr),
        (gobgp_addr, 50051),
    );
    let loaded = wait_for(Duration::from_secs(300), || {
        gobgp
            .cli(&["global", "rib", "summary"])
            .contains(&format!("Destination: {ANNOUNCE_PREFIXES}"))
            .then_some(())
    });
    loaded.unwrap_or_else(|| {
        panic!(
            "GoBGP did not learn the table: {}",
            gobgp.cli(&["neighbor"])
        )
    });
    let mut ctl = BirdCtl::connect(&sink).expect("bird control socket");
    ctl.query("enable up1").expect("enable");
    let t0 = wait_session(&mut ctl);
    wait_count(&mut ctl, t0);
    let theirs = t0.elapsed();
    println!(
        "2. {ANNOUNCE_PREFIXES} prefixes to BIRD: live (one control-API call -> all at BIRD) {:.2} s; \
         initial transfer from session up: bgp-speaker {:.2} s, GoBGP {:.2} s -> GoBGP/ours = {:.2}x",
        live.as_secs_f64(),
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Spins until BIRD's session is Established: the start of the transfer (reconnect back-off
/// is not what is measured).
fn wait_session(ctl: &mut BirdCtl) -> Instant {
    let started = Instant::now();
    while !ctl
        .query("show protocols up1")
        .is_ok_and(|r| r.contains("Established"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "session did not come up"
        );
    }
    Instant::now()
}

fn wait_count(ctl: &mut BirdCtl, t0: Instant) {
    while ctl.route_count("master4") < u64::from(ANNOUNCE_PREFIXES) {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "BIRD did not get the table"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// GoBGP (AS 65001) learning from `source` and announcing to `sink` (both BIRD).
fn gobgp_config(us: Ipv4Addr, sink: Ipv4Addr, source: Ipv4Addr) -> String {
    let neighbor = |addr: Ipv4Addr, asn: u32| {
        format!(
            r#"[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {asn}
  [neighbors.transport.config]
    remote-port = 1179
    local-address = "{us}"
  [neighbors.timers.config]
    connect-retry = 1
  [neighbors.ebgp-multihop.config]
    enabled = true
    multihop-ttl = 2
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#
        )
    };
    format!(
        "[global.config]\n  as = 65001\n  router-id = \"{us}\"\n  port = -1\n{}{}",
        neighbor(source, 65010),
        neighbor(sink, 65000)
    )
}

/// BIRD (AS 65010) exporting `count` static /24s to `neighbor` (AS 65001).
fn source_bird(bird: Ipv4Addr, neighbor: Ipv4Addr, count: u32) -> String {
    testkit::bird::flood_table(bird, count)
        + &format!(
            "protocol bgp feed {{\n  local {bird} port 1179 as 65010;\n  neighbor {neighbor} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  ipv4 {{ import none; export all; next hop address 192.0.2.1; }};\n}}\n"
        )
}

/// BIRD exporting RECEIVE_ROUTES static routes to `neighbor`.
fn flooding_bird(bird: Ipv4Addr, neighbor: Ipv4Addr, neighbor_as: u32) -> String {
    testkit::bird::flood_table(bird, RECEIVE_ROUTES)
        + &format!(
            "protocol bgp down1 {{\n  local {bird} port 1179 as 65000;\n  neighbor {neighbor} port 1179 as {neighbor_as};\n  multihop;\n  strict bind on;\n  connect retry time 1;\n  ipv4 {{ import none; export all; next hop self; }};\n}}\n"
        )
}

async fn receive_full_table() {
    // Ours, passive, import enabled.
    let net = Loopback::fresh();
    let dir = TempDir::new("bench-receive");
    let listen = format!(", listen = \"{}:1179\"", net.host(1));
    let import = "passive = true\nimport = { enabled = true, max_prefixes = 2000000 }";
    let (speaker, endpoint) = start_speaker(&dir, net.host(1), net.host(2), import, &listen);
    let mut client = connect(&endpoint).await;
    let _sender = Bird::start(&flooding_bird(net.host(2), net.host(1), 65001));
    let t0 = wait_established(&mut client).await;
    loop {
        if let Ok(Reply::Neighbors(peers)) = client.call(Op::Neighbors).await
            && peers
                .iter()
                .any(|p| p["prefixes_received"].as_u64() == Some(u64::from(RECEIVE_ROUTES)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ours = t0.elapsed();
    let ours_rss = testkit::process::memory_mib(speaker.pid(), true);

    // BIRD receiving the same table from the same kind of sender.
    let net = Loopback::fresh();
    let receiver_conf = format!(
        "router id {r};\nprotocol device {{}}\nprotocol bgp up1 {{\n  local {r} port 1179 as 65001;\n  neighbor {s} as 65000;\n  passive on;\n  multihop;\n  strict bind on;\n  ipv4 {{ import all; export none; }};\n}}\n",
        r = net.host(1),
        s = net.host(2)
    );
    let receiver = Bird::start(&receiver_conf);
    let mut ctl = BirdCtl::connect(&receiver).expect("bird control socket");
    let _sender = Bird::start(&flooding_bird(net.host(2), net.host(1), 65001));
    wait_for(Duration::from_secs(60), || {
        receiver.established("up1").then_some(())
    })
    .expect("BIRD-BIRD session");
    let t0 = Instant::now();
    while ctl.route_count("master4") < u64::from(RECEIVE_ROUTES) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let theirs = t0.elapsed();
    let theirs_rss = testkit::process::memory_mib(receiver.daemon.pid(), true);
    println!(
        "3. {RECEIVE_ROUTES} IPv4 routes received (import enabled): bgp-speaker {:.2} s, peak RSS {ours_rss:.0} MiB; BIRD {:.2} s, peak RSS {theirs_rss:.0} MiB -> time BIRD/ours = {:.2}x, memory ours/BIRD = {:.2}x",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64(),
        ours_rss / theirs_rss
    );
}
