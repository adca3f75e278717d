//! The site both the stream test and the failover benchmark run: two stream nodes with the
//! built-in channel, the bgp-speaker peered with BIRD, healthd with an `hls` check at 500 ms
//! (fast re-probe 100 ms, rise 2, fall 3: the defaults). The site block is shared with the
//! withdraw test; each test crate uses a part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use testkit::net::Loopback;

pub const PREFIX: &str = "198.51.100.0/24";

/// A workspace binary next to healthd's (built by `cargo test/bench --workspace`).
pub fn binary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_healthd")).with_file_name(name)
}

/// Starts `name` (a workspace binary) on the deployment at `config`, its log in `dir`.
pub fn spawn_in(dir: &Path, config: &Path, name: &str, args: &[&str]) -> testkit::process::Daemon {
    let path = binary(name);
    assert!(
        path.exists(),
        "{} is missing: test the whole workspace (cargo test --workspace)",
        path.display()
    );
    let mut cmd = std::process::Command::new(path);
    cmd.arg("--config").arg(config).args(args);
    let log = dir.join(format!("{name}-{}.log", args.last().unwrap_or(&"")));
    testkit::process::Daemon::spawn(name, cmd, &log).expect("start a workspace binary")
}

/// BIRD at `.2`, passive, importing what the speaker at `.1` announces.
pub fn bird_config(net: Loopback) -> String {
    format!(
        "router id {b};\nprotocol device {{}}\nprotocol bgp up1 {{\n  local {b} port 1179 as 65000;\n  neighbor {us} as 65001;\n  passive on;\n  multihop;\n  strict bind on;\n  ipv4 {{ import all; export none; }};\n}}\n",
        b = net.host(2),
        us = net.host(1)
    )
}

/// Site `ams` with its speaker peered with BIRD at `.2`: the `[[sites]]` and `[[sites.peers]]`
/// tables every healthd test starts from, followed by the caller's nodes, services and checks.
pub fn site(net: Loopback, dir: &Path) -> String {
    format!(
        r#"[[sites]]
name = "ams"
country = "NL"
latitude = 52.37
longitude = 4.90
asn = 65001
router_id = "10.0.0.1"
speaker = {{ control = "unix:{sock}", admin = "{us}:9179", startup_hold = "0s" }}
healthd = {{ feed = "{us}:9180", admin = "{us}:9181", lease = "2s" }}

[[sites.peers]]
name = "bird"
address = "{bird}"
remote_asn = 65000
port = 1179
local_address = "{us}"

"#,
        sock = dir.join("speaker.sock").display(),
        us = net.host(1),
        bird = net.host(2),
    )
}

/// The deployment file: site `ams`, stream nodes `ams-1` (.11) and `ams-2` (.12).
pub fn deployment(net: Loopback, dir: &Path) -> String {
    let node = |name: &str, host: u8| {
        let ip = net.host(host);
        format!(
            "[[sites.nodes]]\nname = \"{name}\"\nipv4 = \"{ip}\"\nlisten = \"{ip}:8080\"\nadmin = \"{ip}:8081\"\nfault_injection = true\ncapacity_mbps = 1000\nservices = [\"live\"]\n\n"
        )
    };
    format!(
        r#"{site}{n1}{n2}[[services]]
name = "live"
hostnames = ["live.tv.example.net"]
prefixes = ["{PREFIX}"]
check = "stream"
channels = ["news"]

[[checks]]
name = "stream"
kind = "hls"
interval = "500ms"
timeout = "400ms"
fast_interval = "100ms"
rise = 2
fall = 3

[[channels]]
name = "news"
source = "builtin"
"#,
        site = site(net, dir),
        n1 = node("ams-1", 11),
        n2 = node("ams-2", 12),
    )
}

/// Whether `node` is healthy in the site feed at `addr`.
pub fn feed_health(addr: SocketAddr, node: &str) -> Option<bool> {
    let (200, body) = testkit::http::get(addr, "/feed")? else {
        return None;
    };
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["healthy"].as_bool())
}
