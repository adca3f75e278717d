//! healthd with real stream nodes: the `hls` probe plays each node's channel. A killed node
//! leaves the feed; a node whose stream freezes while HTTP keeps answering 200 is caught too,
//! and with every node gone the prefix is withdrawn at BIRD.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::bird::{Bird, BirdCtl};
use testkit::ffmpeg::live_encoder;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, wait_for};

mod support;

use support::{PREFIX, bird_config, deployment, feed_health, spawn_in};

#[test]
fn killed_and_frozen_stream_nodes_are_caught_and_the_prefix_withdrawn() {
    let test = "killed_and_frozen_stream_nodes_are_caught_and_the_prefix_withdrawn";
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-streams");
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, deployment(net, dir.path())).unwrap();
    let bird = Bird::start(&bird_config(net));
    let spawn = |name: &str, args: &[&str]| spawn_in(dir.path(), &config, name, args);
    let mut node1 = spawn("streamnode", &["--node", "ams-1"]);
    let _node2 = spawn("streamnode", &["--node", "ams-2"]);
    let _speaker = spawn("bgp-speaker", &[]);
    let healthd = spawn("healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let mut ctl = BirdCtl::connect(&bird).unwrap();

    let announced = wait_for(Duration::from_secs(30), || {
        ctl.has_route(PREFIX).then_some(())
    });
    assert!(
        announced.is_some(),
        "not announced:\n{}",
        healthd.log_text()
    );
    // The prefix goes up with the first healthy node; wait for both.
    let both = wait_for(Duration::from_secs(15), || {
        ["ams-1", "ams-2"]
            .iter()
            .all(|n| feed_health(feed, n) == Some(true))
            .then_some(())
    });
    assert!(
        both.is_some(),
        "the nodes never both became healthy:\n{}",
        healthd.log_text()
    );

    // An operator drains a node on the node itself: the feed says so, and back.
    let node_admin = SocketAddr::from((net.host(11), 8081));
    let draining = |want: bool| {
        wait_for(Duration::from_secs(5), || {
            let (200, body) = testkit::http::get(feed, "/feed")? else {
                return None;
            };
            let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
            let n = doc["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == "ams-1")?;
            (n["draining"] == want && n["load"].is_number()).then_some(())
        })
        .is_some()
    };
    assert_eq!(
        testkit::http::post(node_admin, "/drain").map(|r| r.0),
        Some(200)
    );
    assert!(draining(true), "the node's drain never reached the feed");
    assert!(
        ctl.has_route(PREFIX),
        "one draining node must not withdraw the site"
    );
    assert_eq!(
        testkit::http::post(node_admin, "/undrain").map(|r| r.0),
        Some(200)
    );
    assert!(draining(false), "the node's undrain never reached the feed");

    // A node dies: it leaves the feed; the other keeps the prefix up.
    node1.signal("KILL");
    node1.wait_exit(Duration::from_secs(5));
    let started = Instant::now();
    let left = wait_for(Duration::from_secs(5), || {
        (feed_health(feed, "ams-1") == Some(false)).then_some(())
    });
    assert!(left.is_some(), "{}", healthd.log_text());
    eprintln!(
        "node killed -> feed change in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(ctl.has_route(PREFIX));

    // The other node's stream freezes while its HTTP server keeps answering 200.
    let started = Instant::now();
    let (status, _) =
        testkit::http::post(SocketAddr::from((net.host(12), 8081)), "/freeze").unwrap();
    assert_eq!(status, 200);
    let gone = wait_for(Duration::from_secs(10), || {
        (!ctl.has_route(PREFIX)).then_some(())
    });
    assert!(
        gone.is_some(),
        "frozen stream not caught:\n{}",
        healthd.log_text()
    );
    eprintln!(
        "stream frozen -> withdrawn at BIRD in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(
        healthd.log_text().contains("stream frozen"),
        "the log says why:\n{}",
        healthd.log_text()
    );
    // So does the feed, for each node that is out.
    let (_, body) = testkit::http::get(feed, "/feed").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reason = |name: &str| {
        doc["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["name"] == name))
            .and_then(|n| n["reason"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(reason("ams-1").contains("status stream"), "{body}");
    assert!(reason("ams-2").contains("stream frozen"), "{body}");
}

#[test]
fn nodes_serving_https_are_probed_over_tls_and_a_wrong_ca_fails_them() {
    let test = "nodes_serving_https_are_probed_over_tls_and_a_wrong_ca_fails_them";
    let Some(_) = testkit::require(test, &[("openssl", "openssl")], false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-tls");
    // Two CAs, each signing a certificate for the service name; healthd trusts the first.
    let openssl = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir.path());
        let out = testkit::process::run(cmd, Duration::from_secs(20)).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    std::fs::write(
        dir.path().join("san.ext"),
        "subjectAltName=DNS:live.tv.example.net\n",
    )
    .unwrap();
    let make = |name: &str| {
        let ca = format!("{name}-ca");
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-days", "1", "-subj", &format!("/CN={ca}")],
            ]
            .concat()
            .into_iter()
            .chain([
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ])
            .collect::<Vec<_>>(),
        );
        openssl(
            &[&["req"][..], &ec, &["-subj", "/CN=live.tv.example.net"]]
                .concat()
                .into_iter()
                .chain([
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ])
                .collect::<Vec<_>>(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.crt"),
        ]);
        (
            dir.path().join(format!("{name}.crt")),
            dir.path().join(format!("{name}.key")),
        )
    };
    let (good_cert, good_key) = make("good");
    let (other_cert, other_key) = make("other");
    // ams-1 serves the trusted certificate, ams-2 the other one; the check trusts the first.
    let with_tls = |text: &str, node: &str, cert: &std::path::Path, key: &std::path::Path| {
        let at = text.find(&format!("name = \"{node}\"")).unwrap();
        let line = "capacity_mbps = 1000\n";
        let end = at + text[at..].find(line).unwrap() + line.len();
        format!(
            "{}tls = {{ cert = \"{}\", key = \"{}\" }}\n{}",
            &text[..end],
            cert.display(),
            key.display(),
            &text[end..]
        )
    };
    let text = deployment(net, dir.path());
    let text = with_tls(&text, "ams-1", &good_cert, &good_key);
    let text = with_tls(&text, "ams-2", &other_cert, &other_key).replace(
        "fall = 3\n",
        &format!(
            "fall = 3\nhls = {{ ca_file = \"{}\" }}\n",
            dir.path().join("good-ca.crt").display()
        ),
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, &text).unwrap();
    let spawn = |name: &str, args: &[&str]| spawn_in(dir.path(), &config, name, args);
    let _node1 = spawn("streamnode", &["--node", "ams-1"]);
    let _node2 = spawn("streamnode", &["--node", "ams-2"]);
    let healthd = spawn("healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let trusted_up = wait_for(Duration::from_secs(20), || {
        (feed_health(feed, "ams-1") == Some(true)).then_some(())
    });
    assert!(
        trusted_up.is_some(),
        "the node with a trusted certificate never came up over HTTPS:\n{text}\n{}",
        healthd.log_text()
    );
    // The other certificate does not chain to the CA: that node stays down, and the log says why.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        feed_health(feed, "ams-2"),
        Some(false),
        "{}",
        healthd.log_text()
    );
}

#[test]
fn probes_leave_from_the_probe_source_and_stream_nodes_never_limit_them() {
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-probe-source");
    let config = dir.path().join("deploy.toml");
    // Limits no player could live with: one connection, a request or two a second. healthd
    // keeps a status stream open and plays the channel beside it.
    let source = net.host(9);
    let text = deployment(net, dir.path())
        .replace(
            "fault_injection = true\n",
            "fault_injection = true\nclient_limits = { connections = 1, rate = 1, burst = 2 }\n",
        )
        .replace(
            "lease = \"2s\" }",
            &format!("lease = \"2s\", probe_source = \"{source}\" }}"),
        );
    std::fs::write(&config, &text).unwrap();
    let (_nodes, healthd, feed) = both_nodes_up(net, dir.path(), &config);
    // Several rounds of probes later, still up, and nothing of healthd's was refused.
    std::thread::sleep(Duration::from_secs(3));
    for (node, host) in [("ams-1", 11), ("ams-2", 12)] {
        assert_eq!(
            feed_health(feed, node),
            Some(true),
            "{}",
            healthd.log_text()
        );
        let admin = SocketAddr::from((net.host(host), 8081));
        let (_, metrics) = testkit::http::get(admin, "/metrics").unwrap();
        for name in [
            "streamnode_refused_connections_total 0",
            "streamnode_limited_requests_total 0",
        ] {
            assert!(metrics.contains(name), "{node}: not {name}:\n{metrics}");
        }
        let (_, client) = testkit::http::get(admin, &format!("/client?address={source}")).unwrap();
        assert!(client.contains("\"trusted\":true"), "{client}");
    }
    // The limits hold for anyone else: a client asking six times at once gets its burst of 2
    // (and a refill), then 429s, or its connection reset while the previous one is still held.
    let node = SocketAddr::from((net.host(11), 8080));
    let answers: Vec<Option<u16>> = (0..6)
        .map(|_| testkit::http::get(node, "/news/index.m3u8").map(|(s, _)| s))
        .collect();
    let served = answers.iter().filter(|a| **a == Some(200)).count();
    assert!(served <= 3, "{answers:?}");
}

/// Starts ams-1, ams-2 and healthd on the deployment at `config` and waits until the feed has
/// both nodes healthy: the nodes, healthd, and the feed's address.
fn both_nodes_up(
    net: Loopback,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> ([Daemon; 2], Daemon, SocketAddr) {
    let spawn = |name: &str, args: &[&str]| spawn_in(dir, config, name, args);
    let nodes = [
        spawn("streamnode", &["--node", "ams-1"]),
        spawn("streamnode", &["--node", "ams-2"]),
    ];
    let healthd = spawn("healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let both = wait_for(Duration::from_secs(20), || {
        ["ams-1", "ams-2"]
            .iter()
            .all(|n| feed_health(feed, n) == Some(true))
            .then_some(())
    });
    assert!(both.is_some(), "{}", healthd.log_text());
    (nodes, healthd, feed)
}

/// Node names listed in the site feed at `addr`.
fn feed_nodes(addr: SocketAddr) -> Vec<String> {
    let Some((200, body)) = testkit::http::get(addr, "/feed") else {
        return Vec::new();
    };
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    doc["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sighup_applies_node_changes_without_disturbing_unchanged_nodes() {
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-reload");
    let config = dir.path().join("deploy.toml");
    let full = deployment(net, dir.path());
    std::fs::write(&config, &full).unwrap();
    let (_nodes, healthd, feed) = both_nodes_up(net, dir.path(), &config);

    // ams-2 leaves the deployment: after SIGHUP it leaves the feed, ams-1 stays up throughout.
    let start = full.find("[[sites.nodes]]\nname = \"ams-2\"").unwrap();
    let end = start + full[start..].find("\n\n").unwrap() + 2;
    let without = format!("{}{}", &full[..start], &full[end..]);
    std::fs::write(&config, &without).unwrap();
    healthd.signal("HUP");
    let gone = wait_for(Duration::from_secs(5), || {
        let nodes = feed_nodes(feed);
        assert_eq!(
            feed_health(feed, "ams-1"),
            Some(true),
            "ams-1 disturbed by the reload"
        );
        (nodes == ["ams-1"]).then_some(())
    });
    assert!(
        gone.is_some(),
        "ams-2 still in the feed:\n{}",
        healthd.log_text()
    );
    assert!(
        healthd
            .log_text()
            .contains("1 node(s) kept, 0 started, 1 stopped")
    );

    // A broken file is refused and the running configuration kept.
    std::fs::write(&config, "[[sites]]\nname = 3\n").unwrap();
    healthd.signal("HUP");
    let refused = wait_for(Duration::from_secs(5), || {
        healthd
            .log_text()
            .contains("keeping the running configuration")
            .then_some(())
    });
    assert!(refused.is_some(), "{}", healthd.log_text());
    assert_eq!(feed_health(feed, "ams-1"), Some(true));

    // ams-2 comes back: probed afresh, healthy again.
    std::fs::write(&config, &full).unwrap();
    healthd.signal("HUP");
    let back = wait_for(Duration::from_secs(10), || {
        (feed_health(feed, "ams-2") == Some(true)).then_some(())
    });
    assert!(
        back.is_some(),
        "ams-2 did not come back:\n{}",
        healthd.log_text()
    );
}

#[test]
fn every_rendition_behind_a_master_playlist_is_checked() {
    let test = "every_rendition_behind_a_master_playlist_is_checked";
    let Some(_) = testkit::require(test, &[("ffmpeg", "ffmpeg")], false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-renditions");
    let config = dir.path().join("deploy.toml");
    let (hd, sd) = (
        SocketAddr::from((net.host(11), 5000)),
        SocketAddr::from((net.host(11), 5002)),
    );
    let text = deployment(net, dir.path()).replace(
        "[[channels]]\nname = \"news\"\nsource = \"builtin\"\n",
        &format!(
            "[[channels]]\nname = \"news\"\nsource = \"udp\"\nsegment_duration = \"1s\"\n\n[[channels.renditions]]\nname = \"hd\"\nprimary = \"{hd}\"\n\n[[channels.renditions]]\nname = \"sd\"\nprimary = \"{sd}\"\n"
        ),
    );
    std::fs::write(&config, text).unwrap();
    let spawn = |name: &str, args: &[&str]| spawn_in(dir.path(), &config, name, args);
    let _node = spawn("streamnode", &["--node", "ams-1"]);
    // One-second segments: a key frame every 25 frames.
    let _hd = live_encoder("320x180", "main", 25, hd, &dir.path().join("hd.log"));
    let sd_encoder = live_encoder("160x90", "main", 25, sd, &dir.path().join("sd.log"));
    let healthd = spawn("healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    let healthy = wait_for(Duration::from_secs(20), || {
        (feed_health(feed, "ams-1") == Some(true)).then_some(())
    });
    assert!(healthy.is_some(), "{}", healthd.log_text());

    // One rendition's feed dies: its playlist freezes while the other's and the master keep
    // answering. A viewer on that rendition is stuck, so the node is down.
    sd_encoder.signal("KILL");
    let started = Instant::now();
    let down = wait_for(Duration::from_secs(10), || {
        (feed_health(feed, "ams-1") == Some(false)).then_some(())
    });
    assert!(
        down.is_some(),
        "a frozen rendition went unnoticed:\n{}",
        healthd.log_text()
    );
    eprintln!(
        "one rendition's feed dead -> node down in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    // The node says so first, on its status stream; the probe, playing every rendition
    // behind the master playlist, finds the frozen one too.
    assert!(
        healthd.log_text().contains("ingest is lost on news/sd"),
        "the log names the rendition:\n{}",
        healthd.log_text()
    );
    let probed = wait_for(Duration::from_secs(10), || {
        healthd
            .log_text()
            .contains("/news/sd/index.m3u8: stream frozen")
            .then_some(())
    });
    assert!(
        probed.is_some(),
        "the probe missed the frozen rendition:\n{}",
        healthd.log_text()
    );
}

/// A second site, Frankfurt: its healthd at `.21`, one stream node `fra-1` at `.22`, no peers.
fn frankfurt(net: Loopback, dir: &std::path::Path) -> String {
    format!(
        r#"[[sites]]
name = "fra"
country = "DE"
latitude = 50.11
longitude = 8.68
asn = 65001
router_id = "10.0.0.2"
speaker = {{ control = "unix:{sock}", admin = "{fra}:9179", startup_hold = "0s" }}
healthd = {{ feed = "{fra}:9180", admin = "{fra}:9181", lease = "2s" }}

[[sites.nodes]]
name = "fra-1"
ipv4 = "{node}"
listen = "{node}:8080"
admin = "{node}:8081"
capacity_mbps = 1000
services = ["live"]

"#,
        sock = dir.join("speaker-fra.sock").display(),
        fra = net.host(21),
        node = net.host(22),
    )
}

#[test]
fn when_every_site_is_down_the_service_stays_announced() {
    let test = "when_every_site_is_down_the_service_stays_announced";
    let Some(_) = testkit::require(test, Bird::PROGRAMS, false) else {
        return;
    };
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-fail-open");
    let config = dir.path().join("deploy.toml");
    let text = deployment(net, dir.path()).replacen(
        "[[services]]",
        &format!("{}[[services]]", frankfurt(net, dir.path())),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let bird = Bird::start(&bird_config(net));
    let spawn = |name: &str, args: &[&str]| spawn_in(dir.path(), &config, name, args);
    // Amsterdam has one node running (ams-2 never starts); Frankfurt none yet.
    let mut node = spawn("streamnode", &["--node", "ams-1"]);
    let _speaker = spawn("bgp-speaker", &["--site", "ams"]);
    let ams = spawn("healthd", &["--site", "ams"]);
    let fra = spawn("healthd", &["--site", "fra"]);
    let mut ctl = BirdCtl::connect(&bird).unwrap();
    let announced = wait_for(Duration::from_secs(30), || {
        ctl.has_route(PREFIX).then_some(())
    });
    assert!(announced.is_some(), "never announced:\n{}", ams.log_text());

    // Amsterdam's last node dies while Frankfurt is down too: every site is down, and the
    // prefix must stay announced somewhere.
    node.signal("KILL");
    node.wait_exit(Duration::from_secs(5));
    let loud = wait_for(Duration::from_secs(10), || {
        ams.log_text().contains("EVERY SITE IS DOWN").then_some(())
    });
    assert!(loud.is_some(), "no fail-open decision:\n{}", ams.log_text());
    let metrics = testkit::http::get(SocketAddr::from((net.host(1), 9181)), "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("healthd_service_fail_open{service=\"live\"} 1"),
        "{metrics}"
    );
    for _ in 0..10 {
        assert!(
            ctl.has_route(PREFIX),
            "withdrawn although every site is down:\n{}",
            ams.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let feed = testkit::http::get(SocketAddr::from((net.host(1), 9180)), "/feed")
        .unwrap()
        .1;
    assert!(feed.contains("\"announcement\":\"fail-open\""), "{feed}");

    // Frankfurt recovers: Amsterdam, still down, withdraws, so viewers go to Frankfurt.
    let _fra_node = spawn("streamnode", &["--node", "fra-1"]);
    let started = Instant::now();
    let gone = wait_for(Duration::from_secs(15), || {
        (!ctl.has_route(PREFIX)).then_some(())
    });
    assert!(
        gone.is_some(),
        "still announced with a healthy site elsewhere:\n{}\n{}",
        ams.log_text(),
        fra.log_text()
    );
    eprintln!(
        "Frankfurt's node started -> Amsterdam withdrawn in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

#[test]
fn protected_channels_are_probed_with_a_token_and_a_node_refusing_it_fails() {
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-tokens");
    std::fs::write(dir.path().join("token.key"), "0a1b2c3d4e5f").unwrap();
    std::fs::write(dir.path().join("other.key"), "ffeeddccbbaa").unwrap();
    let text = deployment(net, dir.path()).replace(
        "source = \"builtin\"\n",
        "source = \"builtin\"\ntoken = \"subscribers\"\n\n[[tokens]]\nname = \"subscribers\"\nkeys = [{ file = \"token.key\" }]\n",
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, &text).unwrap();
    // ams-2 reads a deployment whose key is another: it refuses every token healthd mints,
    // as a node with a wrong key would refuse every subscriber's.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, text.replace("token.key", "other.key")).unwrap();
    let spawn = |config: &std::path::Path, name: &str, args: &[&str]| {
        spawn_in(dir.path(), config, name, args)
    };
    let _nodes = [
        spawn(&config, "streamnode", &["--node", "ams-1"]),
        spawn(&other, "streamnode", &["--node", "ams-2"]),
    ];
    let healthd = spawn(&config, "healthd", &[]);
    let feed = SocketAddr::from((net.host(1), 9180));
    // The feed says why ams-2 is out: its answer to the probe.
    let reason = || {
        let (_, body) = testkit::http::get(feed, "/feed")?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        let node = doc["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "ams-2")?;
        Some((
            node["healthy"] == false,
            node["reason"].as_str()?.to_owned(),
        ))
    };
    let judged = wait_for(Duration::from_secs(20), || {
        let (out, why) = reason()?;
        (feed_health(feed, "ams-1") == Some(true) && out && why.contains("403")).then_some(why)
    });
    assert!(
        judged.is_some(),
        "ams-1 should be healthy, ams-2 (refusing the tokens) out for its 403s: {:?}\n{}",
        reason(),
        healthd.log_text()
    );
    let checks = |host: u8, result: &str| {
        let admin = SocketAddr::from((net.host(host), 8081));
        let (_, metrics) = testkit::http::get(admin, "/metrics").unwrap();
        let series =
            format!("streamnode_token_checks_total{{channel=\"news\",result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(checks(11, "granted") >= 2, "playlists and segments");
    assert_eq!(checks(11, "missing") + checks(11, "forged"), 0);
    assert!(checks(12, "forged") >= 1);
}

#[test]
fn an_edge_is_probed_through_to_its_origin_and_fails_when_the_origin_path_does() {
    let net = Loopback::fresh();
    let dir = TempDir::new("healthd-edge");
    let origin = net.host(11);
    // ams-2 is an edge of ams-1: healthd plays the channel through it, as viewers do.
    let text = deployment(net, dir.path()).replace(
        "name = \"ams-2\"\n",
        &format!(
            "name = \"ams-2\"\nrole = \"edge\"\nedge = {{ origins = [\"{origin}:8080\"], playlist_stale = \"2s\" }}\n"
        ),
    );
    let config = dir.path().join("deploy.toml");
    std::fs::write(&config, &text).unwrap();
    let (nodes, healthd, feed) = both_nodes_up(net, dir.path(), &config);
    let edge = SocketAddr::from((net.host(12), 8080));
    let (_, status) = testkit::http::get(edge, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["edge"]["origin_fetches"].as_u64().unwrap_or(0) > 0,
        "healthd's probes went through the edge to the origin: {status}"
    );
    // The origin dies: the edge's path to it is broken, and its probes say so.
    nodes[0].signal("KILL");
    let out = wait_for(Duration::from_secs(20), || {
        (feed_health(feed, "ams-1") == Some(false) && feed_health(feed, "ams-2") == Some(false))
            .then_some(())
    });
    assert!(
        out.is_some(),
        "the edge should fail once its origin is gone:\n{}",
        healthd.log_text()
    );
}
