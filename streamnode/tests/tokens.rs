//! Protected channels: only requests with a valid subscriber token are served, a playlist's
//! token is carried to the files it names, and every refusal is a 403 (410 for an expired
//! secure link) saying why, counted by reason. Tokens come from `streamnode token`, from the
//! token library with other keys, and from Akamai's reference implementation.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use config::token::{TokenKind, TokenProfile};
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};
use tokens::{Mint, Profile};

const MINIMAL: &str = include_str!("../../config/examples/minimal.toml");
const CURRENT: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const PREVIOUS: &str = "00112233445566778899aabbccddeeff";

struct Node {
    daemon: Daemon,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: TempDir,
}

impl Node {
    /// A node whose channel `test` takes EdgeAuth tokens (keys: current, previous) and
    /// `legacy` nginx secure links.
    fn start() -> Self {
        let dir = TempDir::new("streamnode-tokens");
        std::fs::write(dir.path().join("current.key"), format!("{CURRENT}\n")).unwrap();
        std::fs::write(dir.path().join("previous.key"), PREVIOUS).unwrap();
        std::fs::write(dir.path().join("link.key"), "s3cret").unwrap();
        let net = Loopback::fresh();
        let addr = SocketAddr::from((net.host(1), 8080));
        let admin = SocketAddr::from((net.host(1), 8081));
        let text = MINIMAL
            .replace(
                "listen = \"127.0.1.1:8080\"",
                &format!("listen = \"{addr}\"\nadmin = \"{admin}\""),
            )
            .replace("channels = [\"test\"]", "channels = [\"test\", \"legacy\"]")
            .replace(
                "source = \"builtin\"",
                "source = \"builtin\"\ntoken = \"subscribers\"",
            )
            + "\n[[channels]]\nname = \"legacy\"\nsource = \"builtin\"\ntoken = \"links\"\n\
               \n[[tokens]]\nname = \"subscribers\"\nkeys = [{ file = \"current.key\" }, { file = \"previous.key\" }]\nclock_skew = \"5s\"\n\
               \n[[tokens]]\nname = \"links\"\nkind = \"secure-link\"\nexpression = \"$secure_link_expires$uri$remote_addr $secret\"\nkeys = [{ file = \"link.key\" }]\nclock_skew = \"0s\"\n";
        std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
        cmd.arg("--config")
            .arg(dir.path().join("deploy.toml"))
            .args(["--node", "ams-1"]);
        let daemon = Daemon::spawn("streamnode", cmd, &dir.path().join("streamnode.log")).unwrap();
        let node = Self {
            daemon,
            addr,
            admin,
            dir,
        };
        let token = node.cli_token(&["--acl", "/test/*"]);
        let live = wait_for(Duration::from_secs(10), || {
            let (status, _) = node.get(&format!("/test/index.m3u8?hdnts={token}"))?;
            (status == 200).then_some(())
        });
        assert!(live.is_some(), "no playlist:\n{}", node.daemon.log_text());
        node
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        testkit::http::get(self.addr, path)
    }

    /// A token from `streamnode token --profile subscribers ARGS`.
    fn cli_token(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
        cmd.arg("--config")
            .arg(self.dir.path().join("deploy.toml"))
            .args(["token", "--profile", "subscribers"])
            .args(args);
        let out = run(cmd, Duration::from_secs(10)).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn checks(&self, channel: &str, result: &str) -> u64 {
        let (_, text) = testkit::http::get(self.admin, "/metrics").unwrap();
        let series =
            format!("streamnode_token_checks_total{{channel=\"{channel}\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("streamnode log:\n{}", self.daemon.log_text());
        }
    }
}

/// The profile with other keys, to sign what the node's keys would not.
fn signer(keys: &[&str]) -> Profile {
    let config = TokenProfile {
        name: "subscribers".into(),
        kind: TokenKind::EdgeAuth,
        keys: Vec::new(),
        param: None,
        algorithm: Default::default(),
        clock_skew: config::HumanDuration::from_secs(5),
        carry: Default::default(),
        expression: None,
        expires_param: None,
    };
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    Profile::with_keys(&config, &keys).unwrap()
}

fn acl_token(profile: &Profile, acl: &str) -> String {
    profile
        .mint(&Mint {
            acl: Some(acl),
            end: Some(tokens::now() + 600),
            ..Mint::default()
        })
        .unwrap()
        .token
}

/// The first segment URI of a media playlist.
fn first_segment(playlist: &str) -> &str {
    playlist
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a segment")
}

#[test]
fn only_valid_tokens_play_and_every_refusal_says_why() {
    let node = Node::start();
    let now = tokens::now();

    // Valid: the playlist's URIs carry the token; its segments are served through them, and
    // refused without.
    let token = node.cli_token(&["--acl", "/test/*", "--id", "subscriber-7"]);
    let (status, playlist) = node
        .get(&format!("/test/index.m3u8?hdnts={token}"))
        .unwrap();
    assert_eq!(status, 200, "{playlist}");
    let segment = first_segment(&playlist);
    assert!(
        segment.contains("?hdnts=") && segment.contains("~id=subscriber-7~"),
        "{segment}"
    );
    let (status, _) = node.get(&format!("/test/{segment}")).unwrap();
    assert_eq!(status, 200, "a segment through the carried token");
    let bare = segment.split('?').next().unwrap();
    let (status, body) = node.get(&format!("/test/{bare}")).unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "token refused: no token (expected one in the query or a cookie)\n"
        )
    );

    // In a cookie instead of the query.
    let mut stream = std::net::TcpStream::connect(node.addr).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /test/index.m3u8 HTTP/1.1\r\nHost: x\r\nCookie: a=b; hdnts={token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("cache-control: private"), "{answer}");

    // The previous key still validates; a key that is neither does not.
    let previous = acl_token(&signer(&[PREVIOUS]), "/test/*");
    assert_eq!(
        node.get(&format!("/test/index.m3u8?hdnts={previous}"))
            .unwrap()
            .0,
        200
    );
    let stranger = acl_token(&signer(&["abcdef0123456789"]), "/test/*");
    let refused = |query: &str| node.get(&format!("/test/index.m3u8?{query}")).unwrap();
    for (query, reason) in [
        (String::new(), "no token"),
        (format!("hdnts={stranger}"), "signature does not match"),
        (
            format!(
                "hdnts={}",
                token.replace("~id=subscriber-7", "~id=subscriber-8")
            ),
            "signature does not match",
        ),
        (
            format!(
                "hdnts={}",
                node.cli_token(&[
                    "--acl",
                    "/test/*",
                    "--start",
                    &(now - 7200).to_string(),
                    "--window",
                    "3600"
                ])
            ),
            "expired",
        ),
        (
            format!(
                "hdnts={}",
                node.cli_token(&["--acl", "/test/*", "--start", &(now + 3600).to_string()])
            ),
            "not valid yet",
        ),
        (
            format!("hdnts={}", node.cli_token(&["--acl", "/legacy/*"])),
            "not valid for this path",
        ),
        (
            format!(
                "hdnts={}",
                node.cli_token(&["--acl", "/test/*", "--ip", "192.0.2.1"])
            ),
            "not valid for this client",
        ),
        ("hdnts=exp=soon~hmac=zz".to_owned(), "not a token"),
    ] {
        let (status, body) = refused(&query);
        assert_eq!(status, 403, "{query}: {body}");
        assert!(body.contains(reason), "{query}: {body}");
    }
    for (result, at_least) in [
        ("granted", 4),
        ("missing", 2),
        ("forged", 2),
        ("expired", 1),
        ("not_yet_valid", 1),
        ("wrong_path", 1),
        ("wrong_address", 1),
        ("malformed", 1),
    ] {
        let n = node.checks("test", result);
        assert!(n >= at_least, "{result}: {n}");
    }
    // Still serving right after all of it.
    assert_eq!(
        node.get(&format!("/test/index.m3u8?hdnts={token}"))
            .unwrap()
            .0,
        200
    );
}

#[test]
fn secure_links_are_checked_as_nginx_checks_them() {
    let node = Node::start();
    // The links sign the address the node sees the test's requests come from.
    let client = std::net::TcpStream::connect(node.addr)
        .unwrap()
        .local_addr()
        .unwrap()
        .ip();
    let link = |uri: &str, window: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamnode"));
        cmd.arg("--config")
            .arg(node.dir.path().join("deploy.toml"))
            .args([
                "token",
                "--profile",
                "links",
                "--url",
                uri,
                "--window",
                window,
            ])
            .args(["--ip", &client.to_string(), "--base", "http://x"]);
        let out = run(cmd, Duration::from_secs(10)).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        url.strip_prefix("http://x").unwrap().to_owned()
    };
    let ready = wait_for(Duration::from_secs(10), || {
        (node.get(&link("/legacy/index.m3u8", "600"))?.0 == 200).then_some(())
    });
    assert!(ready.is_some());
    let (status, playlist) = node.get(&link("/legacy/index.m3u8", "600")).unwrap();
    assert_eq!(status, 200);
    // Each segment carries a link of its own.
    let segment = first_segment(&playlist);
    assert!(
        segment.contains("?md5=") && segment.contains("&expires="),
        "{segment}"
    );
    assert_eq!(node.get(&format!("/legacy/{segment}")).unwrap().0, 200);
    let other = link("/legacy/other.m3u8", "600");
    let moved = other.replace("/legacy/other.m3u8", "/legacy/index.m3u8");
    assert_eq!(node.get(&moved).unwrap().0, 403, "a link for another URI");
    // Expired: 410, as nginx answers.
    let expired = link("/legacy/index.m3u8", "1");
    std::thread::sleep(Duration::from_millis(2100));
    let (status, body) = node.get(&expired).unwrap();
    assert_eq!((status, body.as_str()), (410, "token refused: expired\n"));
}

#[test]
fn tokens_of_akamai_s_reference_play_with_ffmpeg() {
    let test = "tokens_of_akamai_s_reference_play_with_ffmpeg";
    let Some(reference) = testkit::edgeauth::require(test) else {
        return;
    };
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let node = Node::start();
    let token = reference.mint(&testkit::edgeauth::Ask {
        key: CURRENT,
        algorithm: "sha256",
        acl: Some("/test/*"),
        start: Some(tokens::now() - 5),
        end: tokens::now() + 600,
        session_id: Some("ffmpeg"),
        ..Default::default()
    });
    let url = format!("http://{}/test/index.m3u8?hdnts={token}", node.addr);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-i", &url, "-t", "6", "-f", "null", "-"]);
    let out = run(cmd, Duration::from_secs(60)).unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg: {errors}"
    );
    assert!(
        node.checks("test", "granted") >= 3,
        "playlist and segments checked"
    );
    assert_eq!(node.checks("test", "forged"), 0);
}

#[test]
fn a_token_that_expires_mid_session_stops_the_player_cleanly_with_403() {
    let test = "a_token_that_expires_mid_session_stops_the_player_cleanly_with_403";
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let node = Node::start();
    // Valid for 6 s (within the profile's 5 s of skew: 11 s in all).
    let token = node.cli_token(&["--acl", "/test/*", "--window", "6"]);
    let url = format!("http://{}/test/index.m3u8?hdnts={token}", node.addr);
    let mut cmd = Command::new("ffmpeg");
    // Warnings: ffmpeg reports a playlist it can no longer reload as one, and stops.
    cmd.args(["-v", "warning", "-i", &url, "-t", "60", "-f", "null", "-"]);
    let started = std::time::Instant::now();
    let out = run(cmd, Duration::from_secs(90)).unwrap();
    let ended = started.elapsed();
    let errors = String::from_utf8_lossy(&out.stderr);
    // The player ran until the token expired, then its next request was refused with a 403:
    // an HTTP error, not a hang, a 500 or a broken segment.
    assert!(
        ended >= Duration::from_secs(8) && ended < Duration::from_secs(40),
        "played {ended:?}: {errors}"
    );
    assert!(
        errors.contains("403") || errors.contains("Forbidden"),
        "ffmpeg says it was refused: {errors}"
    );
    assert!(node.checks("test", "expired") >= 1);
    assert_eq!(
        node.checks("test", "forged") + node.checks("test", "malformed"),
        0
    );
}
