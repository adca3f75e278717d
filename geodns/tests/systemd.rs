//! geodns under systemd's `Type=notify`, as `ops/systemd/geodns.service` runs it: READY=1 once
//! it answers, WATCHDOG=1 every half `WatchdogSec` while it serves, STOPPING=1 on SIGTERM.
//! systemd is played by a Unix datagram socket named in `NOTIFY_SOCKET`.

mod common;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{example_on, write_geo_db};
use testkit::dnsload::{self, Load, Pace};
use testkit::net::Loopback;
use testkit::process::{Adopted, Daemon, TempDir};

/// The next notification within `timeout`.
fn next(systemd: &UnixDatagram, timeout: Duration) -> Option<String> {
    systemd.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    let n = systemd.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// geodns under a played systemd: the deployment `text(dns, admin, dir)` in a fresh directory,
/// `NOTIFY_SOCKET` bound by the test and a 400 ms watchdog. Returns the process, the socket
/// systemd listens on, the deployment file, the DNS address and the directory.
fn under_systemd(
    label: &str,
    text: impl Fn(SocketAddr, SocketAddr, &std::path::Path) -> String,
) -> (
    Daemon,
    UnixDatagram,
    std::path::PathBuf,
    SocketAddr,
    TempDir,
) {
    let dir = TempDir::new(label);
    write_geo_db(dir.path());
    let net = Loopback::fresh();
    let (dns, admin) = (
        SocketAddr::from((net.host(1), 5353)),
        SocketAddr::from((net.host(1), 9153)),
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, text(dns, admin, dir.path())).unwrap();
    let socket = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&socket).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000");
    let geodns = Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).unwrap();
    (geodns, systemd, config, dns, dir)
}

#[test]
fn systemd_hears_ready_once_it_answers_then_the_watchdog_then_stopping() {
    let (mut geodns, systemd, _config, dns, _dir) =
        under_systemd("geodns-systemd", |dns, admin, _| example_on(dns, admin));

    let ready = next(&systemd, Duration::from_secs(30));
    assert_eq!(ready.as_deref(), Some("READY=1"), "{}", geodns.log_text());
    // Ready means answering: a query sent now is answered.
    let probe = Load::new(
        dns,
        "live.tv.example.net.",
        Vec::new(),
        Pace::Rate(20),
        Duration::from_millis(200),
    );
    let report = dnsload::run(&probe).unwrap();
    assert!(report.sent > 0 && report.lost == 0, "{report}");

    // The watchdog every 200 ms.
    let started = Instant::now();
    let mut fed = 0;
    while started.elapsed() < Duration::from_secs(1) {
        match next(&systemd, Duration::from_millis(500)).as_deref() {
            Some("WATCHDOG=1") => fed += 1,
            other => panic!("expected WATCHDOG=1, got {other:?}"),
        }
    }
    assert!(fed >= 4, "fed {fed} times in a second");

    geodns.signal("TERM");
    let mut said = Vec::new();
    while let Some(m) = next(&systemd, Duration::from_secs(5)) {
        let stopping = m == "STOPPING=1";
        said.push(m);
        if stopping {
            break;
        }
    }
    assert_eq!(
        said.last().map(String::as_str),
        Some("STOPPING=1"),
        "{said:?}"
    );
    assert_eq!(geodns.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_replace_hands_systemd_the_new_process_which_feeds_the_watchdog() {
    let (mut old, systemd, config, _dns, _dir) =
        under_systemd("geodns-systemd-replace", |dns, admin, dir| {
            common::example_with_handover(dns, admin, &dir.join("geodns.handover"))
        });
    assert_eq!(
        next(&systemd, Duration::from_secs(30)).as_deref(),
        Some("READY=1"),
        "{}",
        old.log_text()
    );

    let mut replace = Command::new(env!("CARGO_BIN_EXE_geodns"));
    replace.arg("--config").arg(&config).arg("replace");
    let (new, said) = Adopted::replace(replace).unwrap_or_else(|e| panic!("{e}"));
    // The old process names the new one as the service's main process.
    let main_pid = format!("MAINPID={}", new.0);
    let mut heard = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) && !heard.contains(&main_pid) {
        if let Some(m) = next(&systemd, Duration::from_millis(500)) {
            heard.push(m);
        }
    }
    assert!(heard.contains(&main_pid), "{said}{heard:?}");
    // Once the old one is gone, the watchdog is still fed: by the new process.
    assert_eq!(old.wait_exit(Duration::from_secs(10)), Some(0));
    while next(&systemd, Duration::from_millis(50)).is_some() {}
    let started = Instant::now();
    let mut fed = 0;
    while started.elapsed() < Duration::from_secs(1) {
        if next(&systemd, Duration::from_millis(500)).as_deref() == Some("WATCHDOG=1") {
            fed += 1;
        }
    }
    assert!(
        fed >= 4,
        "the new process fed the watchdog {fed} times in a second"
    );
}
