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
