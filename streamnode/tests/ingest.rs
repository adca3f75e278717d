//! UDP ingest with ffmpeg as the encoder: two ffmpeg processes send the same clip as the
//! primary and the backup feed; the primary is killed while ffmpeg plays the live playlist, and
//! the player goes on without an error. Garbage datagrams do not hurt the node.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::ffmpeg::live_encoder;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");

/// A 50 s source: long enough to play 30 s without looping (ffmpeg's `-stream_loop` with
/// stream copy repeats timestamps at each loop, which a player rightly reports).
fn source(dir: &Path) -> std::path::PathBuf {
    let clip = dir.join("source.ts");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000"])
        .args(["-t", "50", "-map", "0:v", "-map", "1:a"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "50",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(&clip);
    let out = run(cmd, Duration::from_secs(120)).expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    clip
}

/// Starts node `ams-1` of the minimal example on `addr`, its channel's source replaced by
/// `source` (the `source = ...` line and whatever follows it in the channel).
fn start_node(dir: &Path, addr: SocketAddr, source: &str) -> Daemon {
    let text = MINIMAL
        .replace(
            "listen = \"127.0.1.1:8080\"",
            &format!("listen = \"{addr}\""),
        )
        .replace("source = \"builtin\"", source);
    std::fs::write(dir.join("deploy.toml"), text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(dir.join("deploy.toml"))
        .args(["--node", "ams-1"]);
    Daemon::spawn("streamnode", cmd, &dir.join("streamnode.log")).unwrap()
}

fn encoder(clip: &Path, to: SocketAddr, dir: &Path, log: &str) -> Daemon {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-i",
    ])
    .arg(clip)
    .args(["-c", "copy", "-f", "mpegts"])
    .arg(format!("udp://{to}?pkt_size=1316"));
    Daemon::spawn("ffmpeg", cmd, &dir.join(log)).expect("ffmpeg")
}

fn status(addr: SocketAddr) -> Option<serde_json::Value> {
    let (200, body) = testkit::http::get(addr, "/status")? else {
        return None;
    };
    serde_json::from_str(&body).ok()
}

fn active_feed(addr: SocketAddr) -> Option<String> {
    status(addr)?["channels"][0]["active_feed"]
        .as_str()
        .map(str::to_owned)
}

/// Random-looking datagrams, some starting with the sync byte so they reach packet parsing.
fn garbage(to: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 0x2545_F491;
    for i in 0..2000usize {
        let len = [1, 187, 188, 1316, 1500, 9000][i % 6];
        let data: Vec<u8> = (0..len)
            .map(|j| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if j % 188 == 0 && i % 2 == 0 {
                    0x47
                } else {
                    x as u8
                }
            })
            .collect();
        let _ = socket.send_to(&data, to);
    }
}

#[test]
fn the_player_goes_on_when_the_primary_feed_dies() {
    let Some(_) = testkit::require(
        "the_player_goes_on_when_the_primary_feed_dies",
        &[("ffmpeg", "ffmpeg")],
        false,
    ) else {
        return;
    };
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 8080));
    let (primary, backup) = (
        SocketAddr::from((net.host(2), 5000)),
        SocketAddr::from((net.host(2), 5001)),
    );
    let dir = TempDir::new("ingest");
    let mut node = start_node(
        dir.path(),
        addr,
        &format!(
            "source = \"udp\"\nprimary = \"{primary}\"\nbackup = \"{backup}\"\nstall_timeout = \"500ms\""
        ),
    );
    let clip = source(dir.path());
    let first = encoder(&clip, primary, dir.path(), "primary.log");
    let second = encoder(&clip, backup, dir.path(), "backup.log");

    // Garbage on the idle backup port while the primary carries the channel.
    garbage(backup);
    let live = wait_for(Duration::from_secs(20), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, body)| *s == 200 && body.matches("#EXTINF").count() >= 3)
            .map(|_| ())
    });
    assert!(live.is_some(), "no playlist:\n{}", node.log_text());
    assert_eq!(active_feed(addr).as_deref(), Some("primary"));

    let url = format!("http://{addr}/test/index.m3u8");
    let mut player = Command::new("ffmpeg");
    player.args([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        &url,
        "-t",
        "30",
        "-f",
        "null",
        "-",
    ]);
    let watching = std::thread::spawn(move || run(player, Duration::from_secs(90)));

    std::thread::sleep(Duration::from_secs(8));
    let killed = Instant::now();
    first.signal("KILL");
    let switched = wait_for(Duration::from_secs(5), || {
        (active_feed(addr).as_deref() == Some("backup")).then(|| killed.elapsed())
    });
    assert!(
        switched.is_some(),
        "never switched to the backup:\n{}",
        node.log_text()
    );
    let marked = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(_, body)| body.contains("#EXT-X-DISCONTINUITY\n"))
            .map(|_| ())
    });
    assert!(
        marked.is_some(),
        "the feed switch is not marked in the playlist"
    );

    let played = watching.join().unwrap().expect("player");
    let errors = String::from_utf8_lossy(&played.stderr);
    assert!(played.status.success(), "the player failed:\n{errors}");
    assert!(
        errors.trim().is_empty(),
        "the player reported errors:\n{errors}"
    );
    assert!(node.running(), "the node died:\n{}", node.log_text());
    println!(
        "switched to the backup {:?} after the primary died",
        switched.unwrap()
    );

    // With the backup gone too the channel has no source, and the node says so.
    let ingest =
        || status(addr).and_then(|s| s["channels"][0]["ingest"].as_str().map(str::to_owned));
    assert_eq!(
        ingest().as_deref(),
        Some("flowing"),
        "the backup carries it"
    );
    let killed = Instant::now();
    second.signal("KILL");
    let lost = wait_for(Duration::from_secs(5), || {
        (ingest().as_deref() == Some("lost")).then(|| killed.elapsed())
    });
    let lost = lost.expect("ingest never reported lost");
    // Counted from the kill: the encoder's last burst left a little before it.
    println!("every feed dead -> ingest lost after {lost:?} (stall_timeout 500 ms)");
    assert!(lost < Duration::from_secs(2), "{lost:?}");
}

#[test]
fn a_channel_with_renditions_gets_a_master_playlist_read_from_its_streams() {
    let Some(_) = testkit::require(
        "a_channel_with_renditions_gets_a_master_playlist_read_from_its_streams",
        &[("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg")],
        false,
    ) else {
        return;
    };
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 8080));
    let (hd, sd) = (
        SocketAddr::from((net.host(2), 5000)),
        SocketAddr::from((net.host(2), 5002)),
    );
    let dir = TempDir::new("renditions");
    let node = start_node(
        dir.path(),
        addr,
        &format!(
            "source = \"udp\"\n\n[[channels.renditions]]\nname = \"hd\"\nprimary = \"{hd}\"\n\n[[channels.renditions]]\nname = \"sd\"\nprimary = \"{sd}\"\n"
        ),
    );
    let _hd = live_encoder("640x360", "high", 50, hd, &dir.path().join("hd.log"));
    let _sd = live_encoder("320x180", "baseline", 50, sd, &dir.path().join("sd.log"));

    let master = wait_for(Duration::from_secs(30), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, body)| *s == 200 && body.matches("#EXT-X-STREAM-INF").count() == 2)
            .map(|(_, body)| body)
    });
    let Some(master) = master else {
        panic!(
            "no master playlist with both renditions:\n{}",
            node.log_text()
        );
    };
    println!("{master}");
    let variants: Vec<(&str, &str)> = master
        .lines()
        .zip(master.lines().skip(1))
        .filter(|(tag, _)| tag.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    // The profile and level the encoder chose, the size it drew, the audio it sent: all read
    // from the streams, none configured.
    let (hd_tag, hd_uri) = variants[0];
    assert!(
        hd_tag.contains("CODECS=\"avc1.64"),
        "High profile: {hd_tag}"
    );
    assert!(hd_tag.contains(",mp4a.40.2\""), "AAC-LC: {hd_tag}");
    assert!(hd_tag.contains("RESOLUTION=640x360"), "{hd_tag}");
    assert_eq!(hd_uri, "hd/index.m3u8");
    let (sd_tag, sd_uri) = variants[1];
    assert!(
        sd_tag.contains("CODECS=\"avc1.42"),
        "Baseline profile: {sd_tag}"
    );
    assert!(sd_tag.contains("RESOLUTION=320x180"), "{sd_tag}");
    assert_eq!(sd_uri, "sd/index.m3u8");
    let bandwidth = |tag: &str| -> u64 {
        tag.split(['=', ','])
            .skip_while(|k| !k.ends_with("BANDWIDTH"))
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        bandwidth(hd_tag) > bandwidth(sd_tag) && bandwidth(sd_tag) > 0,
        "peak bit rates: {hd_tag} / {sd_tag}"
    );

    // A player given the master sees both renditions and plays one without an error.
    let url = format!("http://{addr}/test/index.m3u8");
    let (sizes, errors) = testkit::ffmpeg::probe_sizes(&url);
    assert!(
        sizes.contains("640,360") && sizes.contains("320,180"),
        "ffprobe found: {sizes}\n{errors}"
    );
    let mut player = Command::new("ffmpeg");
    player
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i", &url])
        .args(["-t", "6", "-f", "null", "-"]);
    let played = run(player, Duration::from_secs(60)).expect("player");
    let errors = String::from_utf8_lossy(&played.stderr);
    assert!(
        played.status.success() && errors.trim().is_empty(),
        "the player failed:\n{errors}"
    );
    // Each rendition's media playlist and segments live under its own path.
    let (status, body) = testkit::http::get(addr, "/test/sd/index.m3u8").unwrap();
    assert_eq!(status, 200, "{body}");
    let segment = body
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .unwrap()
        .to_owned();
    let (status, _) = testkit::http::get(addr, &format!("/test/sd/{segment}")).unwrap();
    assert_eq!(status, 200);
    let (status, _) = testkit::http::get(addr, "/test/seg0.ts").unwrap();
    assert_eq!(status, 404, "segments are per rendition");
    let (status, _) = testkit::http::get(addr, "/test/uhd/index.m3u8").unwrap();
    assert_eq!(status, 404);
    let status = status_doc(addr);
    let names: Vec<&str> = status["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["test/hd", "test/sd"]);
}

fn status_doc(addr: SocketAddr) -> serde_json::Value {
    status(addr).expect("status document")
}
