//! Replacing a running geodns under load (`geodns --take-over`): queries at a steady rate from
//! many client subnets while a replacement that fails (its admin address is taken) tries and
//! gives up, then a second geodns takes the first one's sockets and state over. Every query
//! must be answered (none lost, none REFUSED), the old process must go on after the failed
//! attempt and exit by itself once the new one serves, and an operator's override made on the
//! old one must hold on the new one from its first answer.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{UNLIMITED, answers, example_with_handover, write_geo_db};
use testkit::dnsload::{self, Load, Pace};
use testkit::net::Loopback;
use testkit::process::{Adopted, Daemon, TempDir, wait_for};

const NAME: &str = "live.tv.example.net.";

fn geodns(config: &std::path::Path, log: &std::path::Path, take_over: bool) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config").arg(config).args(["--threads", "2"]);
    if take_over {
        cmd.arg("--take-over");
    }
    Daemon::spawn("geodns", cmd, log).expect("start geodns")
}

/// A deployment in a fresh directory whose geodns offers its sockets at `handover`, on
/// addresses of its own.
struct Setup {
    dir: TempDir,
    net: Loopback,
    dns: SocketAddr,
    admin: SocketAddr,
    handover: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(label: &str, extra: &str) -> Self {
        let dir = TempDir::new(label);
        write_geo_db(dir.path());
        let net = Loopback::fresh();
        let dns = SocketAddr::from((net.host(1), 5353));
        let admin = SocketAddr::from((net.host(1), 9153));
        let handover = dir.path().join("geodns.handover");
        let config = dir.path().join("deploy.toml");
        std::fs::write(
            &config,
            example_with_handover(dns, admin, &handover) + extra,
        )
        .unwrap();
        Self {
            dir,
            net,
            dns,
            admin,
            handover,
            config,
        }
    }
}

#[test]
fn a_replacement_takes_over_without_a_lost_query() {
    let Setup {
        dir,
        net,
        dns,
        admin,
        handover,
        config,
    } = Setup::new("geodns-replace", UNLIMITED);
    let mut old = geodns(&config, &dir.path().join("old.log"), false);
    let subnets = dnsload::spread_v4(2000, 24, 7);
    let up = wait_for(Duration::from_secs(20), || answers(dns).then_some(()));
    assert!(up.is_some(), "geodns did not answer:\n{}", old.log_text());
    // An operator takes London out on the old process.
    let (status, body) = testkit::http::post(admin, "/admin-state?site=lon&state=down").unwrap();
    assert_eq!(status, 200, "{body}");

    let load = Load::new(dns, NAME, subnets, Pace::Rate(2000), Duration::from_secs(8));
    let loading = std::thread::spawn(move || dnsload::run(&load).expect("the load runs"));
    std::thread::sleep(Duration::from_millis(1000));
    // A replacement that receives the sockets, then cannot serve: the old one goes on.
    let blocker = std::net::TcpListener::bind((net.host(2), 9153)).unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&config).unwrap().replace(
            &format!("admin = \"{admin}\""),
            &format!("admin = \"{}\"", blocker.local_addr().unwrap()),
        ),
    )
    .unwrap();
    let mut failed = geodns(&broken, &dir.path().join("broken.log"), true);
    let failed_code = failed.wait_exit(Duration::from_secs(20));
    assert_ne!(failed_code, Some(0), "{}", failed.log_text());
    let kept = wait_for(Duration::from_secs(5), || {
        old.log_text()
            .contains("hand-over failed, still serving")
            .then_some(())
    });
    assert!(kept.is_some(), "{}", old.log_text());
    std::thread::sleep(Duration::from_millis(1000));
    let new = geodns(&config, &dir.path().join("new.log"), true);
    let exited = old.wait_exit(Duration::from_secs(20));
    let report = loading.join().unwrap();
    println!(
        "through the replace: {} sent, {} answered, {} lost, rcodes {:?}",
        report.sent, report.answered, report.lost, report.rcodes
    );
    assert_eq!(
        exited,
        Some(0),
        "the old geodns did not stop by itself:\n{}\n--- new:\n{}",
        old.log_text(),
        new.log_text()
    );
    assert!(
        old.log_text().contains("the replacement serves"),
        "{}",
        old.log_text()
    );
    assert!(report.sent >= 14_000, "{report:?}");
    assert_eq!(
        report.lost,
        0,
        "queries lost through the replace:\n{}\n--- new:\n{}",
        old.log_text(),
        new.log_text()
    );
    assert_eq!(
        report.rcodes.keys().copied().collect::<Vec<_>>(),
        vec![0],
        "every answer NOERROR"
    );
    // The new process has the override, and offers its sockets in turn.
    let (_, explained) =
        testkit::http::get(admin, "/explain?name=live.tv.example.net&client=192.0.2.1").unwrap();
    let e: serde_json::Value = serde_json::from_str(&explained).unwrap();
    let london = e["steering"]["choice"]["verdicts"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["site"] == "lon"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        london["usable"], false,
        "override carried over: {explained}"
    );
    assert!(std::os::unix::net::UnixStream::connect(&handover).is_ok());
}

#[test]
fn a_replacement_without_a_running_geodns_says_so_and_changes_nothing() {
    let Setup { dir, config, .. } = Setup::new("geodns-replace-alone", "");
    let mut lone = geodns(&config, &dir.path().join("lone.log"), true);
    let code = lone.wait_exit(Duration::from_secs(10));
    assert_ne!(code, Some(0), "{}", lone.log_text());
    assert!(
        lone.log_text().contains("cannot reach the running geodns"),
        "{}",
        lone.log_text()
    );
}

#[test]
fn geodns_replace_starts_the_new_process_itself_and_a_failed_one_leaves_the_old_serving() {
    let Setup {
        dir,
        dns,
        admin,
        config,
        ..
    } = Setup::new("geodns-replace-command", UNLIMITED);
    // The saved admin state: a replacement that cannot read it refuses to start.
    let saved = dir.path().join("admin-state.json");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[dns]\n",
        &format!("[dns]\nadmin_state = \"{}\"\n", saved.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut old = geodns(&config, &dir.path().join("geodns.log"), false);
    let up = wait_for(Duration::from_secs(20), || answers(dns).then_some(()));
    assert!(up.is_some(), "geodns did not answer:\n{}", old.log_text());
    let (status, body) = testkit::http::post(admin, "/admin-state?site=lon&state=down").unwrap();
    assert_eq!(status, 200, "{body}");
    let replace = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
        cmd.arg("--config").arg(&config).arg("replace");
        Adopted::replace(cmd)
    };

    let load = Load::new(
        dns,
        NAME,
        dnsload::spread_v4(2000, 24, 11),
        Pace::Rate(2000),
        Duration::from_secs(8),
    );
    let loading = std::thread::spawn(move || dnsload::run(&load).expect("the load runs"));
    std::thread::sleep(Duration::from_millis(1000));
    // A broken file beside the upgrade: the replacement starts, fails, and is gone; the old
    // process serves on.
    let good = std::fs::read(&saved).unwrap();
    std::fs::write(&saved, b"{ not json").unwrap();
    let said = replace().err().unwrap_or_default();
    assert!(said.contains("not replaced, still serving"), "{said}");
    std::fs::write(&saved, good).unwrap();
    assert!(old.running(), "{}", old.log_text());
    std::thread::sleep(Duration::from_millis(1000));
    let (new, said) = replace().unwrap_or_else(|e| panic!("{e}\n{}", old.log_text()));
    assert_ne!(new.0, old.pid());
    // Sent as soon as `replace` answered: it must reach the new process, not the old one.
    let (status, body) = testkit::http::post(admin, "/admin-state?site=fra&state=down").unwrap();
    assert_eq!(status, 200, "{body}");
    let exited = old.wait_exit(Duration::from_secs(20));
    let report = loading.join().unwrap();
    println!(
        "{}through a failed and a real `geodns replace`: {} sent, {} answered, {} lost, rcodes {:?}",
        said, report.sent, report.answered, report.lost, report.rcodes
    );
    assert_eq!(exited, Some(0), "{}", old.log_text());
    assert!(report.sent >= 14_000, "{report:?}");
    assert_eq!(report.lost, 0, "{}", old.log_text());
    assert_eq!(
        report.rcodes.keys().copied().collect::<Vec<_>>(),
        vec![0],
        "every answer NOERROR"
    );
    // The replacement answers its admin endpoint, with the override, and can be replaced in
    // turn by the same command.
    let (_, state) = testkit::http::get(admin, "/admin-state").unwrap();
    assert!(state.contains("lon") && state.contains("fra"), "{state}");
    let (_third, _) = replace().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_for(Duration::from_secs(10), || new.gone().then_some(())).is_some(),
        "the second process stopped once the third served"
    );
    assert!(answers(dns));
}
