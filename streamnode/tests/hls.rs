//! streamnode as players see it: ffprobe/ffmpeg read the built-in channel's live playlist and
//! decode it, the playlist stays valid over time, bad requests get clean answers. And as
//! healthd sees it: the status document, and the status stream that pushes what changes.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");

struct Node {
    daemon: Daemon,
    addr: SocketAddr,
    _dir: TempDir,
}

fn start() -> Node {
    let dir = TempDir::new("streamnode");
    let (daemon, addr) = start_with("", &dir);
    let node = Node {
        daemon,
        addr,
        _dir: dir,
    };
    let live = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    assert!(live.is_some(), "no playlist:\n{}", node.daemon.log_text());
    node
}

/// (media sequence, target duration, EXTINF durations) of a playlist.
fn parse(text: &str) -> (u64, f64, Vec<f64>) {
    let value = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let durations = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.trim_end_matches(',').parse().ok())
        .collect();
    (
        value("#EXT-X-MEDIA-SEQUENCE:") as u64,
        value("#EXT-X-TARGETDURATION:"),
        durations,
    )
}

#[test]
fn ffprobe_reads_the_live_playlist_and_ffmpeg_plays_it() {
    let Some(_) = testkit::require(
        "ffprobe_reads_the_live_playlist_and_ffmpeg_plays_it",
        &[("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg")],
        false,
    ) else {
        return;
    };
    let node = start();
    let url = format!("http://{}/test/index.m3u8", node.addr);
    let mut probe = Command::new("ffprobe");
    probe
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&url);
    let out =
        String::from_utf8_lossy(&run(probe, Duration::from_secs(20)).unwrap().stdout).into_owned();
    assert!(out.contains("h264") && out.contains("aac"), "{out}");
    let mut play = Command::new("ffmpeg");
    play.args(["-hide_banner", "-v", "warning", "-i"])
        .arg(&url)
        .args(["-t", "6", "-f", "null", "-"]);
    let played = run(play, Duration::from_secs(30)).unwrap();
    let stderr = String::from_utf8_lossy(&played.stderr);
    assert!(played.status.success(), "{stderr}");
    assert!(!stderr.to_lowercase().contains("error"), "{stderr}");
}

#[test]
fn the_playlist_stays_valid_over_time() {
    let node = start();
    let mut last_sequence = 0;
    let mut last_newest = 0;
    let mut advanced = false;
    for _ in 0..8 {
        let (status, text) = testkit::http::get(node.addr, "/test/index.m3u8").unwrap();
        assert_eq!(status, 200);
        let (sequence, target, durations) = parse(&text);
        assert!(
            sequence >= last_sequence,
            "media sequence went back: {text}"
        );
        last_sequence = sequence;
        // The window fills before it slides: watch the newest segment instead.
        let newest = sequence + durations.len() as u64;
        advanced |= newest > last_newest && last_newest > 0;
        last_newest = newest;
        assert!(!durations.is_empty() && durations.len() <= 6, "{text}");
        for d in durations {
            assert!(
                d.round() <= target,
                "EXTINF {d} above TARGETDURATION {target}: {text}"
            );
        }
        std::thread::sleep(Duration::from_millis(600));
    }
    assert!(advanced, "a live playlist moves");
}

#[test]
fn bad_requests_get_clean_answers() {
    let node = start();
    for path in [
        "/nope/index.m3u8",
        "/test/seg999999.ts",
        "/test/../../etc/passwd",
        "/test/seg1.ts.bak",
        "/%2e%2e/x",
    ] {
        let (status, _) = testkit::http::get(node.addr, path).unwrap_or((0, String::new()));
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    let (status, body) = testkit::http::get(node.addr, "/status").unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["channels"][0]["live"], true, "{doc}");
    assert!(
        doc["channels"][0]["newest_segment_age"]
            .as_f64()
            .is_some_and(|a| a < 4.0),
        "{doc}"
    );
}

#[test]
fn signals_drain_and_metrics_describe_the_node() {
    let node = start();
    let admin = SocketAddr::from((node.addr.ip(), 8081));
    let draining = |want: bool| {
        wait_for(Duration::from_secs(5), || {
            let (_, body) = testkit::http::get(node.addr, "/status")?;
            let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
            (doc["draining"] == want).then_some(())
        })
        .is_some()
    };
    node.daemon.signal("USR1");
    assert!(
        draining(true),
        "SIGUSR1 did not drain:\n{}",
        node.daemon.log_text()
    );
    // Viewers keep playing while the node drains.
    assert_eq!(
        testkit::http::get(node.addr, "/test/index.m3u8").map(|r| r.0),
        Some(200)
    );
    node.daemon.signal("USR2");
    assert!(draining(false), "SIGUSR2 did not end the drain");
    let (status, metrics) = testkit::http::get(admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in [
        "streamnode_channel_live{channel=\"test\"} 1",
        "streamnode_channel_active_feed{channel=\"test\",feed=\"builtin\"} 1",
        "streamnode_requests_total{outcome=\"playlist\"}",
        "streamnode_draining 0",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
}

#[test]
fn players_cmcd_becomes_viewer_qoe_and_malformed_cmcd_is_only_counted() {
    let node = start();
    let admin = SocketAddr::from((node.addr.ip(), 8081));
    let ask = |path: &str, headers: &[(&str, &str)]| {
        let mut s = std::net::TcpStream::connect(node.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n{extra}\r\n");
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
        answer.split(' ').nth(1).unwrap_or_default().to_owned()
    };
    // As hls.js sends it: in the query, percent-encoded; a player starting up.
    let start =
        "/test/index.m3u8?CMCD=bl%3D0%2Cmtp%3D25000%2Cot%3Dm%2Csf%3Dh%2Csid%3D%22p1%22%2Csu";
    assert_eq!(ask(start, &[]), "200");
    // As headers: a player whose buffer ran dry, and another session.
    let playlist = "/test/index.m3u8";
    let headers = [
        ("CMCD-Request", "bl=1200,mtp=8000"),
        ("CMCD-Object", "br=800,d=2000,ot=av"),
        ("CMCD-Status", "bs"),
        ("CMCD-Session", "cid=\"test\",sid=\"p2\",sf=h,st=l"),
    ];
    assert_eq!(ask(playlist, &headers), "200");
    // Malformed: still served, counted.
    assert_eq!(ask("/test/index.m3u8?CMCD=bl%3Dlots", &[]), "200");
    assert_eq!(ask(playlist, &[("CMCD-Session", "sid=unquoted")]), "200");

    let (_, metrics) = testkit::http::get(admin, "/metrics").unwrap();
    for line in [
        "streamnode_cmcd_requests_total{channel=\"test\"} 2",
        "streamnode_cmcd_malformed_total 2",
        "streamnode_viewer_startup_requests_total{channel=\"test\"} 1",
        "streamnode_viewer_stalls_total{channel=\"test\"} 1",
        "streamnode_viewer_sessions{channel=\"test\"} 2",
        "streamnode_viewer_buffer_seconds_count{channel=\"test\"} 2",
        "streamnode_viewer_buffer_seconds_bucket{channel=\"test\",le=\"0.5\"} 1",
        "streamnode_viewer_bitrate_bytes_per_second_bucket{channel=\"test\",le=\"125000\"} 1",
        "streamnode_viewer_throughput_bytes_per_second_count{channel=\"test\"} 2",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
}

#[test]
fn the_admin_api_wants_its_token_and_offers_fault_injection_only_when_configured() {
    let dir = TempDir::new("streamnode-admin");
    std::fs::write(dir.path().join("admin.token"), "t0ken\n").unwrap();
    let (daemon, addr) = start_with("admin_token = { file = \"admin.token\" }", &dir);
    let admin = SocketAddr::from((addr.ip(), 8081));
    let up = wait_for(Duration::from_secs(10), || {
        testkit::http::get(admin, "/healthz").filter(|(s, _)| *s == 200)
    });
    assert!(up.is_some(), "admin endpoint:\n{}", daemon.log_text());
    let draining = || {
        let (_, body) = testkit::http::get(addr, "/status").unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["draining"] == true
    };
    assert_eq!(testkit::http::post(admin, "/drain").map(|r| r.0), Some(401));
    assert_eq!(
        testkit::http::post_with_token(admin, "/drain", "wrong").map(|r| r.0),
        Some(401)
    );
    assert!(!draining(), "a refused drain changes nothing");
    assert!(daemon.log_text().contains("admin request refused"));
    assert_eq!(
        testkit::http::post_with_token(admin, "/drain", "t0ken").map(|r| r.0),
        Some(200)
    );
    assert!(draining());
    // Fault injection is not configured on this node: the route does not exist.
    assert_eq!(
        testkit::http::post_with_token(admin, "/freeze", "t0ken").map(|r| r.0),
        Some(404)
    );
}

#[test]
fn many_concurrent_viewers_are_all_served() {
    let node = start();
    let (_, playlist) = testkit::http::get(node.addr, "/test/index.m3u8").unwrap();
    let segment = playlist
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .unwrap()
        .to_owned();
    let addr = node.addr;
    let viewers: Vec<_> = (0..200)
        .map(|_| {
            let segment = segment.clone();
            std::thread::spawn(move || {
                let playlist = testkit::http::get(addr, "/test/index.m3u8").map(|r| r.0);
                let segment = testkit::http::get(addr, &format!("/test/{segment}")).map(|r| r.0);
                (playlist, segment)
            })
        })
        .collect();
    for v in viewers {
        assert_eq!(v.join().unwrap(), (Some(200), Some(200)));
    }
    // HEAD answers like GET, without a body.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"HEAD /test/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n"),
        "HEAD carried a body: {answer}"
    );
    assert!(
        !node.daemon.log_text().contains("panicked"),
        "{}",
        node.daemon.log_text()
    );
}

#[test]
fn the_status_stream_beats_and_pushes_ingest_loss_and_drains_at_once() {
    use testkit::http::{EventStream, Streamed};
    let dir = TempDir::new("streamnode-status-stream");
    let (mut daemon, addr) = start_channel(
        "fault_injection = true",
        "source = \"builtin\"\nstall_timeout = \"300ms\"",
        &dir,
    );
    let admin = SocketAddr::from((addr.ip(), 8081));
    let live = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/test/index.m3u8").filter(|(s, _)| *s == 200)
    });
    assert!(live.is_some(), "no playlist:\n{}", daemon.log_text());
    let field = |doc: &str, pointer: &str| {
        serde_json::from_str::<serde_json::Value>(doc)
            .ok()
            .and_then(|v| v.pointer(pointer).cloned())
            .unwrap_or_default()
    };
    let ingest = |doc: &str| field(doc, "/channels/0/ingest");
    let stream = EventStream::open(addr, "/status/stream?heartbeat_ms=50").expect("stream");
    assert_eq!(stream.status, 200);
    let (_, first) = stream
        .wait_data(Duration::from_secs(5), |_| true)
        .expect("the document comes first");
    if ingest(&first) != "flowing" {
        stream
            .wait_data(Duration::from_secs(5), |d| ingest(d) == "flowing")
            .expect("ingest flowing");
    }

    let said = stream.during(Duration::from_secs(1));
    let beats = said.iter().filter(|(_, s)| *s == Streamed::Comment).count();
    println!("heartbeats in 1 s at 50 ms: {beats}");
    assert!((10..=30).contains(&beats), "{said:?}");

    let cut = std::time::Instant::now();
    assert_eq!(
        testkit::http::post(admin, "/cut-ingest").map(|r| r.0),
        Some(200)
    );
    let (at, doc) = stream
        .wait_data(Duration::from_secs(3), |d| ingest(d) == "lost")
        .expect("ingest loss pushed");
    let took = at - cut;
    println!(
        "ingest cut -> pushed: {} ms (stall_timeout 300 ms)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(300),
        "before the stall timeout: {doc}"
    );
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(
        testkit::http::post(admin, "/restore-ingest").map(|r| r.0),
        Some(200)
    );
    stream
        .wait_data(Duration::from_secs(2), |d| ingest(d) == "flowing")
        .expect("ingest back pushed");

    let drained = std::time::Instant::now();
    assert_eq!(testkit::http::post(admin, "/drain").map(|r| r.0), Some(200));
    let (at, _) = stream
        .wait_data(Duration::from_secs(2), |d| field(d, "/draining") == true)
        .expect("drain pushed");
    println!("drain -> pushed: {} ms", (at - drained).as_millis());
    assert!(at - drained < Duration::from_millis(500));

    // Heartbeats are bounded below whatever a client asks.
    let fast = EventStream::open(addr, "/status/stream?heartbeat_ms=1").expect("stream");
    let beats = fast
        .during(Duration::from_millis(500))
        .iter()
        .filter(|(_, s)| *s == Streamed::Comment)
        .count();
    assert!(beats <= 30, "{beats} heartbeats in 500 ms");

    // Streams are capped; the ones open keep flowing.
    let mut more = Vec::new();
    let refused = loop {
        let s = EventStream::open(addr, "/status/stream").expect("stream");
        if s.status != 200 {
            break s.status;
        }
        more.push(s);
        assert!(more.len() <= 16, "no cap on status streams");
    };
    assert_eq!(refused, 503);
    assert_eq!(more.len() + 2, streamnode::status::MAX_STREAMS);
    assert!(stream.next(Duration::from_millis(500)).is_some());

    // The node's exit ends the stream at once.
    daemon.signal("KILL");
    let killed = std::time::Instant::now();
    let ended = loop {
        match stream.next(Duration::from_secs(2)) {
            Some((at, Streamed::Ended(_))) => break Some(at),
            Some(_) => continue,
            None => break None,
        }
    };
    let ended = ended.expect("the stream outlived the node");
    println!(
        "node killed -> stream ended: {} ms",
        (ended - killed).as_millis()
    );
    assert!(ended - killed < Duration::from_millis(500));
    let _ = daemon.wait_exit(Duration::from_secs(5));
}

/// A node listening on a fresh loopback address (admin API on port 8081 beside it) with
/// `extra` added to its node table.
fn start_with(extra: &str, dir: &TempDir) -> (Daemon, SocketAddr) {
    start_channel(extra, "source = \"builtin\"", dir)
}

/// [`start_with`], the channel's `source = "builtin"` line replaced by `source`.
fn start_channel(extra: &str, source: &str, dir: &TempDir) -> (Daemon, SocketAddr) {
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 8080));
    let admin = SocketAddr::from((net.host(1), 8081));
    let text = MINIMAL
        .replace(
            "listen = \"127.0.1.1:8080\"",
            &format!("listen = \"{addr}\"\nadmin = \"{admin}\"\n{extra}"),
        )
        .replace("source = \"builtin\"", source);
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(["--node", "ams-1"]);
    let daemon = Daemon::spawn("streamnode", cmd, &dir.path().join("streamnode.log")).unwrap();
    (daemon, addr)
}

/// `curl`'s HTTP version and status for a URL, with extra arguments.
fn curl(args: &[&str], url: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "--max-time",
        "5",
    ])
    .args(args)
    .arg(url);
    String::from_utf8_lossy(&run(cmd, Duration::from_secs(10)).unwrap().stdout).into_owned()
}

#[test]
fn tls_and_http2_serve_players() {
    let test = "tls_and_http2_serve_players";
    let programs = [
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("ffprobe", "ffmpeg"),
    ];
    let Some(_) = testkit::require(test, &programs, false) else {
        return;
    };
    let dir = TempDir::new("streamnode-tls");
    let (cert, key) = (dir.path().join("node.crt"), dir.path().join("node.key"));
    let mut req = Command::new("openssl");
    req.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ])
    .args([
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=live.tv.example.net",
        "-keyout",
    ])
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    assert!(run(req, Duration::from_secs(20)).unwrap().status.success());
    let (daemon, addr) = start_with(
        &format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ),
        &dir,
    );
    let url = format!("https://{addr}/test/index.m3u8");
    let up = wait_for(Duration::from_secs(10), || {
        (curl(&["-k"], &url) == "2 200").then_some(())
    });
    assert!(up.is_some(), "no HTTP/2 over TLS: {}", daemon.log_text());
    assert_eq!(curl(&["-k", "--http1.1"], &url), "1.1 200");
    // Clear text is not served on a TLS node.
    assert_ne!(
        curl(&[], &format!("http://{addr}/test/index.m3u8")),
        "1.1 200"
    );
    // A player reads the live playlist over TLS and decodes it.
    let mut probe = Command::new("ffprobe");
    probe
        .args([
            "-v",
            "error",
            "-tls_verify",
            "0",
            "-show_entries",
            "stream=codec_name",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&url);
    let out = run(probe, Duration::from_secs(20)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h264"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn clear_text_http2_and_slow_clients() {
    use std::io::{Read, Write};
    let Some(_) = testkit::require(
        "clear_text_http2_and_slow_clients",
        &[("curl", "curl")],
        false,
    ) else {
        return;
    };
    let dir = TempDir::new("streamnode-h2c");
    let (daemon, addr) = start_with("header_timeout = \"2s\"", &dir);
    let url = format!("http://{addr}/test/index.m3u8");
    let up = wait_for(Duration::from_secs(10), || {
        (curl(&["--http2-prior-knowledge"], &url) == "2 200").then_some(())
    });
    assert!(
        up.is_some(),
        "no HTTP/2 with prior knowledge: {}",
        daemon.log_text()
    );
    // A client that never finishes its request headers is cut off after `header_timeout`.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /test/index.m3u8 HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
    // Meanwhile the node serves everyone else.
    assert_eq!(curl(&[], &url), "1.1 200");
}

#[test]
fn a_node_with_unreadable_certificates_does_not_start() {
    let dir = TempDir::new("streamnode-badtls");
    let text = MINIMAL.replace(
        "capacity_mbps = 1000",
        "capacity_mbps = 1000\ntls = { cert = \"missing.crt\", key = \"missing.key\" }",
    );
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(["--node", "ams-1"]);
    let out = run(cmd, Duration::from_secs(10)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started without its certificates:\n{err}"
    );
    assert!(
        err.contains("missing.crt"),
        "the error does not name the file:\n{err}"
    );
}

#[test]
fn connections_past_the_limit_wait_their_turn() {
    use std::io::{Read, Write};
    let dir = TempDir::new("streamnode-limit");
    let (daemon, addr) = start_with("max_connections = 2", &dir);
    let up = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/healthz").map(|_| ())
    });
    assert!(up.is_some(), "{}", daemon.log_text());
    let ask = |timeout: Duration| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    // Two viewers hold their (kept-alive) connections.
    let (first, answer) = ask(Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_second, answer) = ask(Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A third waits...
    let (mut third, answer) = ask(Duration::from_millis(500));
    assert_eq!(answer, "", "served past the limit");
    // ...and is served once a place frees up.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = third.read(&mut buf).unwrap_or(0);
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "not served after a place freed: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// A TCP connection to `to` from `source` (any loopback address can be a client).
fn connect_from(source: std::net::IpAddr, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// One HTTP/1.1 request on a kept-alive connection: the status, or `None` when the connection
/// was closed or reset.
fn ask(stream: &mut std::net::TcpStream, path: &str) -> Option<u16> {
    use std::io::{BufRead, BufReader, Read, Write};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: node\r\n\r\n").as_bytes())
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

#[test]
fn a_client_over_its_limits_is_refused_and_everyone_else_is_served() {
    let dir = TempDir::new("streamnode-clients");
    let net = Loopback::fresh();
    let (flood, viewer, trusted) = (net.host(50), net.host(60), net.host(70));
    let limits = format!(
        "client_limits = {{ connections = 4, rate = 20, burst = 40, trusted = [\"{trusted}/32\"] }}"
    );
    let (daemon, addr) = start_with(&limits, &dir);
    let admin = SocketAddr::new(addr.ip(), 8081);
    let live = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    assert!(live.is_some(), "{}", daemon.log_text());

    // The flood asks as fast as it can on one connection for two seconds while a viewer plays
    // (a playlist every 100 ms) from another address.
    let started = std::time::Instant::now();
    let flooding = std::thread::spawn(move || {
        let mut c = connect_from(flood.into(), addr).unwrap();
        let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
        while started.elapsed() < Duration::from_secs(2) {
            *statuses
                .entry(ask(&mut c, "/test/index.m3u8").unwrap_or(0))
                .or_default() += 1;
        }
        statuses
    });
    let mut viewed = Vec::new();
    let mut c = connect_from(viewer.into(), addr).unwrap();
    while started.elapsed() < Duration::from_secs(2) {
        viewed.push(ask(&mut c, "/test/index.m3u8"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses = flooding.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        viewed.len() >= 10 && viewed.iter().all(|s| *s == Some(200)),
        "the viewer was not served: {viewed:?}"
    );
    let served = statuses.get(&200).copied().unwrap_or(0);
    let refused = statuses.get(&429).copied().unwrap_or(0);
    // At most the burst and the rate over the time, give or take a refill.
    assert!(
        f64::from(served) <= 40.0 + 20.0 * elapsed + 2.0 && served >= 40,
        "{statuses:?} in {elapsed:.1} s"
    );
    assert!(refused > 100, "the flood was not limited: {statuses:?}");
    assert_eq!(
        statuses.len(),
        2,
        "answers other than 200 and 429: {statuses:?}"
    );

    // The flooding address may hold 4 connections; the next is reset at once, before any
    // request; others still connect. (The flood's first connection is closed: let the node see
    // it.)
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<_> = (0..4)
        .map(|_| connect_from(flood.into(), addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = connect_from(flood.into(), addr).unwrap();
    assert_eq!(
        ask(&mut fifth, "/healthz"),
        None,
        "a fifth connection was served"
    );
    let mut other = connect_from(viewer.into(), addr).unwrap();
    assert_eq!(ask(&mut other, "/test/index.m3u8"), Some(200));

    // The admin API tells where the flood stands.
    let (code, body) = testkit::http::get(admin, &format!("/client?address={flood}")).unwrap();
    assert_eq!(code, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["connections"], 4, "{state}");
    assert_eq!(state["max_connections"], 4, "{state}");
    assert_eq!(state["trusted"], false, "{state}");
    assert_eq!(state["prefix"], format!("{flood}/32"), "{state}");
    drop(held);

    // Trusted clients, and healthd (its feed listens on 127.0.0.1 in this deployment), are
    // never limited: connections or requests.
    for client in [trusted, std::net::Ipv4Addr::LOCALHOST] {
        let mut many: Vec<_> = (0..8)
            .map(|_| connect_from(client.into(), addr).unwrap())
            .collect();
        let answers: Vec<_> = (0..200)
            .map(|i| ask(&mut many[i % 8], "/test/index.m3u8"))
            .collect();
        assert!(
            answers.iter().all(|s| *s == Some(200)),
            "{client} limited: {answers:?}"
        );
    }

    let (_, metrics) = testkit::http::get(admin, "/metrics").unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(
        value("streamnode_limited_requests_total"),
        f64::from(refused)
    );
    assert!(value("streamnode_refused_connections_total") >= 1.0);
}

#[test]
fn the_built_in_channel_can_have_aligned_renditions() {
    let Some(_) = testkit::require(
        "the_built_in_channel_can_have_aligned_renditions",
        &[("ffprobe", "ffmpeg")],
        false,
    ) else {
        return;
    };
    let dir = TempDir::new("streamnode");
    let renditions = "source = \"builtin\"\n\n[[channels.renditions]]\nname = \"360p\"\n\n[[channels.renditions]]\nname = \"180p\"\nclip = \"180p\"\n";
    let (node, addr) = start_channel("", renditions, &dir);
    let master = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|(_, body)| body)
    });
    let Some(master) = master else {
        panic!("no master playlist:\n{}", node.log_text());
    };
    assert!(
        master.contains("CODECS=\"avc1.4D401E,mp4a.40.2\",RESOLUTION=640x360")
            && master.contains("\n360p/index.m3u8\n")
            && master.contains("CODECS=\"avc1.4D400C,mp4a.40.2\",RESOLUTION=320x180")
            && master.contains("\n180p/index.m3u8\n"),
        "{master}"
    );
    // Renditions are cut at the same instants: same sequence numbers, same program dates, so
    // a player can switch between them at any segment.
    let timeline = |rendition: &str| -> Vec<String> {
        let (_, body) = testkit::http::get(addr, &format!("/test/{rendition}/index.m3u8")).unwrap();
        body.lines()
            .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME") || l.ends_with(".ts"))
            .map(str::to_owned)
            .collect()
    };
    let aligned = wait_for(Duration::from_secs(5), || {
        let (a, b) = (timeline("360p"), timeline("180p"));
        (!a.is_empty() && a == b).then_some(())
    });
    assert!(
        aligned.is_some(),
        "{:?}\n{:?}",
        timeline("360p"),
        timeline("180p")
    );
    let (sizes, _) = testkit::ffmpeg::probe_sizes(&format!("http://{addr}/test/index.m3u8"));
    assert!(
        sizes.contains("640,360") && sizes.contains("320,180"),
        "{sizes}"
    );
}

/// An HLS attribute list (RFC 8216 section 4.2), read strictly: names of `A-Z 0-9 -`, values
/// a decimal integer, a decimal or signed float, a quoted string without line breaks or
/// quotes, a resolution, or an enumerated string. `None` on anything else.
fn attributes(list: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return None;
        }
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let value = &quoted[..end];
            if value.contains(['\r', '\n']) {
                return None;
            }
            (format!("\"{value}\""), &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            let value = &after[..end];
            let plain = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'x'));
            if !plain {
                return None;
            }
            (value.to_owned(), &after[end..])
        };
        out.push((name.to_owned(), value));
        rest = match next.strip_prefix(',') {
            Some(more) if !more.is_empty() => more,
            None if next.is_empty() => next,
            _ => return None,
        };
    }
    Some(out)
}

#[test]
fn a_steered_master_lists_every_rendition_per_site_and_players_read_it() {
    let test = "a_steered_master_lists_every_rendition_per_site_and_players_read_it";
    let Some(_) = testkit::require(test, &[("ffprobe", "ffmpeg")], false) else {
        return;
    };
    let dir = TempDir::new("streamnode");
    let net = Loopback::fresh();
    let addr = SocketAddr::from((net.host(1), 8080));
    // Two sites: the node's own, and another whose pathway here leads to the same node, so
    // that a player can fetch everything either lists.
    let renditions = "source = \"builtin\"\n\n[[channels.renditions]]\nname = \"360p\"\n\n[[channels.renditions]]\nname = \"180p\"\nclip = \"180p\"\n\n\
         [[sites]]\nname = \"fra\"\ncountry = \"DE\"\nlatitude = 50.11\nlongitude = 8.68\nasn = 65002\nrouter_id = \"10.2.0.1\"\nspeaker.control = \"unix:/tmp/anycast-fra-speaker.sock\"\n\
         [[sites.nodes]]\nname = \"fra-1\"\nipv4 = \"127.0.21.1\"\nlisten = \"127.0.21.1:8080\"\ncapacity_mbps = 1000\nservices = [\"live\"]\n";
    let steering = format!(
        "\n[services.content_steering]\nserver = \"https://steer.tv.example.net/steer/live?v=1\"\nsites = {{ ams = \"http://{addr}\", fra = \"http://{addr}/\" }}\nttl = 5\n"
    );
    let text = MINIMAL
        .replace(
            "listen = \"127.0.1.1:8080\"",
            &format!("listen = \"{addr}\""),
        )
        .replace("source = \"builtin\"", renditions)
        .replace("channels = [\"test\"]\n", &format!("channels = [\"test\"]\n{steering}"))
        .replace(
            "[dns]\nlisten = [\"127.0.0.1:5353\"]\n",
            "[dns]\nlisten = [\"127.0.0.1:5353\"]\ncontent_steering = { listen = [\"127.0.0.1:8085\"] }\n",
        );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, &text).unwrap();
    let check = run(
        {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
            cmd.arg("--config").arg(&config).arg("check-config");
            cmd
        },
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        check.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config").arg(&config).args(["--node", "ams-1"]);
    let node = Daemon::spawn("streamnode", cmd, &dir.path().join("streamnode.log")).unwrap();
    let master = wait_for(Duration::from_secs(10), || {
        testkit::http::get(addr, "/test/index.m3u8")
            .filter(|(s, _)| *s == 200)
            .map(|(_, body)| body)
    });
    let Some(master) = master else {
        panic!("no master playlist:\n{}", node.log_text());
    };

    // Strictly: every line a known tag with a well-formed attribute list, or a variant's URI.
    let mut lines = master.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "{master}");
    let (mut steering_tag, mut variants) = (None, Vec::new());
    let mut pending: Option<Vec<(String, String)>> = None;
    for line in lines {
        if let Some(list) = line.strip_prefix("#EXT-X-CONTENT-STEERING:") {
            steering_tag = Some(attributes(list).unwrap_or_else(|| panic!("{line}")));
        } else if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            assert!(pending.is_none(), "two STREAM-INF in a row:\n{master}");
            pending = Some(attributes(list).unwrap_or_else(|| panic!("{line}")));
        } else if line.starts_with('#') {
            assert!(
                ["#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"].contains(&line),
                "unexpected tag {line}"
            );
        } else {
            let attrs = pending
                .take()
                .unwrap_or_else(|| panic!("URI {line} without STREAM-INF"));
            variants.push((attrs, line.to_owned()));
        }
    }
    let value = |attrs: &[(String, String)], name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim_matches('"').to_owned())
    };
    let tag = steering_tag.expect("EXT-X-CONTENT-STEERING");
    let session = value(&tag, "SERVER-URI").unwrap();
    assert!(
        session.starts_with("https://steer.tv.example.net/steer/live?v=1&session="),
        "{session}"
    );
    assert_eq!(
        value(&tag, "PATHWAY-ID").as_deref(),
        Some("ams"),
        "starts here"
    );
    let mut by_pathway: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (attrs, uri) in &variants {
        assert!(value(attrs, "BANDWIDTH").is_some(), "{attrs:?}");
        let pathway = value(attrs, "PATHWAY-ID").expect("PATHWAY-ID");
        let stable = value(attrs, "STABLE-VARIANT-ID").expect("STABLE-VARIANT-ID");
        assert_eq!(uri, &format!("http://{addr}/test/{stable}/index.m3u8"));
        by_pathway.entry(pathway).or_default().push(stable);
    }
    assert_eq!(
        by_pathway.keys().collect::<Vec<_>>(),
        ["ams", "fra"],
        "one pathway per site carrying the service"
    );
    assert!(
        by_pathway.values().all(|v| v == &["360p", "180p"]),
        "every pathway lists every rendition: {by_pathway:?}"
    );
    let second = testkit::http::get(addr, "/test/index.m3u8").unwrap().1;
    assert_ne!(
        value(
            &attributes(
                second
                    .lines()
                    .nth(3)
                    .unwrap()
                    .strip_prefix("#EXT-X-CONTENT-STEERING:")
                    .unwrap()
            )
            .unwrap(),
            "SERVER-URI"
        ),
        Some(session),
        "each master names a session of its own"
    );

    // ffprobe reads the master and every variant it lists, through each pathway.
    let url = format!("http://{addr}/test/index.m3u8");
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "program=program_id",
        "-of",
        "csv=p=0",
        &url,
    ]);
    let out = run(cmd, Duration::from_secs(30)).unwrap();
    let programs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(
        out.status.success() && programs == 4,
        "ffprobe read {programs} variants: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        master
    );
}
