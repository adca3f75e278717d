//! The systemd units of `ops/systemd/` pass `systemd-analyze verify` (their directives exist
//! and parse, their commands are executable), run for one instance each with the workspace's
//! binaries in place of `/usr/bin`; and every daemon is `Type=notify` with a watchdog,
//! hardened, with no capability beyond what it needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::process::TempDir;

fn units() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/systemd")
}

/// A workspace binary next to lab's (built by `cargo test --workspace`).
fn binary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_lab")).with_file_name(name)
}

#[test]
fn the_units_verify_and_are_hardened() {
    let test = "the_units_verify_and_are_hardened";
    if testkit::require(test, &[("systemd-analyze", "systemd")], false).is_none() {
        return;
    }
    let dir = TempDir::new("units");
    let daemons = [
        ("geodns.service", "geodns.service", "geodns"),
        (
            "bgp-speaker@.service",
            "bgp-speaker@ams.service",
            "bgp-speaker",
        ),
        ("healthd@.service", "healthd@ams.service", "healthd"),
        (
            "streamnode@.service",
            "streamnode@ams-1.service",
            "streamnode",
        ),
    ];
    let mut instances = Vec::new();
    for (file, instance, daemon) in daemons {
        let text = std::fs::read_to_string(units().join(file)).unwrap();
        for line in [
            "Type=notify",
            "WatchdogSec=10s",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "User=anycast-iptv",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(text.lines().any(|l| l == line), "{file}: no {line}");
        }
        assert!(
            text.contains(&format!(
                "ExecStartPre=/usr/bin/{daemon} --config /etc/anycast-iptv/deploy.toml check-config"
            )),
            "{file}: the deployment file is checked before the start"
        );
        let bin = binary(daemon);
        assert!(bin.exists(), "{} is not built", bin.display());
        let local = text.replace(&format!("/usr/bin/{daemon}"), &bin.display().to_string());
        std::fs::write(dir.path().join(file), local).unwrap();
        instances.push(dir.path().join(instance));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&instances)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    // healthd needs no capability; the others only to bind low ports (and streamnode to bind
    // ingest to an interface).
    let caps = |file: &str| {
        std::fs::read_to_string(units().join(file))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet=").map(str::to_owned))
            .unwrap()
    };
    assert_eq!(caps("healthd@.service"), "");
    assert_eq!(caps("geodns.service"), "CAP_NET_BIND_SERVICE");
    assert_eq!(caps("bgp-speaker@.service"), "CAP_NET_BIND_SERVICE");
    assert_eq!(
        caps("streamnode@.service"),
        "CAP_NET_BIND_SERVICE CAP_NET_RAW"
    );
}
