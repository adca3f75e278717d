//! Failover timing with real processes on loopback: two stream nodes (built-in channel), the
//! bgp-speaker peered with BIRD, and healthd with an `hls` check at 500 ms, rise 2, fall 3 (the defaults).
//!
//! 1. node killed -> the node leaves the feed;
//! 2. every node killed -> the prefix is withdrawn at BIRD;
//! 3. stream frozen (HTTP still 200, ingest alive) on every node -> the prefix is withdrawn at
//!    BIRD (only the player-like probe can see it);
//! 4. ingest lost on every node (stall_timeout 500 ms) -> the prefix is withdrawn at BIRD;
//! 5. node stopped (SIGSTOP: a silent host) -> the node leaves the feed.
//!
//! Then the cost of the status streams' heartbeats on a node: its CPU with none open, then with
//! as many as it serves (16) at 50 ms.
//!
//! 6. the path between the speaker and its router goes silent (nftables drops everything in the
//!    router's network namespace, interfaces up) -> withdrawn at BIRD: BFD at 50 ms x 4 (the
//!    lab's) against the hold timer at its 3 s minimum, all a speaker without BFD (ExaBGP among
//!    them) has. Needs root; skipped otherwise.
//!
//! Then the same harness with ExaBGP's healthcheck in healthd's place, at its defaults
//! (interval 5 s, fast interval 1 s, rise 3, fall 3, plus `--withdraw-on-down`, without which it
//! only lowers the route's MED), checking a node's playlist with curl as an HTTP check does,
//! peered with a BIRD of its own: node killed -> withdrawn, and stream frozen -> withdrawn.
//!
//! Run: `cargo build --release --workspace && cargo bench -p healthd --bench failover` (needs
//! bird2, and exabgp for the comparison; the stream nodes and the speaker are the workspace's
//! release binaries). Prints p50/p95 over the trials.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::bird::{Bird, BirdCtl};
use testkit::exabgp::ExaBgp;
use testkit::net::Loopback;
use testkit::netns::{self, Namespace};
use testkit::process::{Daemon, TempDir, wait_for};

const TRIALS: usize = 20;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{PREFIX, binary, bird_config, deployment, feed_health};

fn report(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("{what}: no samples");
        return;
    }
    samples.sort();
    let percentile = |p| testkit::percentile(samples, p).unwrap_or_default();
    let (p50, p95) = (percentile(0.5), percentile(0.95));
    println!(
        "{what} ({} trials): p50 {:.0} ms, p95 {:.0} ms",
        samples.len(),
        p50.as_secs_f64() * 1000.0,
        p95.as_secs_f64() * 1000.0
    );
}

fn main() {
    // `cargo bench -p healthd --bench failover -- exabgp` runs the comparison alone,
    // `-- healthd` our part alone.
    if std::env::args().any(|a| a == "exabgp") {
        exabgp_comparison();
        return;
    }
    if std::env::args().any(|a| a == "link") {
        link_cut();
        return;
    }
    let ours_only = std::env::args().any(|a| a == "healthd");
    if testkit::find_program("bird").is_none()
        || !binary("streamnode").exists()
        || !binary("bgp-speaker").exists()
    {
        println!(
            "failover benchmark skipped: needs bird2 and the workspace binaries (cargo build --release --workspace)"
        );
        return;
    }
    let net = Loopback::fresh();
    let dir = TempDir::new("failover");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net, dir.path())).expect("deployment");
    let bird = Bird::start(&bird_config(net));
    let spawn = |name: &str, args: &[&str], log: &str| {
        let mut cmd = Command::new(binary(name));
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "warn");
        Daemon::spawn(name, cmd, &dir.path().join(log)).expect("spawn")
    };
    let mut nodes = [
        Some(spawn("streamnode", &["--node", "ams-1"], "n1.log")),
        Some(spawn("streamnode", &["--node", "ams-2"], "n2.log")),
    ];
    let _speaker = spawn("bgp-speaker", &[], "speaker.log");
    let _healthd = spawn("healthd", &[], "healthd.log");
    let feed = SocketAddr::from((net.host(1), 9180));
    let mut ctl = BirdCtl::connect(&bird).expect("birdc");
    let announced = |ctl: &mut BirdCtl| {
        wait_for(Duration::from_secs(30), || {
            ctl.has_route(PREFIX).then_some(())
        })
        .is_some()
    };
    assert!(announced(&mut ctl), "the prefix never appeared at BIRD");

    let (mut feed_change, mut killed, mut frozen) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ingest_lost, mut stopped) = (Vec::new(), Vec::new());
    let admin = |host: u8, path: &str| {
        testkit::http::post(SocketAddr::from((net.host(host), 8081)), path);
    };
    let all_healthy = || {
        wait_for(Duration::from_secs(30), || {
            ["ams-1", "ams-2"]
                .iter()
                .all(|n| feed_health(feed, n) == Some(true))
                .then_some(())
        })
        .is_some()
    };
    for trial in 0..TRIALS {
        // Each trial starts from a settled site: both nodes healthy in the feed.
        assert!(all_healthy(), "the nodes never became healthy");
        // 1 and 2: kill ams-1 (feed), then ams-2 (withdraw).
        let started = Instant::now();
        if let Some(mut n) = nodes[0].take() {
            n.signal("KILL");
            n.wait_exit(Duration::from_secs(5));
        }
        if wait_for(Duration::from_secs(10), || {
            (feed_health(feed, "ams-1") == Some(false)).then_some(())
        })
        .is_some()
        {
            feed_change.push(started.elapsed());
        }
        let started = Instant::now();
        if let Some(mut n) = nodes[1].take() {
            n.signal("KILL");
            n.wait_exit(Duration::from_secs(5));
        }
        if wait_for(Duration::from_secs(10), || {
            (!ctl.has_route(PREFIX)).then_some(())
        })
        .is_some()
        {
            killed.push(started.elapsed());
        }
        nodes = [
            Some(spawn(
                "streamnode",
                &["--node", "ams-1"],
                &format!("n1-{trial}.log"),
            )),
            Some(spawn(
                "streamnode",
                &["--node", "ams-2"],
                &format!("n2-{trial}.log"),
            )),
        ];
        assert!(
            announced(&mut ctl),
            "not announced again after the nodes came back"
        );
        assert!(all_healthy(), "the nodes never became healthy again");

        // 3: freeze both streams.
        let started = Instant::now();
        for host in [11, 12] {
            admin(host, "/freeze");
        }
        if wait_for(Duration::from_secs(15), || {
            (!ctl.has_route(PREFIX)).then_some(())
        })
        .is_some()
        {
            frozen.push(started.elapsed());
        }
        for host in [11, 12] {
            admin(host, "/unfreeze");
        }
        assert!(
            announced(&mut ctl),
            "not announced again after the streams resumed"
        );

        // 4: cut both nodes' ingest.
        assert!(all_healthy(), "the nodes never became healthy again");
        let started = Instant::now();
        for host in [11, 12] {
            admin(host, "/cut-ingest");
        }
        if wait_for(Duration::from_secs(15), || {
            (!ctl.has_route(PREFIX)).then_some(())
        })
        .is_some()
        {
            ingest_lost.push(started.elapsed());
        }
        for host in [11, 12] {
            admin(host, "/restore-ingest");
        }
        assert!(
            announced(&mut ctl),
            "not announced again after ingest came back"
        );

        // 5: stop ams-1, as a host that died without a word.
        assert!(all_healthy(), "the nodes never became healthy again");
        if let Some(n) = &nodes[0] {
            let started = Instant::now();
            n.signal("STOP");
            if wait_for(Duration::from_secs(10), || {
                (feed_health(feed, "ams-1") == Some(false)).then_some(())
            })
            .is_some()
            {
                stopped.push(started.elapsed());
            }
            n.signal("CONT");
        }
    }
    println!(
        "healthd failover (status streams at 50 ms x 6; hls check every 500 ms, fast re-probe 100 ms, rise 2, fall 3, 2 s segments)\n"
    );
    report("1. node killed -> feed change", &mut feed_change);
    report("2. every node killed -> withdrawn at BIRD", &mut killed);
    report(
        "3. every stream frozen (HTTP 200, ingest alive) -> withdrawn at BIRD",
        &mut frozen,
    );
    report(
        "4. ingest lost on every node (stall 500 ms) -> withdrawn at BIRD",
        &mut ingest_lost,
    );
    report("5. node stopped (silent) -> feed change", &mut stopped);
    assert!(all_healthy(), "the nodes never became healthy again");
    heartbeat_cost(&nodes, SocketAddr::from((net.host(11), 8080)));
    link_cut();
    if !ours_only {
        exabgp_comparison();
    }
}

/// The CPU a node spends on status streams: 10 s with only healthd's stream open, then 10 s
/// with every place the node grants taken by a stream at 50 ms.
fn heartbeat_cost(nodes: &[Option<Daemon>], addr: SocketAddr) {
    let Some(node) = nodes[0].as_ref() else {
        return;
    };
    let window = Duration::from_secs(10);
    let cpu = || testkit::process::cpu_seconds(node.pid());
    let before = cpu();
    std::thread::sleep(window);
    let base = cpu() - before;
    // As many as the node grants.
    let streams: Vec<_> = (0..64)
        .map_while(|_| {
            testkit::http::EventStream::open(addr, "/status/stream?heartbeat_ms=50")
                .filter(|s| s.status == 200)
        })
        .collect();
    let count = streams.len();
    let before = cpu();
    let counting: Vec<_> = streams
        .into_iter()
        .map(|s| std::thread::spawn(move || s.during(window).len()))
        .collect();
    let heartbeats: usize = counting.into_iter().map(|c| c.join().unwrap_or(0)).sum();
    let loaded = cpu() - before;
    let per_stream = (loaded - base).max(0.0) / count.max(1) as f64 / window.as_secs_f64();
    println!(
        "\nstatus stream cost on a node (release build, built-in channel): {:.2}% of a core with healthd's stream, {:.2}% with {} more at 50 ms ({} events); per stream {:.3}% of a core, {:.1} us per heartbeat",
        base / window.as_secs_f64() * 100.0,
        loaded / window.as_secs_f64() * 100.0,
        count,
        heartbeats,
        per_stream * 100.0,
        (loaded - base).max(0.0) / heartbeats.max(1) as f64 * 1e6,
    );
}

/// ExaBGP's healthcheck against one stream node, announcing a /32 to BIRD.
/// 6: a silent path between the speaker and BIRD, each in a network namespace of its own.
fn link_cut() {
    if !testkit::is_root()
        || ["bird", "nft", "ip"]
            .iter()
            .any(|p| testkit::find_program(p).is_none())
    {
        println!("\n6. link cut skipped: needs root, bird2, nftables and iproute2");
        return;
    }
    println!();
    let modes: [(&str, Option<&str>, usize); 2] = [
        (
            "BFD 50 ms x 4, hold 9 s",
            Some("bfd = { interval = \"50ms\", multiplier = 4 }"),
            TRIALS,
        ),
        ("no BFD, hold 3 s", None, 5),
    ];
    for (label, bfd, trials) in modes {
        let (us, router) = (Namespace::new("fo-us"), Namespace::new("fo-bird"));
        netns::link(&us, "10.205.0.1/30", &router, "10.205.0.2/30", "up1");
        let hold = if bfd.is_some() { 9 } else { 3 };
        let bird_bfd = if bfd.is_some() {
            "protocol bfd {\n  interface \"*\" { min rx interval 50 ms; min tx interval 50 ms; multiplier 4; };\n}\n"
        } else {
            ""
        };
        let bird = Bird::start_in(
            Some(&router),
            &format!(
                "router id 10.205.0.2;\nprotocol device {{}}\n{bird_bfd}protocol bgp up1 {{\n  local 10.205.0.2 as 65000;\n  neighbor 10.205.0.1 as 65001;\n  hold time {hold};\n  error wait time 1, 2;\n  bfd {};\n  ipv4 {{ import all; export none; }};\n}}\n",
                if bfd.is_some() { "on" } else { "off" }
            ),
        );
        let dir = TempDir::new("failover-link");
        let config = dir.path().join("deploy.toml");
        std::fs::write(
            &config,
            format!(
                r#"[[sites]]
name = "ams"
country = "NL"
latitude = 52.37
longitude = 4.90
asn = 65001
router_id = "10.205.0.1"
speaker = {{ control = "unix:{sock}", admin = "10.205.0.1:9179", startup_hold = "0s" }}

[[sites.peers]]
name = "up1"
address = "10.205.0.2"
remote_asn = 65000
local_address = "10.205.0.1"
hold_time = {hold}
{bfd}

[[sites.nodes]]
name = "ams-1"
ipv4 = "10.205.0.1"
listen = "10.205.0.1:8080"
capacity_mbps = 1000
services = ["live"]

[[services]]
name = "live"
hostnames = ["live.tv.example.net"]
prefixes = ["{PREFIX}"]
check = "stream"

[[checks]]
name = "stream"
kind = "hls"
"#,
                sock = dir.path().join("speaker.sock").display(),
                bfd = bfd.unwrap_or_default(),
            ),
        )
        .expect("deployment");
        let mut cmd = us.command(binary("bgp-speaker"));
        cmd.arg("--config").arg(&config).env("RUST_LOG", "warn");
        let _speaker =
            Daemon::spawn("bgp-speaker", cmd, &dir.path().join("speaker.log")).expect("spawn");
        let cli = |args: &[&str]| {
            Command::new(binary("bgp-speaker"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let ready = wait_for(Duration::from_secs(10), || {
            cli(&["announce", PREFIX]).then_some(())
        });
        assert!(
            ready.is_some(),
            "the speaker never took the route:\n{}",
            std::fs::read_to_string(dir.path().join("speaker.log")).unwrap_or_default()
        );
        let mut ctl = BirdCtl::connect(&bird).expect("birdc");
        let mut cut = Vec::new();
        for _ in 0..trials {
            let back = wait_for(Duration::from_secs(30), || {
                ctl.has_route(PREFIX).then_some(())
            });
            assert!(
                back.is_some(),
                "no route at BIRD ({label}):\n{}",
                bird.daemon.log_text()
            );
            // Let BFD come up too before the next cut.
            std::thread::sleep(Duration::from_secs(1));
            let started = Instant::now();
            router.silence();
            if wait_for(Duration::from_secs(15), || {
                (!ctl.has_route(PREFIX)).then_some(())
            })
            .is_some()
            {
                cut.push(started.elapsed());
            }
            router.unsilence();
        }
        report(
            &format!("6. link silent -> withdrawn at BIRD, {label}"),
            &mut cut,
        );
    }
}

fn exabgp_comparison() {
    let python = Path::new("/usr/bin/python3");
    let has_module = Command::new(python)
        .args(["-c", "import exabgp.application.healthcheck"])
        .output()
        .is_ok_and(|o| o.status.success());
    if testkit::find_program("exabgp").is_none()
        || !has_module
        || testkit::find_program("curl").is_none()
    {
        println!("\nExaBGP healthcheck comparison skipped: needs exabgp (Debian package) and curl");
        return;
    }
    let net = Loopback::fresh();
    let dir = TempDir::new("failover-exabgp");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net, dir.path())).expect("deployment");
    let (bird_ip, exa_ip, node) = (net.host(2), net.host(3), net.host(11));
    // Not a loopback address: BIRD refuses routes into 127.0.0.0/8.
    let vip = "198.51.100.1";
    let route = format!("{vip}/32");
    // BIRD connects to ExaBGP, which listens on its own address.
    let bird = Bird::start(&format!(
        "router id {bird_ip};\nprotocol device {{}}\nprotocol bgp exa {{\n  local {bird_ip} as 65000;\n  neighbor {exa_ip} port 1179 as 65002;\n  multihop;\n  ipv4 {{ import all; export none; }};\n}}\n"
    ));
    let check = format!("curl -sf -o /dev/null --max-time 2 http://{node}:8080/news/index.m3u8");
    let neighbors = format!(
        "process watch {{\n  run {} -m exabgp healthcheck --no-syslog --no-ip-setup --withdraw-on-down --ip {vip} --next-hop {exa_ip} --cmd \"{check}\";\n  encoder text;\n}}\nneighbor {bird_ip} {{\n  router-id {exa_ip};\n  local-address {exa_ip};\n  local-as 65002;\n  peer-as 65000;\n  passive;\n  family {{ ipv4 unicast; }}\n  api {{ processes [ watch ]; }}\n}}\n",
        python.display()
    );
    let exa = ExaBgp::start(&neighbors, exa_ip, 1179);
    let spawn_node = |log: &str| {
        let mut cmd = Command::new(binary("streamnode"));
        cmd.arg("--config")
            .arg(&config)
            .args(["--node", "ams-1"])
            .env("RUST_LOG", "warn");
        Daemon::spawn("streamnode", cmd, &dir.path().join(log)).expect("spawn")
    };
    let mut ctl = BirdCtl::connect(&bird).expect("birdc");
    let mut n = spawn_node("exa-n.log");
    // Rise 3 at the 5 s interval: about 15 s to announce.
    let announced = |ctl: &mut BirdCtl| {
        wait_for(Duration::from_secs(60), || {
            ctl.has_route(&route).then_some(())
        })
        .is_some()
    };
    assert!(
        announced(&mut ctl),
        "ExaBGP never announced {route}:\n{}\n{}",
        exa.daemon.log_text(),
        bird.cli("show route all")
    );
    let (mut killed, mut frozen_missed) = (Vec::new(), 0);
    for trial in 0..TRIALS {
        let started = Instant::now();
        n.signal("KILL");
        n.wait_exit(Duration::from_secs(5));
        if wait_for(Duration::from_secs(60), || {
            (!ctl.has_route(&route)).then_some(())
        })
        .is_some()
        {
            killed.push(started.elapsed());
        }
        n = spawn_node(&format!("exa-n-{trial}.log"));
        assert!(announced(&mut ctl), "ExaBGP did not announce again");
    }
    // A frozen stream still answers 200: an HTTP check cannot see it.
    let admin = SocketAddr::from((node, 8081));
    for _ in 0..3 {
        testkit::http::post(admin, "/freeze");
        let gone = wait_for(Duration::from_secs(20), || {
            (!ctl.has_route(&route)).then_some(())
        });
        if gone.is_none() {
            frozen_missed += 1;
        }
        testkit::http::post(admin, "/unfreeze");
        assert!(
            announced(&mut ctl),
            "ExaBGP did not announce again after the freeze"
        );
    }
    println!(
        "\nExaBGP {} healthcheck at its defaults (interval 5 s, fast interval 1 s, rise/fall 3, withdraw on down), curl on the playlist\n",
        exabgp_version()
    );
    report("2'. node killed -> withdrawn at BIRD", &mut killed);
    println!(
        "3'. stream frozen (HTTP 200) -> withdrawn at BIRD: not withdrawn within 20 s in {frozen_missed} of 3 trials"
    );
}

fn exabgp_version() -> String {
    Command::new("exabgp")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("ExaBGP : ").map(str::to_string))
                .unwrap_or_default()
        })
        .unwrap_or_default()
}
