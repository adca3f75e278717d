//! Upgrading a stream node under viewers, side by side in one run: streamnode replaced 20
//! times (`streamnode replace`: the new process takes the sockets and channels, the old one
//! answers each kept-alive connection once more with `Connection: close`) and nginx upgraded
//! 20 times the way its documentation says (USR2 starts the new binary on the inherited
//! listeners, then WINCH and QUIT end the old master's workers gracefully), each under the
//! same load of players. Printed: requests, requests failed (refused, reset, closed before the
//! answer, short, not 200), and the time from the command to the new process serving
//! (streamnode: until `streamnode replace` returns, which is when the new process says it
//! serves; nginx: until the new master has written its pid file, its workers then accepting).
//!
//! Run: `cargo bench -p streamnode --bench replace` (needs nginx).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::http::Connection;
use testkit::net::Loopback;
use testkit::nginx::{Detached, Nginx};
use testkit::process::{Adopted, Daemon, TempDir, wait_for};

const REPLACES: usize = 20;
/// Players at once; every fourth opens a connection per request, the others keep theirs.
const VIEWERS: usize = 48;
/// Between one old process gone and the next command.
const PAUSE: Duration = Duration::from_millis(500);
const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");

/// Players asking for the playlist and its newest segment, over and over, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    viewers: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
    started: Instant,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let viewers = (0..VIEWERS)
            .map(|i| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut connection = Connection::new(addr, i % 4 != 0);
                    let (mut requests, mut failures) = (0u64, Vec::new());
                    let mut fail = |what: String| failures.push(what);
                    while !stop.load(Ordering::Relaxed) {
                        requests += 1;
                        let newest = match connection.get("/test/index.m3u8") {
                            Ok((200, body)) => String::from_utf8_lossy(&body)
                                .lines()
                                .rfind(|l| l.ends_with(".ts"))
                                .map(str::to_owned),
                            Ok((status, _)) => {
                                fail(format!("playlist: {status}"));
                                None
                            }
                            Err(e) => {
                                fail(e);
                                None
                            }
                        };
                        if let Some(segment) = newest {
                            requests += 1;
                            match connection.get(&format!("/test/{segment}")) {
                                Ok((200, _)) => {}
                                Ok((status, _)) => fail(format!("{segment}: {status}")),
                                Err(e) => fail(e),
                            }
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    (requests, failures)
                })
            })
            .collect();
        Self {
            stop,
            viewers,
            started: Instant::now(),
        }
    }

    /// Requests, failures, and how long the load ran.
    fn finish(self) -> (u64, Vec<String>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let ran = self.started.elapsed();
        let mut all = (0, Vec::new(), ran);
        for v in self.viewers {
            let (requests, failures) = v.join().expect("viewer");
            all.0 += requests;
            all.1.extend(failures);
        }
        all
    }
}

/// What one server's upgrades cost.
struct Figures {
    requests: u64,
    failures: Vec<String>,
    took: Vec<Duration>,
    ran: Duration,
}

fn print(who: &str, f: &Figures) {
    let mut took = f.took.clone();
    took.sort();
    let at = |p: f64| testkit::percentile(&took, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "  {who:<10} {} upgrades: {} requests in {:.1} s ({:.0}/s), {} failed; command to serving p50 {:.0} ms, max {:.0} ms",
        f.took.len(),
        f.requests,
        f.ran.as_secs_f64(),
        f.requests as f64 / f.ran.as_secs_f64().max(0.001),
        f.failures.len(),
        at(0.5),
        at(1.0)
    );
    let mut kinds: Vec<String> = f
        .failures
        .iter()
        .map(|e| e.split(": ").skip(1).collect::<Vec<_>>().join(": "))
        .collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds.iter().take(4) {
        println!("             e.g. {kind}");
    }
}

/// streamnode's figures, with its playlist and newest segment (name and bytes) at the start.
fn streamnode(
    dir: &Path,
    addr: SocketAddr,
    admin: SocketAddr,
) -> (Figures, String, (String, Vec<u8>)) {
    let handover = dir.join("streamnode.handover");
    let config = dir.join("deploy.toml");
    let text = MINIMAL.replace(
        "listen = \"127.0.1.1:8080\"",
        &format!(
            "listen = \"{addr}\"\nadmin = \"{admin}\"\nhandover = \"{}\"",
            handover.display()
        ),
    );
    std::fs::write(&config, text).expect("write deployment");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--node", "ams-1"])
        .env("RUST_LOG", "warn");
    let mut first = Some(Daemon::spawn("streamnode", cmd, &dir.join("streamnode.log")).unwrap());
    let playlist = wait_for(Duration::from_secs(15), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    })
    .expect("no playlist");
    let segment = playlist
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .expect("a segment")
        .to_owned();
    let bytes = Connection::new(addr, false)
        .get(&format!("/test/{segment}"))
        .map(|(_, b)| b)
        .expect("the newest segment");

    let load = Load::start(addr);
    std::thread::sleep(Duration::from_secs(1));
    let mut took = Vec::new();
    let mut current: Option<Adopted> = None;
    for _ in 0..REPLACES {
        let started = Instant::now();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
        cmd.arg("--config")
            .arg(&config)
            .args(["--node", "ams-1", "replace"]);
        let new = match Adopted::replace(cmd) {
            Ok((new, _)) => new,
            Err(said) => {
                println!("  replace failed: {said}");
                break;
            }
        };
        took.push(started.elapsed());
        // The old process finishes (its kept-alive connections closed after one more answer).
        if let Some(mut old) = first.take() {
            old.wait_exit(Duration::from_secs(15));
        }
        if let Some(old) = current.replace(new) {
            wait_for(Duration::from_secs(15), || old.gone().then_some(()));
        }
        std::thread::sleep(PAUSE);
    }
    let (requests, failures, ran) = load.finish();
    (
        Figures {
            requests,
            failures,
            took,
            ran,
        },
        playlist,
        (segment, bytes),
    )
}

fn nginx_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn nginx(addr: SocketAddr, root: PathBuf) -> Figures {
    let server = Detached::start(&[(addr, root)]);
    let pid_file = server.pid_file();
    let old_file = pid_file.with_extension("pid.oldbin");
    let load = Load::start(addr);
    std::thread::sleep(Duration::from_secs(1));
    let mut took = Vec::new();
    for _ in 0..REPLACES {
        let Some(master) = server.master() else {
            println!("  nginx has no master");
            break;
        };
        let started = Instant::now();
        signal(master, "USR2");
        let new = wait_for(Duration::from_secs(10), || {
            nginx_pid(&pid_file).filter(|p| *p != master && old_file.exists())
        });
        if new.is_none() {
            println!("  nginx did not start its new binary");
            break;
        }
        took.push(started.elapsed());
        // Graceful: the old workers finish what they serve, then the old master goes.
        signal(master, "WINCH");
        signal(master, "QUIT");
        wait_for(Duration::from_secs(15), || {
            (gone(master) && !old_file.exists()).then_some(())
        });
        std::thread::sleep(PAUSE);
    }
    let (requests, failures, ran) = load.finish();
    drop(server);
    Figures {
        requests,
        failures,
        took,
        ran,
    }
}

fn main() {
    if testkit::require("streamnode replace benchmark", Nginx::PROGRAMS, false).is_none() {
        return;
    }
    let dir = TempDir::new("replace-bench");
    let net = Loopback::fresh();
    let ours = SocketAddr::from((net.host(1), 8080));
    let admin = SocketAddr::from((net.host(1), 8081));
    let theirs = SocketAddr::from((net.host(2), 8080));
    println!(
        "Upgrades under {VIEWERS} players (three in four keep their connection), {REPLACES} each, {} ms apart:",
        PAUSE.as_millis()
    );
    let (ours_figures, playlist, (segment, bytes)) = streamnode(dir.path(), ours, admin);
    // nginx serves the same playlist and segment from tmpfs.
    let shm = Path::new("/dev/shm").join(format!("replace-bench-{}", std::process::id()));
    std::fs::create_dir_all(shm.join("test")).unwrap();
    std::fs::write(shm.join("test").join(&segment), bytes).unwrap();
    std::fs::write(shm.join("test/index.m3u8"), &playlist).unwrap();
    let nginx_figures = nginx(theirs, shm.clone());
    print("streamnode", &ours_figures);
    print("nginx", &nginx_figures);
    let _ = std::fs::remove_dir_all(&shm);
}
