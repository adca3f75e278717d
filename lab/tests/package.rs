//! The Debian package (`scripts/package.sh` builds it with `cargo deb`), installed on this
//! machine as an operator would: the system user, the deployment file in `/etc` readable by it
//! only, the binaries and the units; then geodns and a stream node started as the unit does
//! (as the user, with the packaged configuration, readiness told to a `NOTIFY_SOCKET`), serving,
//! and stopped cleanly; then the package purged. Needs root (it installs a package).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::process::{Daemon, TempDir, wait_for};

const PACKAGE: &str = "anycast-iptv";
const CONFIG: &str = "/etc/anycast-iptv/deploy.toml";
const PROGRAMS: [(&str, &str); 4] = [
    ("dpkg", "dpkg"),
    ("runuser", "util-linux"),
    ("setpriv", "util-linux"),
    ("adduser", "adduser"),
];

/// The newest package `scripts/package.sh` built.
fn built_package() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{PACKAGE}_")) && n.ends_with(".deb"))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}:\n{text}");
    text
}

/// Runs `unit`'s daemon as the unit would (its user, its arguments); waits for READY=1.
fn start(dir: &Path, name: &str, args: &[&str]) -> (Daemon, UnixDatagram) {
    let socket = dir.join(format!("{name}.notify"));
    let systemd = UnixDatagram::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // setpriv execs the daemon as the user (runuser would stay its parent and take signals).
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={PACKAGE}"),
        &format!("--regid={PACKAGE}"),
        "--init-groups",
        "--",
    ])
    .args(args)
    .env("NOTIFY_SOCKET", &socket);
    let daemon = Daemon::spawn(name, cmd, &dir.join(format!("{name}.log"))).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = systemd
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{name} never said READY=1 ({e}):\n{}", daemon.log_text()));
        if &buf[..n] == b"READY=1" {
            break;
        }
    }
    (daemon, systemd)
}

/// SIGTERM, as `systemctl stop` sends it: STOPPING=1 and a clean exit.
fn stop(mut daemon: Daemon, systemd: UnixDatagram, name: &str) {
    daemon.signal("TERM");
    let mut buf = [0u8; 256];
    let mut said = Vec::new();
    while let Ok(n) = systemd.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if said.last().is_some_and(|s| s == "STOPPING=1") {
            break;
        }
    }
    assert!(said.iter().any(|s| s == "STOPPING=1"), "{name}: {said:?}");
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{name}:\n{}",
        daemon.log_text()
    );
}

#[test]
fn the_package_installs_a_user_config_and_units_and_its_daemons_start_as_the_units_run_them() {
    let test =
        "the_package_installs_a_user_config_and_units_and_its_daemons_start_as_the_units_run_them";
    if testkit::require(test, &PROGRAMS, true).is_none() {
        return;
    }
    let Some(deb) = built_package() else {
        let reason = "no package in target/debian: run scripts/package.sh first";
        assert!(!testkit::peers_required(), "{test}: {reason}");
        println!("SKIPPED {test}: {reason}");
        return;
    };
    // The test purges what it installs: never an operator's own installation.
    let present = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| {
            // "install ok installed", "deinstall ok config-files" (its configuration kept), ...
            let status = String::from_utf8_lossy(&o.stdout).into_owned();
            status
                .split_whitespace()
                .last()
                .is_some_and(|s| s != "not-installed")
        });
    if present {
        let reason =
            format!("{PACKAGE} is installed on this machine; the test would replace and purge it");
        assert!(!testkit::peers_required(), "{test}: {reason}");
        println!("SKIPPED {test}: {reason}");
        return;
    }
    let info = run("dpkg-deb", &["--info", deb.to_str().unwrap()]);
    assert!(info.contains(&format!("Package: {PACKAGE}")), "{info}");
    let contents = run("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    for path in [
        "./usr/bin/geodns",
        "./usr/bin/healthd",
        "./usr/bin/bgp-speaker",
        "./usr/bin/streamnode",
        "./lib/systemd/system/geodns.service",
        "./lib/systemd/system/healthd@.service",
        "./lib/systemd/system/bgp-speaker@.service",
        "./lib/systemd/system/streamnode@.service",
        "./etc/anycast-iptv/deploy.toml",
        "./usr/share/doc/anycast-iptv/RUNBOOK.md",
        "./usr/share/anycast-iptv/prometheus/alerts.yml",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    run("dpkg", &["--install", deb.to_str().unwrap()]);
    let installed = std::panic::catch_unwind(|| {
        // The user and the deployment file's owner and mode (it holds tokens).
        let passwd = run("getent", &["passwd", PACKAGE]);
        assert!(passwd.contains("/usr/sbin/nologin"), "{passwd}");
        let meta = std::fs::metadata(CONFIG).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640, "{CONFIG} mode");
        assert_eq!(meta.uid(), 0, "{CONFIG} owner");
        // The subscriber token key the example names: made on install, this host's own.
        let key = Path::new(CONFIG).with_file_name("subscribers.key");
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid()),
            (0o640, 0),
            "{}",
            key.display()
        );
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(
            text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
            "{text:?}"
        );
        let status = run("dpkg-query", &["--status", PACKAGE]);
        assert!(
            status.contains("Conffiles:") && status.contains(CONFIG),
            "{status}"
        );
        let dir = TempDir::new("package");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

        // As the units run them: check-config first, then the daemon.
        run(
            "runuser",
            &[
                "-u",
                PACKAGE,
                "--",
                "/usr/bin/geodns",
                "--config",
                CONFIG,
                "check-config",
            ],
        );
        let (geodns, notify) = start(
            dir.path(),
            "geodns",
            &["/usr/bin/geodns", "--config", CONFIG],
        );
        let admin = "127.0.0.1:9153".parse().unwrap();
        let (code, _) = wait_for(Duration::from_secs(10), || {
            testkit::http::get(admin, "/healthz")
        })
        .expect("geodns's admin endpoint answers");
        assert_eq!(code, 200);
        let (code, page) = testkit::http::get(admin, "/console").unwrap();
        assert!(
            code == 200 && page.contains("Anycast control plane"),
            "{code}"
        );
        stop(geodns, notify, "geodns");

        let (node, notify) = start(
            dir.path(),
            "streamnode",
            &["/usr/bin/streamnode", "--config", CONFIG, "--node", "ams-1"],
        );
        let (code, _) = wait_for(Duration::from_secs(10), || {
            testkit::http::get("127.0.11.1:8080".parse().unwrap(), "/status")
        })
        .expect("the stream node answers");
        assert_eq!(code, 200);
        stop(node, notify, "streamnode");
    });
    run("dpkg", &["--purge", PACKAGE]);
    assert!(!Path::new(CONFIG).exists(), "purge leaves {CONFIG}");
    assert!(
        !Path::new(CONFIG).with_file_name("subscribers.key").exists(),
        "purge leaves the subscriber key"
    );
    if let Err(panic) = installed {
        std::panic::resume_unwind(panic);
    }
}
