//! The edge role: a stream node serving an origin's channels through its cache. Many viewers
//! asking for one object at once cause one origin fetch, all get the same bytes, and the first
//! bytes reach them before the origin has sent the last; ffmpeg plays through the edge as the
//! live window moves; the cache stays within its bound; an origin that is down is passed over.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");

/// An origin that sends half of each segment, waits, then the rest: the time between is when
/// an edge that streams to its waiters has already given them the first half.
struct SlowOrigin {
    addr: SocketAddr,
    segment_requests: Arc<AtomicUsize>,
}

const HALF: usize = 188 * 100;
const PAUSE: Duration = Duration::from_millis(1500);

impl SlowOrigin {
    fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let segment_requests = Arc::new(AtomicUsize::new(0));
        let counted = segment_requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counted = counted.clone();
                std::thread::spawn(move || serve_slowly(stream, &counted));
            }
        });
        Self {
            addr,
            segment_requests,
        }
    }
}

fn serve_slowly(mut stream: TcpStream, segment_requests: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    if path.starts_with("/test/seg") {
        segment_requests.fetch_add(1, Ordering::SeqCst);
        let packet = |b: u8| {
            let mut p = vec![0xffu8; 188];
            p[0] = 0x47;
            p[1] = b;
            p
        };
        let half: Vec<u8> = (0..HALF / 188).flat_map(|_| packet(1)).collect();
        let rest: Vec<u8> = (0..HALF / 188).flat_map(|_| packet(2)).collect();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            2 * HALF
        );
        let _ = stream.write_all(&half);
        let _ = stream.flush();
        std::thread::sleep(PAUSE);
        let _ = stream.write_all(&rest);
    } else {
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}

/// The minimal deployment with an edge node `ams-e1` on `edge` fetching from `origins`, and
/// `extra` in its edge table.
fn deployment(origin: SocketAddr, edge: SocketAddr, origins: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
    let edge_node = format!(
        "[[sites.nodes]]\nname = \"ams-e1\"\nipv4 = \"{}\"\nlisten = \"{edge}\"\nadmin = \"{}\"\ncapacity_mbps = 1000\nservices = [\"live\"]\nrole = \"edge\"\nedge = {{ origins = [{}]{extra} }}\n\n[[services]]",
        edge.ip(),
        SocketAddr::new(edge.ip(), 8081),
        list.join(", ")
    );
    MINIMAL
        .replace(
            "listen = \"127.0.1.1:8080\"",
            &format!(
                "listen = \"{origin}\"\nadmin = \"{}\"",
                SocketAddr::new(origin.ip(), 8081)
            ),
        )
        .replacen("[[services]]", &edge_node, 1)
}

fn spawn(dir: &TempDir, node: &str) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(["--node", node]);
    Daemon::spawn(node, cmd, &dir.path().join(format!("{node}.log"))).unwrap()
}

/// A GET's status, the time to its first body byte and to its last, and the body.
fn timed_get(addr: SocketAddr, path: &str) -> (u16, Duration, Duration, Vec<u8>) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 65536];
    loop {
        let n = reader.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| start.elapsed());
        body.extend_from_slice(&buf[..n]);
    }
    let last = start.elapsed();
    if chunked {
        body = dechunk(&body);
    }
    (status, first.unwrap_or(last), last, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// Waits until the edge serves the channel's playlist.
fn wait_live(edge: SocketAddr, daemon: &Daemon) {
    let live = wait_for(Duration::from_secs(15), || {
        let (status, _) = testkit::http::get(edge, "/test/index.m3u8")?;
        (status == 200).then_some(())
    });
    assert!(live.is_some(), "{}", daemon.log_text());
}

/// ffmpeg playing `seconds` of the channel through the edge; its errors, empty when none.
fn play(edge: SocketAddr, seconds: u32) -> (bool, String) {
    let url = format!("http://{edge}/test/index.m3u8");
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-v",
        "error",
        "-i",
        &url,
        "-t",
        &seconds.to_string(),
        "-f",
        "null",
        "-",
    ]);
    let out = run(cmd, Duration::from_secs(u64::from(seconds) + 60)).unwrap();
    let errors = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    (out.status.success(), errors)
}

fn edge_status(admin_host: SocketAddr) -> serde_json::Value {
    let (_, body) = testkit::http::get(admin_host, "/status").unwrap();
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["edge"].clone()
}

#[test]
fn a_burst_for_one_segment_is_one_origin_fetch_streamed_to_every_waiter() {
    let net = Loopback::fresh();
    let dir = TempDir::new("streamnode-edge-burst");
    let slow = SlowOrigin::start(SocketAddr::from((net.host(3), 8080)));
    let edge = SocketAddr::from((net.host(2), 8080));
    // A dead origin first: passed over for the slow one.
    let dead = SocketAddr::from((net.host(4), 8080));
    std::fs::write(
        dir.path().join("deploy.toml"),
        deployment(
            SocketAddr::from((net.host(1), 8080)),
            edge,
            &[dead, slow.addr],
            "",
        ),
    )
    .unwrap();
    let daemon = spawn(&dir, "ams-e1");
    let up = wait_for(Duration::from_secs(10), || {
        testkit::http::get(edge, "/status").map(|_| ())
    });
    assert!(up.is_some(), "{}", daemon.log_text());

    let clients = 100;
    let results: Vec<(u16, Duration, Duration, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| s.spawn(|| timed_get(edge, "/test/seg7.ts")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        slow.segment_requests.load(Ordering::SeqCst),
        1,
        "one origin fetch for {clients} viewers"
    );
    let expected = &results[0].3;
    assert_eq!(expected.len(), 2 * HALF);
    let mut early = 0;
    for (status, first, last, body) in &results {
        assert_eq!(*status, 200);
        assert!(body == expected, "every viewer gets the same bytes");
        // First bytes before the origin's pause ends; the last after it.
        if *first < PAUSE.mul_f64(0.8) {
            early += 1;
        }
        assert!(*last >= PAUSE.mul_f64(0.9), "{last:?}");
    }
    assert!(
        early >= clients * 9 / 10,
        "only {early} of {clients} got their first bytes before the origin finished"
    );
    // Asked again: from the cache.
    let (status, _, last, body) = timed_get(edge, "/test/seg7.ts");
    assert_eq!((status, &body), (200, expected));
    assert!(last < PAUSE / 2, "{last:?}");
    assert_eq!(slow.segment_requests.load(Ordering::SeqCst), 1);
    let status = edge_status(SocketAddr::new(edge.ip(), 8080));
    assert_eq!(status["requests"]["miss"], 1, "{status}");
    assert_eq!(
        status["requests"]["coalesced"].as_u64().unwrap() + 1,
        clients as u64,
        "{status}"
    );
    // A segment the origin does not have is not cached: asked again, fetched again.
    for _ in 0..2 {
        assert_eq!(timed_get(edge, "/test/later.ts").0, 404);
    }
    let status = edge_status(SocketAddr::new(edge.ip(), 8080));
    assert_eq!(status["requests"]["miss"], 3, "{status}");
    // A channel the node does not carry is not asked of the origin.
    assert_eq!(timed_get(edge, "/other/seg7.ts").0, 404);
    assert_eq!(slow.segment_requests.load(Ordering::SeqCst), 1);
    assert_eq!(edge_status(edge)["requests"]["miss"], 3);
}

#[test]
fn ffmpeg_plays_through_an_edge_as_the_window_moves_and_the_cache_keeps_its_bound() {
    let test = "ffmpeg_plays_through_an_edge_as_the_window_moves_and_the_cache_keeps_its_bound";
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("streamnode-edge-play");
    let origin = SocketAddr::from((net.host(1), 8080));
    let edge = SocketAddr::from((net.host(2), 8080));
    std::fs::write(
        dir.path().join("deploy.toml"),
        deployment(origin, edge, &[origin], ", cache_mib = 1"),
    )
    .unwrap();
    let origin_daemon = spawn(&dir, "ams-1");
    // Live at the origin first: a fetch before it has a segment (a 503) would count as failed.
    wait_live(origin, &origin_daemon);
    let edge_daemon = spawn(&dir, "ams-e1");
    wait_live(edge, &edge_daemon);
    let (ok, errors) = play(edge, 30);
    assert!(
        ok && errors.is_empty(),
        "ffmpeg through the edge: {errors}\n{}",
        edge_daemon.log_text()
    );
    let status = edge_status(edge);
    let bytes = status["cache_bytes"].as_u64().unwrap();
    assert!(bytes <= 1024 * 1024, "cache over its bound: {status}");
    assert!(status["origin_fetches"].as_u64().unwrap() > 10, "{status}");
    assert_eq!(status["origin_failures"], 0, "{status}");
}

#[test]
fn viewers_play_a_protected_channel_through_the_edge_with_their_own_tokens() {
    let net = Loopback::fresh();
    let dir = TempDir::new("streamnode-edge-tokens");
    let origin = SocketAddr::from((net.host(1), 8080));
    let edge = SocketAddr::from((net.host(2), 8080));
    std::fs::write(dir.path().join("token.key"), "0a1b2c3d4e5f").unwrap();
    let text = deployment(origin, edge, &[origin], "").replace(
        "source = \"builtin\"",
        "source = \"builtin\"\ntoken = \"subscribers\"\n\n[[tokens]]\nname = \"subscribers\"\nkeys = [{ file = \"token.key\" }]",
    );
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let _origin = spawn(&dir, "ams-1");
    let edge_daemon = spawn(&dir, "ams-e1");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args([
            "token",
            "--profile",
            "subscribers",
            "--acl",
            "/test/*",
            "--id",
            "viewer-1",
        ]);
    let out = run(cmd, Duration::from_secs(10)).unwrap();
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let playlist = wait_for(Duration::from_secs(15), || {
        let (status, body) = testkit::http::get(edge, &format!("/test/index.m3u8?hdnts={token}"))?;
        (status == 200 && body.contains("#EXTINF")).then_some(body)
    });
    let Some(playlist) = playlist else {
        panic!("no playlist through the edge:\n{}", edge_daemon.log_text());
    };
    // The viewer's token in the URIs, and only it: the edge's own stays between edge and origin.
    let segment = playlist
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    assert!(segment.contains("~id=viewer-1~"), "{segment}");
    assert_eq!(segment.matches("hdnts=").count(), 1, "{segment}");
    let (status, _) = testkit::http::get(edge, &format!("/test/{segment}")).unwrap();
    assert_eq!(status, 200);
    // Refused at the edge without one, whatever the cache holds.
    let bare = segment.split('?').next().unwrap();
    assert_eq!(
        testkit::http::get(edge, &format!("/test/{bare}"))
            .unwrap()
            .0,
        403
    );
    assert_eq!(testkit::http::get(edge, "/test/index.m3u8").unwrap().0, 403);
}

#[test]
fn ffmpeg_through_an_edge_keeps_playing_when_its_origin_dies() {
    let test = "ffmpeg_through_an_edge_keeps_playing_when_its_origin_dies";
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("streamnode-edge-failover");
    let first = SocketAddr::from((net.host(1), 8080));
    let second = SocketAddr::from((net.host(3), 8080));
    let edge = SocketAddr::from((net.host(2), 8080));
    // Two origins packaging the same built-in channel from the same epoch: the same segments
    // under the same numbers, as redundant packagers of one contribution feed make.
    let text = deployment(first, edge, &[first, second], "").replacen(
        "[[sites.nodes]]\nname = \"ams-e1\"",
        &format!(
            "[[sites.nodes]]\nname = \"ams-2\"\nipv4 = \"{}\"\nlisten = \"{second}\"\ncapacity_mbps = 1000\nservices = [\"live\"]\n\n[[sites.nodes]]\nname = \"ams-e1\"",
            second.ip()
        ),
        1,
    );
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let origin = spawn(&dir, "ams-1");
    let _second = spawn(&dir, "ams-2");
    let edge_daemon = spawn(&dir, "ams-e1");
    wait_live(edge, &edge_daemon);
    let player = std::thread::spawn(move || play(edge, 16));
    std::thread::sleep(Duration::from_secs(6));
    origin.signal("KILL");
    let (ok, errors) = player.join().unwrap();
    assert!(
        ok && errors.is_empty(),
        "ffmpeg through the edge while its first origin died: {errors}\n{}",
        edge_daemon.log_text()
    );
    let status = edge_status(edge);
    assert!(status["origin_failures"].as_u64().unwrap() >= 1, "{status}");
}

/// An origin serving any `/CHANNEL/segN.ts` at once, `SEGMENT` bytes of its own, counting
/// the requests for each path.
struct CountingOrigin {
    addr: SocketAddr,
    requests: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

const SEGMENT: usize = 256 * 1024 - 256 * 1024 % 188;

impl CountingOrigin {
    fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let requests = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path).to_owned();
                *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let _ = stream.write_all(&Self::answer(&path));
            }
        });
        Self { addr, requests }
    }

    /// A segment's bytes: MPEG-TS packets filled with its path, so that no two are alike.
    fn body(path: &str) -> Vec<u8> {
        let fill: Vec<u8> = path.bytes().cycle().take(187).collect();
        (0..SEGMENT / 188)
            .flat_map(|_| std::iter::once(0x47).chain(fill.iter().copied()))
            .collect()
    }

    /// `/CHANNEL/segN.ts` answered, anything else 404.
    fn answer(path: &str) -> Vec<u8> {
        let segment = path
            .rsplit_once("/seg")
            .and_then(|(_, n)| n.strip_suffix(".ts"))
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !segment {
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec();
        }
        let body = Self::body(path);
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        answer
    }

    fn fetched(&self, n: u8) -> usize {
        let requests = self.requests.lock().unwrap();
        requests
            .get(&format!("/test/seg{n}.ts"))
            .copied()
            .unwrap_or(0)
    }
}

#[test]
fn segments_memory_lets_go_are_served_from_the_disk_tier_within_its_bound() {
    let net = Loopback::fresh();
    let dir = TempDir::new("streamnode-edge-disk");
    let origin = CountingOrigin::start(SocketAddr::from((net.host(3), 8080)));
    let edge = SocketAddr::from((net.host(2), 8080));
    let tier = dir.path().join("disk");
    std::fs::create_dir_all(&tier).unwrap();
    // A file of an earlier run is removed at start; the operator's are left.
    std::fs::write(tier.join("edge-1-1.seg"), b"from before").unwrap();
    std::fs::write(tier.join("README"), b"the edge's disk tier").unwrap();
    let extra = format!(
        ", cache_mib = 1, disk = {{ path = \"{}\", mib = 2 }}",
        tier.display()
    );
    std::fs::write(
        dir.path().join("deploy.toml"),
        deployment(
            SocketAddr::from((net.host(1), 8080)),
            edge,
            &[origin.addr],
            &extra,
        ),
    )
    .unwrap();
    let daemon = spawn(&dir, "ams-e1");
    let up = wait_for(Duration::from_secs(10), || {
        testkit::http::get(edge, "/status").map(|_| ())
    });
    assert!(up.is_some(), "{}", daemon.log_text());
    assert!(!tier.join("edge-1-1.seg").exists());
    assert!(tier.join("README").exists());

    let get = |n: u8| {
        let (status, _, _, body) = timed_get(edge, &format!("/test/seg{n}.ts"));
        assert_eq!(status, 200, "seg{n}");
        assert!(
            body == CountingOrigin::body(&format!("/test/seg{n}.ts")),
            "seg{n}: other bytes"
        );
    };
    // What the tiers hold once the writes are done: memory 4 segments, the disk 8.
    let settled = |objects: u64| {
        wait_for(Duration::from_secs(5), || {
            let disk = edge_status(edge)["disk"].clone();
            (disk["objects"] == objects).then_some(disk)
        })
        .unwrap_or_else(|| panic!("{}\n{}", edge_status(edge), daemon.log_text()))
    };
    let tier_bytes = || -> u64 {
        std::fs::read_dir(&tier)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "README")
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    for n in 0..12 {
        get(n);
    }
    let disk = settled(8);
    assert_eq!(disk["bytes"], 8 * SEGMENT as u64, "{disk}");
    assert!(tier_bytes() <= 2 * 1024 * 1024, "{}", tier_bytes());
    // seg0 left memory long ago: from the disk, not the origin.
    get(0);
    assert_eq!(origin.fetched(0), 1);
    assert_eq!(edge_status(edge)["disk"]["reads"], 1);

    // Twenty more: the disk keeps the eight memory let go last, and never more than its bound.
    for n in 12..32 {
        get(n);
        assert!(
            edge_status(edge)["disk"]["bytes"].as_u64().unwrap() <= 2 * 1024 * 1024,
            "{}",
            edge_status(edge)
        );
    }
    settled(8);
    assert!(tier_bytes() <= 2 * 1024 * 1024, "{}", tier_bytes());
    let (fetched_27, fetched_1) = (origin.fetched(27), origin.fetched(1));
    get(27);
    assert_eq!(origin.fetched(27), fetched_27, "seg27 is on disk");
    get(1);
    assert_eq!(origin.fetched(1), fetched_1 + 1, "seg1 left the disk too");
    let status = edge_status(edge);
    assert_eq!(status["disk"]["reads"], 2, "{status}");
    assert_eq!(status["origin_failures"], 0, "{status}");
    let metrics = testkit::http::get(SocketAddr::new(edge.ip(), 8081), "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("streamnode_edge_disk_reads_total 2"),
        "{metrics}"
    );
}

#[test]
fn the_cache_keeps_its_bound_across_many_channels() {
    let net = Loopback::fresh();
    let dir = TempDir::new("streamnode-edge-channels");
    let origin = CountingOrigin::start(SocketAddr::from((net.host(3), 8080)));
    let edge = SocketAddr::from((net.host(2), 8080));
    // Twelve channels through one edge with 2 MiB of memory: 30 MiB of segments go through.
    let channels: Vec<String> = (0..12).map(|c| format!("ch{c}")).collect();
    let quoted: Vec<String> = channels.iter().map(|c| format!("\"{c}\"")).collect();
    let defined: String = channels
        .iter()
        .map(|c| format!("\n[[channels]]\nname = \"{c}\"\nsource = \"builtin\"\n"))
        .collect();
    let text = deployment(
        SocketAddr::from((net.host(1), 8080)),
        edge,
        &[origin.addr],
        ", cache_mib = 2",
    )
    .replace(
        "channels = [\"test\"]",
        &format!("channels = [{}]", quoted.join(", ")),
    )
    .replace(
        "[[channels]]\nname = \"test\"\nsource = \"builtin\"\n",
        &defined,
    );
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let daemon = spawn(&dir, "ams-e1");
    let up = wait_for(Duration::from_secs(10), || {
        testkit::http::get(edge, "/status").map(|_| ())
    });
    assert!(up.is_some(), "{}", daemon.log_text());
    let mut most = 0;
    for n in 0..10 {
        for channel in &channels {
            let path = format!("/{channel}/seg{n}.ts");
            let (status, _, _, body) = timed_get(edge, &path);
            assert_eq!(status, 200, "{path}\n{}", daemon.log_text());
            assert!(body == CountingOrigin::body(&path), "{path}: other bytes");
            let bytes = edge_status(edge)["cache_bytes"].as_u64().unwrap();
            most = most.max(bytes);
            assert!(bytes <= 2 * 1024 * 1024, "{path}: {}", edge_status(edge));
        }
    }
    // The bound is used, not just kept.
    assert!(most > 3 * SEGMENT as u64, "{most}");
    let requests = origin.requests.lock().unwrap().len();
    assert_eq!(requests, 120, "each segment fetched once");
    let status = edge_status(edge);
    assert_eq!(status["origin_failures"], 0, "{status}");
}
