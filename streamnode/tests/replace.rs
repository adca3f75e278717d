//! Replacing a running stream node under viewers (`streamnode replace`): HTTP clients keep
//! connections alive and download every new segment, another opens a connection per request,
//! and ffmpeg plays the channel, while a replacement that fails (its admin address is taken)
//! tries and gives up, and then `streamnode replace` starts a new process that takes the
//! sockets and channels over. No request may fail and no connection may be reset; the media
//! sequence never goes back and a segment has the same bytes whichever process served it; the
//! old process exits by itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::http::Connection;
use testkit::net::Loopback;
use testkit::process::{Adopted, Daemon, TempDir, wait_for};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");

/// A deployment whose node `ams-1` listens on `addr`, has its admin endpoint on `admin` and
/// offers its sockets at `handover`.
fn deployment(addr: SocketAddr, admin: SocketAddr, handover: &Path) -> String {
    MINIMAL.replace(
        "listen = \"127.0.1.1:8080\"",
        &format!(
            "listen = \"{addr}\"\nadmin = \"{admin}\"\nhandover = \"{}\"",
            handover.display()
        ),
    )
}

/// `streamnode replace` for node `ams-1`: the new process, once it serves.
fn replace(config: &Path) -> Adopted {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(config)
        .args(["--node", "ams-1", "replace"]);
    let (new, said) = Adopted::replace(cmd).unwrap_or_else(|e| panic!("{e}"));
    print!("{said}");
    new
}

fn streamnode(config: &Path, log: &Path, args: &[&str]) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(config)
        .args(["--node", "ams-1"])
        .args(args);
    Daemon::spawn("streamnode", cmd, log).expect("start streamnode")
}

/// What the viewers saw.
#[derive(Default)]
struct Seen {
    requests: u64,
    failures: Vec<String>,
    /// Bytes' hash of each segment downloaded, by media sequence number.
    segments: HashMap<u64, Vec<u64>>,
    /// A playlist's media sequence lower than one seen before by the same viewer.
    went_back: Vec<(u64, u64)>,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// A viewer until `until`: the playlist, then every segment it lists not yet had.
fn viewer(addr: SocketAddr, keep_alive: bool, until: Instant, seen: Arc<Mutex<Seen>>) {
    let mut connection = Connection::new(addr, keep_alive);
    let (mut had, mut last_sequence) = (0u64, 0u64);
    while Instant::now() < until {
        let playlist = connection.get("/test/index.m3u8");
        let mut seen_now = Vec::new();
        match playlist {
            Ok((200, body)) => {
                let text = String::from_utf8_lossy(&body).into_owned();
                let sequence = text
                    .lines()
                    .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                if sequence < last_sequence {
                    seen.lock()
                        .unwrap()
                        .went_back
                        .push((last_sequence, sequence));
                }
                last_sequence = sequence;
                let listed: Vec<u64> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("seg")?.strip_suffix(".ts")?.parse().ok())
                    .collect();
                let new: Vec<u64> = listed.into_iter().filter(|n| *n >= had).collect();
                for n in new {
                    match connection.get(&format!("/test/seg{n}.ts")) {
                        Ok((200, bytes)) => seen_now.push((n, fnv(&bytes))),
                        Ok((status, _)) => seen
                            .lock()
                            .unwrap()
                            .failures
                            .push(format!("segment {n}: {status}")),
                        Err(e) => seen.lock().unwrap().failures.push(e),
                    }
                    had = n + 1;
                }
            }
            Ok((status, _)) => seen
                .lock()
                .unwrap()
                .failures
                .push(format!("playlist: {status}")),
            Err(e) => seen.lock().unwrap().failures.push(e),
        }
        let mut s = seen.lock().unwrap();
        s.requests += 1 + seen_now.len() as u64;
        for (n, hash) in seen_now {
            s.segments.entry(n).or_default().push(hash);
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn streamnode_replace_fails_no_request_and_resets_no_connection() {
    let test = "streamnode_replace_fails_no_request_and_resets_no_connection";
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let dir = TempDir::new("streamnode-replace");
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 8080));
    let admin = SocketAddr::from((net.host(1), 8081));
    let handover = dir.path().join("streamnode.handover");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(addr, admin, &handover)).unwrap();
    let mut old = streamnode(&config, &dir.path().join("streamnode.log"), &[]);
    let live = wait_for(Duration::from_secs(15), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    assert!(live.is_some(), "no playlist:\n{}", old.log_text());

    let until = Instant::now() + Duration::from_secs(16);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let viewers: Vec<_> = (0..6)
        .map(|i| {
            let seen = seen.clone();
            std::thread::spawn(move || viewer(addr, i != 0, until, seen))
        })
        .collect();
    let mut play = Command::new("ffmpeg");
    play.args(["-hide_banner", "-nostdin", "-v", "warning", "-i"])
        .arg(format!("http://{addr}/test/index.m3u8"))
        .args(["-t", "14", "-f", "null", "-"]);
    let player = Daemon::spawn("ffmpeg", play, &dir.path().join("ffmpeg.log")).unwrap();

    // A replacement that takes the sockets and channels, then cannot serve: the old process
    // takes its channels back and goes on.
    std::thread::sleep(Duration::from_secs(2));
    let blocker = std::net::TcpListener::bind((net.host(2), 8081)).unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        deployment(addr, blocker.local_addr().unwrap(), &handover),
    )
    .unwrap();
    let mut failed = streamnode(&broken, &dir.path().join("broken.log"), &["--take-over"]);
    assert_ne!(
        failed.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        failed.log_text()
    );
    let kept = wait_for(Duration::from_secs(5), || {
        old.log_text()
            .contains("hand-over failed, still serving")
            .then_some(())
    });
    assert!(kept.is_some(), "{}", old.log_text());

    std::thread::sleep(Duration::from_secs(2));
    let _new = replace(&config);
    let exited = old.wait_exit(Duration::from_secs(15));
    for v in viewers {
        v.join().unwrap();
    }
    let mut player = player;
    let played = player.wait_exit(Duration::from_secs(20));
    let seen = seen.lock().unwrap();
    let segments = seen.segments.len();
    let differing: Vec<u64> = seen
        .segments
        .iter()
        .filter(|(_, hashes)| hashes.iter().any(|h| *h != hashes[0]))
        .map(|(n, _)| *n)
        .collect();
    println!(
        "through a failed and a real replace: {} requests, {} failed, {segments} segments, {} served differently",
        seen.requests,
        seen.failures.len(),
        differing.len()
    );
    assert_eq!(
        exited,
        Some(0),
        "the old process stops by itself:\n{}",
        old.log_text()
    );
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:?}\n{}",
        seen.failures,
        old.log_text()
    );
    assert!(
        seen.went_back.is_empty(),
        "media sequence went back: {:?}",
        seen.went_back
    );
    assert!(
        differing.is_empty(),
        "segments served with other bytes: {differing:?}"
    );
    assert!(seen.requests > 200, "{}", seen.requests);
    assert!(segments >= 6, "{segments}");
    let log = player.log_text();
    assert_eq!(played, Some(0), "ffmpeg:\n{log}");
    assert!(!log.to_lowercase().contains("error"), "ffmpeg:\n{log}");
    // The new process serves, with the channel going on, and offers its sockets in turn.
    let (status, _) = testkit::http::get(addr, "/test/index.m3u8").unwrap();
    assert_eq!(status, 200);
    assert!(std::os::unix::net::UnixStream::connect(&handover).is_ok());
}

/// Continuity counter gaps on the elementary streams (PIDs 0x100 to 0xFFF, where ffmpeg puts
/// them) across `ts`: each is a packet lost.
fn continuity_gaps(ts: &[u8]) -> u64 {
    let mut last: HashMap<u16, u8> = HashMap::new();
    let mut gaps = 0;
    for packet in ts.chunks_exact(188) {
        let pid = u16::from_be_bytes([packet[1] & 0x1F, packet[2]]);
        let has_payload = packet[3] & 0x10 != 0;
        if !(0x100..0x1000).contains(&pid) || !has_payload {
            continue;
        }
        let cc = packet[3] & 0x0F;
        if let Some(previous) = last.insert(pid, cc)
            && cc != (previous + 1) & 0x0F
            && cc != previous
        {
            gaps += 1;
        }
    }
    gaps
}

#[test]
fn an_ingest_handed_over_twice_loses_no_packet() {
    let test = "an_ingest_handed_over_twice_loses_no_packet";
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let dir = TempDir::new("streamnode-replace-ingest");
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 8080));
    let admin = SocketAddr::from((net.host(1), 8081));
    let feed = SocketAddr::from((net.host(1), 5004));
    let handover = dir.path().join("streamnode.handover");
    let config = dir.path().join("deploy.toml");
    let text = deployment(addr, admin, &handover).replace(
        "source = \"builtin\"",
        &format!("source = \"udp\"\nprimary = \"{feed}\""),
    );
    std::fs::write(&config, text).unwrap();
    let mut old = streamnode(&config, &dir.path().join("streamnode.log"), &[]);
    let _encoder =
        testkit::ffmpeg::live_encoder("320x180", "main", 50, feed, &dir.path().join("ffmpeg.log"));
    let live = wait_for(Duration::from_secs(20), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    assert!(live.is_some(), "no playlist:\n{}", old.log_text());

    // Every segment as it is published, and every playlist.
    let until = Instant::now() + Duration::from_secs(17);
    let downloading = std::thread::spawn(move || {
        let mut connection = Connection::new(addr, true);
        let (mut segments, mut playlists, mut failures) = (Vec::new(), Vec::new(), Vec::new());
        let mut had = None;
        while Instant::now() < until {
            match connection.get("/test/index.m3u8") {
                Ok((200, body)) => {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let listed: Vec<u64> = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("seg")?.strip_suffix(".ts")?.parse().ok())
                        .collect();
                    // From the newest at the start, then every one after it.
                    let from = had.unwrap_or_else(|| listed.last().copied().unwrap_or(0));
                    for n in listed.into_iter().filter(|n| *n >= from) {
                        match connection.get(&format!("/test/seg{n}.ts")) {
                            Ok((200, bytes)) => segments.push((n, bytes)),
                            other => failures.push(format!("segment {n}: {other:?}")),
                        }
                        had = Some(n + 1);
                    }
                    playlists.push(text);
                }
                other => failures.push(format!("playlist: {other:?}")),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (segments, playlists, failures)
    });
    std::thread::sleep(Duration::from_secs(5));
    let _second = replace(&config);
    assert_eq!(
        old.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        old.log_text()
    );
    let _third = replace(&config);
    let (segments, playlists, failures) = downloading.join().unwrap();
    let numbers: Vec<u64> = segments.iter().map(|(n, _)| *n).collect();
    let whole: Vec<u8> = segments
        .iter()
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    let gaps = continuity_gaps(&whole);
    println!(
        "ingest through two replaces: segments {numbers:?}, {} bytes, {gaps} continuity gaps",
        whole.len()
    );
    assert!(failures.is_empty(), "{failures:?}\n{}", old.log_text());
    assert!(segments.len() >= 6, "{numbers:?}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "every segment in turn: {numbers:?}"
    );
    assert_eq!(gaps, 0, "packets lost across the replaces");
    // The first segment follows one (the feed's start); a replace is none.
    let mut marked: Vec<u64> = playlists
        .iter()
        .flat_map(|p| {
            let lines: Vec<&str> = p.lines().collect();
            lines
                .windows(4)
                .filter(|w| w[0] == "#EXT-X-DISCONTINUITY")
                .filter_map(|w| w[3].strip_prefix("seg")?.strip_suffix(".ts")?.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect();
    marked.dedup();
    // The channel's first segment (numbered from the wall clock) is the oldest any playlist
    // listed, while the window still held it.
    let first = playlists
        .iter()
        .flat_map(|p| {
            p.lines().filter_map(|l| {
                l.strip_prefix("seg")?
                    .strip_suffix(".ts")?
                    .parse::<u64>()
                    .ok()
            })
        })
        .min();
    assert!(
        marked.iter().all(|n| Some(*n) == first),
        "discontinuities before {marked:?} (the first segment listed: {first:?})"
    );
}
