//! Serving speed, side by side in one run: streamnode serving the built-in channel vs nginx
//! serving the same segment and playlist bytes from tmpfs, both loaded by wrk with the same
//! connections. Prints requests/s, MB/s and requests per CPU-second of the server (the fair
//! figure on a small shared machine, where wrk competes with the server for cores), and
//! streamnode's memory per 1,000 connected viewers.
//!
//! Run: `cargo bench -p streamnode --bench serve`
//! (needs wrk and nginx).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::net::Loopback;
use testkit::nginx::Nginx;
use testkit::process::{Daemon, TempDir, family_cpu_seconds, run, wait_for};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");
const SECONDS: u32 = 8;
const CONNECTIONS: u32 = 50;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Figures {
    requests_per_sec: f64,
    mbytes_per_sec: f64,
    per_cpu_second: f64,
}

/// `wrk` against `url`; wrk's summary lines give requests/s and transfer/s.
fn wrk(url: &str, pid: u32) -> Figures {
    let before = family_cpu_seconds(pid);
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        "1",
        "-c",
        &CONNECTIONS.to_string(),
        "-d",
        &format!("{SECONDS}s"),
        url,
    ]);
    let out = run(cmd, Duration::from_secs(u64::from(SECONDS) + 30)).expect("wrk");
    let cpu = family_cpu_seconds(pid) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| {
                let v = v.trim();
                let (n, scale) = if let Some(n) = v.strip_suffix("GB") {
                    (n, 1024.0)
                } else if let Some(n) = v.strip_suffix("MB") {
                    (n, 1.0)
                } else if let Some(n) = v.strip_suffix("KB") {
                    (n, 1.0 / 1024.0)
                } else {
                    (v, 1.0)
                };
                n.parse::<f64>().unwrap_or(0.0) * scale
            })
            .unwrap_or(0.0)
    };
    let rps = value("Requests/sec:");
    if text.contains("Non-2xx") {
        println!("  warning: wrk saw non-2xx answers from {url}");
    }
    Figures {
        requests_per_sec: rps,
        mbytes_per_sec: value("Transfer/sec:"),
        per_cpu_second: if cpu > 0.0 {
            rps * f64::from(SECONDS) / cpu
        } else {
            0.0
        },
    }
}

fn line(what: &str, ours: &Figures, nginx: &Figures) {
    println!(
        "{what:<9} streamnode {:>9.0} req/s {:>8.1} MB/s {:>9.0} req/CPU-s | nginx {:>9.0} req/s {:>8.1} MB/s {:>9.0} req/CPU-s | ratio {:.2}x (per CPU {:.2}x)",
        ours.requests_per_sec,
        ours.mbytes_per_sec,
        ours.per_cpu_second,
        nginx.requests_per_sec,
        nginx.mbytes_per_sec,
        nginx.per_cpu_second,
        ours.requests_per_sec / nginx.requests_per_sec.max(1.0),
        ours.per_cpu_second / nginx.per_cpu_second.max(1.0),
    );
}

/// Memory per 1,000 viewers: connections that each fetched the playlist and stay open.
fn memory_per_thousand(addr: SocketAddr, pid: u32, path: &str) -> f64 {
    let before = rss_kib(pid);
    let mut open = Vec::new();
    for _ in 0..1000 {
        let Ok(mut s) = TcpStream::connect(addr) else {
            break;
        };
        let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        open.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / 1024.0 * 1000.0 / open.len().max(1) as f64;
    drop(open);
    per
}

fn main() {
    let binary = Path::new(env!("CARGO_BIN_EXE_streamnode"));
    for program in ["wrk", "nginx"] {
        if testkit::find_program(program).is_none() {
            println!("serving benchmark skipped: {program} is not installed");
            return;
        }
    }
    let net = Loopback::fresh();
    let ours = SocketAddr::from((net.host(1), 8080));
    let theirs = SocketAddr::from((net.host(2), 8080));
    let dir = TempDir::new("serve-bench");
    let text = MINIMAL.replace(
        "listen = \"127.0.1.1:8080\"",
        &format!("listen = \"{ours}\""),
    );
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(["--node", "ams-1"])
        .env("RUST_LOG", "warn");
    let node = Daemon::spawn("streamnode", cmd, &dir.path().join("streamnode.log")).unwrap();
    let playlist = wait_for(Duration::from_secs(15), || {
        testkit::http::get(ours, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    })
    .expect("no playlist");
    // The newest segment stays in the window (and its grace) for the whole run.
    let segment = playlist
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .expect("a segment")
        .to_owned();

    // The same bytes for nginx, on tmpfs.
    let shm = Path::new("/dev/shm").join(format!("serve-bench-{}", std::process::id()));
    std::fs::create_dir_all(shm.join("test")).unwrap();
    let bytes = {
        let mut s = TcpStream::connect(ours).unwrap();
        s.write_all(format!("GET /test/{segment} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        all.split_off(at)
    };
    std::fs::write(shm.join("test").join(&segment), &bytes).unwrap();
    std::fs::write(shm.join("test/index.m3u8"), &playlist).unwrap();
    let nginx = Nginx::start(&[(theirs, shm.clone())]);

    println!(
        "HLS serving: wrk, 1 thread, {CONNECTIONS} connections, {SECONDS} s each; segment {} KiB, playlist {} B\n",
        bytes.len() / 1024,
        playlist.len()
    );
    let ours_seg = wrk(&format!("http://{ours}/test/{segment}"), node.pid());
    let nginx_seg = wrk(
        &format!("http://{theirs}/test/{segment}"),
        nginx.daemon.pid(),
    );
    line("segment", &ours_seg, &nginx_seg);
    let ours_pl = wrk(&format!("http://{ours}/test/index.m3u8"), node.pid());
    let nginx_pl = wrk(
        &format!("http://{theirs}/test/index.m3u8"),
        nginx.daemon.pid(),
    );
    line("playlist", &ours_pl, &nginx_pl);
    println!(
        "\nstreamnode memory per 1,000 connected viewers: {:.1} MiB",
        memory_per_thousand(ours, node.pid(), "/test/index.m3u8")
    );
    let _ = std::fs::remove_dir_all(&shm);
}
