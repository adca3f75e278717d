//! A bgp-speaker process under test, configured from a generated deployment file.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use testkit::process::{Daemon, TempDir, run, wait_for};

/// One upstream peer in the generated deployment.
pub struct PeerSpec {
    pub name: &'static str,
    pub address: Ipv4Addr,
    pub remote_asn: u32,
    pub port: u16,
    /// Extra TOML lines for the peer table.
    pub extra: String,
}

pub struct Speaker {
    pub daemon: Daemon,
    pub config: std::path::PathBuf,
    pub dir: TempDir,
}

pub const LOCAL_ASN: u32 = 65001;

/// The deployment file for one site whose speaker talks to `peers` from `local`.
pub fn deployment(
    local: Ipv4Addr,
    socket: &std::path::Path,
    peers: &[PeerSpec],
    speaker_extra: &str,
) -> String {
    let mut text = format!(
        r#"[[sites]]
name = "ams"
country = "NL"
latitude = 52.37
longitude = 4.90
asn = {LOCAL_ASN}
router_id = "10.0.0.1"
speaker = {{ control = "unix:{}", admin = "{local}:9179"{speaker_extra} }}
"#,
        socket.display()
    );
    for p in peers {
        text.push_str(&format!(
            "\n[[sites.peers]]\nname = \"{}\"\naddress = \"{}\"\nremote_asn = {}\nport = {}\nlocal_address = \"{local}\"\nnext_hop_v6 = \"2001:db8::1\"\n{}\n",
            p.name, p.address, p.remote_asn, p.port, p.extra
        ));
    }
    text.push_str(
        r#"
[[sites.nodes]]
name = "ams-1"
ipv4 = "127.0.1.1"
listen = "127.0.1.1:8080"
capacity_mbps = 1000
services = ["live"]

[[services]]
name = "live"
hostnames = ["live.tv.example.net"]
prefixes = ["198.51.100.0/24", "2001:db8:100::/48"]
check = "stream"

[[checks]]
name = "stream"
kind = "hls"
"#,
    );
    text
}

impl Speaker {
    /// Starts bgp-speaker on the given deployment text.
    pub fn start(deployment_text: &str) -> Self {
        let dir = TempDir::new("speaker");
        let config = dir.path().join("deploy.toml");
        std::fs::write(&config, deployment_text).expect("write deployment");
        Self::start_with(dir, config)
    }

    pub fn start_with(dir: TempDir, config: std::path::PathBuf) -> Self {
        Self::start_in(None, dir, config)
    }

    /// [`Speaker::start_with`] inside a network namespace of the test's.
    pub fn start_in(
        namespace: Option<&testkit::netns::Namespace>,
        dir: TempDir,
        config: std::path::PathBuf,
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_bgp-speaker");
        let mut cmd = match namespace {
            Some(ns) => ns.command(binary),
            None => Command::new(binary),
        };
        cmd.arg("--config").arg(&config).env("RUST_LOG", "debug");
        let log = dir.path().join(format!(
            "speaker-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let daemon = Daemon::spawn("bgp-speaker", cmd, &log).expect("start bgp-speaker");
        let speaker = Self {
            daemon,
            config,
            dir,
        };
        let up = wait_for(Duration::from_secs(10), || {
            speaker.cli(&["show", "neighbors"]).0.then_some(())
        });
        assert!(
            up.is_some(),
            "bgp-speaker did not start:\n{}",
            speaker.daemon.log_text()
        );
        speaker
    }

    /// Kills the process without a goodbye (as a crash would) and starts it again.
    pub fn crash_and_restart(&mut self) {
        self.daemon.signal("KILL");
        self.daemon.wait_exit(Duration::from_secs(5));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bgp-speaker"));
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "debug");
        let log = self.dir.path().join("speaker-restarted.log");
        self.daemon = Daemon::spawn("bgp-speaker", cmd, &log).expect("restart bgp-speaker");
        let up = wait_for(Duration::from_secs(10), || {
            self.cli(&["show", "neighbors"]).0.then_some(())
        });
        assert!(
            up.is_some(),
            "bgp-speaker did not restart:\n{}",
            self.daemon.log_text()
        );
    }

    /// Runs the CLI against this speaker; returns (success, stdout + stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bgp-speaker"));
        cmd.arg("--config").arg(&self.config).args(args);
        match run(cmd, Duration::from_secs(10)) {
            Ok(out) => (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// The neighbors as JSON.
    pub fn neighbors(&self) -> Vec<serde_json::Value> {
        let (_, out) = self.cli(&["--json", "show", "neighbors"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.get("neighbors").and_then(|n| n.as_array()).cloned())
            .unwrap_or_default()
    }

    pub fn peer_state(&self, name: &str) -> String {
        self.neighbors()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> bool {
        wait_for(timeout, || (self.peer_state(name) == state).then_some(())).is_some()
    }
}

/// Polls until BIRD has (or no longer has) a route.
pub fn wait_route(
    bird: &testkit::bird::Bird,
    prefix: &str,
    present: bool,
    timeout: Duration,
) -> Option<String> {
    wait_for(timeout, || {
        let route = bird.route(prefix);
        match (present, route) {
            (true, Some(r)) => Some(r),
            (false, None) => Some(String::new()),
            _ => None,
        }
    })
}

/// BIRD at `.2`, passive, keeping our routes through a graceful restart (RFC 4724).
pub fn graceful_bird(net: testkit::net::Loopback) -> String {
    let (us, bird) = (net.host(1), net.host(2));
    format!(
        "router id {bird};\nprotocol device {{}}\nprotocol bgp up1 {{\n  local {bird} port 1179 as 65000;\n  neighbor {us} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  hold time 9;\n  graceful restart on;\n  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n"
    )
}

/// FRR at `.3`, passive, helping our graceful restart.
pub fn graceful_frr(net: testkit::net::Loopback) -> String {
    let (us, frr) = (net.host(1), net.host(3));
    format!(
        "frr defaults traditional\nhostname r1\nrouter bgp 65000\n bgp router-id {frr}\n no bgp ebgp-requires-policy\n no bgp network import-check\n bgp graceful-restart\n neighbor {us} remote-as 65001\n neighbor {us} ebgp-multihop 2\n neighbor {us} timers 3 9\n neighbor {us} timers connect 1\n neighbor {us} update-source {frr}\n neighbor {us} passive\n"
    )
}

/// The deployment of a speaker at `.1` peering with [`graceful_bird`] and [`graceful_frr`],
/// offering its sockets for replacement, written in `dir`; its path.
pub fn write_graceful_pair(
    net: testkit::net::Loopback,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let peers = [
        PeerSpec {
            name: "bird",
            address: net.host(2),
            remote_asn: 65000,
            port: 1179,
            extra: String::new(),
        },
        PeerSpec {
            name: "frr",
            address: net.host(3),
            remote_asn: 65000,
            port: 1179,
            // FRR rejects loopback next hops as martians.
            extra: "next_hop = \"192.0.2.1\"".into(),
        },
    ];
    let handover = dir.join("speaker.handover");
    let speaker_extra = format!(", handover = \"{}\"", handover.display());
    let config = dir.join("deploy.toml");
    std::fs::write(
        &config,
        deployment(
            net.host(1),
            &dir.join("speaker.sock"),
            &peers,
            &speaker_extra,
        ),
    )
    .expect("write deployment");
    config
}

/// Whether FRR has a path for an IPv4 prefix.
pub fn frr_has(frr: &testkit::frr::Frr, prefix: &str) -> bool {
    let out = frr.vtysh(&format!("show bgp ipv4 unicast {prefix} json"));
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["paths"].as_array().map(|p| !p.is_empty()))
        .unwrap_or(false)
}

/// A speaker at `.1` peering with [`graceful_bird`] and [`graceful_frr`], `announce`d prefixes
/// at both routers (the IPv4 ones at FRR) before it is returned.
pub struct GracefulPair {
    pub bird: std::sync::Arc<testkit::bird::Bird>,
    pub frr: std::sync::Arc<testkit::frr::Frr>,
    pub speaker: Speaker,
}

impl GracefulPair {
    pub fn start(label: &str, announce: &[&str]) -> Self {
        let net = testkit::net::Loopback::fresh();
        let bird = std::sync::Arc::new(testkit::bird::Bird::start(&graceful_bird(net)));
        let frr = std::sync::Arc::new(testkit::frr::Frr::start(
            &graceful_frr(net),
            net.host(3),
            1179,
        ));
        let dir = TempDir::new(label);
        let config = write_graceful_pair(net, dir.path());
        let speaker = Speaker::start_with(dir, config);
        let pair = Self { bird, frr, speaker };
        assert!(
            wait_for(Duration::from_secs(20), || pair.established().then_some(())).is_some(),
            "{}",
            pair.speaker.daemon.log_text()
        );
        let mut args = vec!["announce"];
        args.extend_from_slice(announce);
        assert!(pair.speaker.cli(&args).0 && pair.speaker.cli(&["synced"]).0);
        for prefix in announce {
            assert!(wait_for(Duration::from_secs(20), || pair.bird.route(prefix)).is_some());
            if !prefix.contains(':') {
                let at_frr = || frr_has(&pair.frr, prefix).then_some(());
                assert!(wait_for(Duration::from_secs(20), at_frr).is_some());
            }
        }
        pair
    }

    /// Both sessions Established, as the speaker answering the control socket says.
    pub fn established(&self) -> bool {
        self.speaker.peer_state("bird") == "Established"
            && self.speaker.peer_state("frr") == "Established"
    }

    /// Samples an IPv4 prefix at both routers until [`Sampling::finish`].
    pub fn sample(&self, prefix: &'static str) -> Sampling {
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let threads = [true, false]
            .into_iter()
            .map(|at_bird| {
                let (bird, frr, on) = (self.bird.clone(), self.frr.clone(), on.clone());
                std::thread::spawn(move || {
                    let (started, mut seen) = (std::time::Instant::now(), Sampled::default());
                    while on.load(std::sync::atomic::Ordering::Relaxed) {
                        let present = if at_bird {
                            bird.route(prefix).is_some()
                        } else {
                            frr_has(&frr, prefix)
                        };
                        seen.samples += 1;
                        if !present {
                            seen.missing_at_ms.push(started.elapsed().as_millis());
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    seen
                })
            })
            .collect();
        Sampling { on, threads }
    }
}

/// What one router showed of a prefix while sampled.
#[derive(Debug, Default)]
pub struct Sampled {
    pub samples: u32,
    /// When (from the start of sampling) the prefix was missing.
    pub missing_at_ms: Vec<u128>,
}

/// Sampling running at BIRD and FRR.
pub struct Sampling {
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Sampled>>,
}

impl Sampling {
    /// Stops sampling: what BIRD showed, then FRR.
    pub fn finish(self) -> (Sampled, Sampled) {
        self.on.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut seen = self.threads.into_iter().map(|t| t.join().expect("sampler"));
        let bird = seen.next().unwrap_or_default();
        (bird, seen.next().unwrap_or_default())
    }
}
