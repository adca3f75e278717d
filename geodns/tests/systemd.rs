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
use testkit::process::{Daemon, TempDir};

/// The next notification within `timeout`.
fn next(systemd: &UnixDatagram, timeout: Duration) -> Option<String> {
    systemd.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    let n = systemd.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn systemd_hears_ready_once_it_answers_then_the_watchdog_then_stopping() {
    let dir = TempDir::new("geodns-systemd");
    write_geo_db(dir.path());
    let net = Loopback::fresh();
    let (dns, admin) = (
        SocketAddr::from((net.host(1), 5353)),
        SocketAddr::from((net.host(1), 9153)),
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, example_on(dns, admin)).unwrap();
    let socket = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&socket).unwrap();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000");
    let mut geodns = Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).unwrap();

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
