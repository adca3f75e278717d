//! Upgrading a DNS server under load: geodns replaced 20 times (`geodns replace`: the running
//! process starts the new one, which receives its sockets and state) and gdnsd replaced 20 times
//! (`gdnsdctl replace`, which spawns its successor and hands it its sockets the same way), each
//! under the same steady load from many client subnets, in one run: queries lost, and the
//! time from the command to the new process serving (until `geodns replace` and
//! `gdnsdctl replace` return, each once its new process serves).
//!
//! Run: `cargo bench -p geodns --bench replace` (needs gdnsd for the comparison).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::dnsload::{self, Load, Pace};
use testkit::net::Loopback;
use testkit::process::{Adopted, Daemon, TempDir, run, wait_for};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{UNLIMITED, answers, example_with_handover, gdnsd, write_geo_db};

const REPLACES: usize = 20;
const RATE: u32 = 5_000;
/// Between one replacement serving and the next command.
const PAUSE: Duration = Duration::from_millis(500);
const NAME: &str = "live.tv.example.net.";

/// What one server's replaces cost.
struct Figures {
    report: dnsload::Report,
    took: Vec<Duration>,
    failed: usize,
}

fn print(who: &str, f: &Figures) {
    let mut took = f.took.clone();
    took.sort();
    let at = |p: f64| testkit::percentile(&took, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "  {who:<7} {} replaces ({} failed): {} queries sent, {} lost, {} late; command to serving p50 {:.0} ms, max {:.0} ms",
        f.took.len(),
        f.failed,
        f.report.sent,
        f.report.lost,
        f.report.late,
        at(0.5),
        at(1.0)
    );
}

/// A load long enough for `REPLACES` replaces of about `each`.
fn load(server: SocketAddr, each: Duration) -> Load {
    let seconds = (each + PAUSE).as_secs_f64() * REPLACES as f64 + 3.0;
    Load::new(
        server,
        NAME,
        dnsload::spread_v4(20_000, 24, 11),
        Pace::Rate(RATE),
        Duration::from_secs_f64(seconds),
    )
}

fn geodns(dir: &Path, net: &Loopback) -> Figures {
    let dns = SocketAddr::from((net.host(1), 5353));
    let admin = SocketAddr::from((net.host(1), 9153));
    let handover = dir.join("geodns.handover");
    let text = example_with_handover(dns, admin, &handover) + UNLIMITED;
    let config = dir.join("geodns.toml");
    std::fs::write(&config, text).expect("write deployment");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--threads", "2"])
        .env("RUST_LOG", "info");
    let mut first =
        Some(Daemon::spawn("geodns", cmd, &dir.join("geodns.log")).expect("start geodns"));
    wait_for(Duration::from_secs(30), || answers(dns).then_some(())).unwrap_or_else(|| {
        panic!(
            "geodns did not answer:\n{}",
            first.as_ref().map(Daemon::log_text).unwrap_or_default()
        )
    });
    let load = load(dns, Duration::from_millis(300));
    let loading = std::thread::spawn(move || dnsload::run(&load).expect("the load runs"));
    std::thread::sleep(Duration::from_secs(1));
    let (mut took, mut failed, mut old) = (Vec::new(), 0, Vec::new());
    for n in 1..=REPLACES {
        // `geodns replace`: the running process starts the new one and answers once it serves.
        let started = Instant::now();
        let mut replace = Command::new(env!("CARGO_BIN_EXE_geodns"));
        replace.arg("--config").arg(&config).arg("replace");
        match Adopted::replace(replace) {
            Ok((new, _)) => {
                took.push(started.elapsed());
                old.push(new);
            }
            Err(said) => {
                failed += 1;
                eprintln!("geodns replace {n} failed: {said}");
            }
        }
        std::thread::sleep(PAUSE);
    }
    let report = loading.join().expect("load");
    if let Some(mut process) = first.take() {
        process.wait_exit(Duration::from_secs(10));
    }
    // Each replaced process exits by itself; the last one serving is stopped here.
    let last = old.pop();
    for process in &old {
        wait_for(Duration::from_secs(10), || process.gone().then_some(()));
    }
    std::mem::forget(old);
    drop(last);
    Figures {
        report,
        took,
        failed,
    }
}

fn gdnsd_replaces(dir: &Path, net: &Loopback) -> Figures {
    let addr = SocketAddr::from((net.host(2), 5353));
    let db = dir.join("geo.mmdb");
    let first = gdnsd::start(dir, &db, addr, 2);
    wait_for(Duration::from_secs(30), || answers(addr).then_some(()))
        .unwrap_or_else(|| panic!("gdnsd did not answer:\n{}", first.log_text()));
    let base = dir.join("gdnsd-2");
    let ctl = testkit::find_program("gdnsdctl").expect("gdnsdctl");
    let load = load(addr, Duration::from_millis(1000));
    let loading = std::thread::spawn(move || dnsload::run(&load).expect("the load runs"));
    std::thread::sleep(Duration::from_secs(1));
    let (mut took, mut failed) = (Vec::new(), 0);
    for n in 1..=REPLACES {
        let started = Instant::now();
        let mut cmd = Command::new(&ctl);
        cmd.arg("-c").arg(&base).arg("replace");
        match run(cmd, Duration::from_secs(60)) {
            Ok(out) if out.status.success() => took.push(started.elapsed()),
            Ok(out) => {
                failed += 1;
                eprintln!(
                    "gdnsd replace {n} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("gdnsd replace {n}: {e}");
            }
        }
        std::thread::sleep(PAUSE);
    }
    let report = loading.join().expect("load");
    // The last replacement is no child of ours: stop it through its control socket.
    let mut stop = Command::new(&ctl);
    stop.arg("-c").arg(&base).arg("stop");
    let _ = run(stop, Duration::from_secs(30));
    drop(first);
    Figures {
        report,
        took,
        failed,
    }
}

fn main() {
    let dir = TempDir::new("bench-replace");
    write_geo_db(dir.path());
    let net = Loopback::fresh();
    println!(
        "{REPLACES} replaces of each server under {RATE} queries/s from 20,000 client subnets, {} ms between a replacement serving and the next command:",
        PAUSE.as_millis()
    );
    let ours = geodns(dir.path(), &net);
    print("geodns", &ours);
    if testkit::find_program("gdnsd").is_some() && testkit::find_program("gdnsdctl").is_some() {
        let theirs = gdnsd_replaces(dir.path(), &net);
        print("gdnsd", &theirs);
    } else {
        println!("  gdnsd not installed: its replaces are left out (apt-get install gdnsd)");
    }
}
