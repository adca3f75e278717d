//! geodns following a site feed served by healthd's feed server: a change applies to the next
//! query, and a feed gone silent fails open after its grace period.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use feed::{NodeState, SiteFeed};
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, run, wait_for};

const EXAMPLE: &str = include_str!("../../config/examples/three-sites.toml");

fn dig_site(dns: SocketAddr) -> String {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", dns.ip()))
        .arg("-p")
        .arg(dns.port().to_string())
        .args([
            "+short",
            "+tries=1",
            "+time=2",
            "live.tv.example.net",
            "A",
            "+subnet=198.51.100.0/24",
        ]);
    let out =
        String::from_utf8_lossy(&run(cmd, Duration::from_secs(5)).unwrap().stdout).into_owned();
    if out.contains("127.0.11.") {
        "ams".into()
    } else if out.contains("127.0.31.") {
        "lon".into()
    } else if out.contains("127.0.21.") {
        "fra".into()
    } else {
        format!("? {out}")
    }
}

fn ams_feed(healthy: bool) -> SiteFeed {
    let node = |name: &str, ip: &str| NodeState {
        name: name.into(),
        ipv4: Some(ip.parse().unwrap()),
        ipv6: None,
        services: vec!["live".into(), "vod".into()],
        healthy,
        load: 0.1,
        capacity_mbps: 10_000,
        draining: false,
        reason: None,
    };
    SiteFeed {
        site: "ams".into(),
        instance: String::new(),
        generation: 0,
        services: vec![],
        nodes: vec![node("ams-1", "127.0.11.1"), node("ams-2", "127.0.11.2")],
        peers: vec![],
    }
}

#[test]
fn feed_changes_steer_the_next_query_and_a_silent_feed_fails_open() {
    if testkit::require(
        "feed_changes_steer_the_next_query_and_a_silent_feed_fails_open",
        &[("dig", "bind9-dnsutils")],
        false,
    )
    .is_none()
    {
        return;
    }
    let net = Loopback::fresh();
    let feed_addr = SocketAddr::from((net.host(70), 9180));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let publisher = feed::server::Publisher::new(ams_feed(true));
    let server = runtime.spawn({
        let router = feed::server::router(publisher.clone(), Some("feed-secret".into()));
        async move {
            let listener = tokio::net::TcpListener::bind(feed_addr).await.unwrap();
            axum::serve(listener, router).await.unwrap();
        }
    });

    let dir = TempDir::new("geodns-feed");
    let dns = SocketAddr::from((net.host(53), 5353));
    let text = EXAMPLE
        .replace("feed = \"127.0.10.1:9180\"", &format!("feed = \"{feed_addr}\""))
        .replace("listen = [\"127.0.0.1:5353\"]", &format!("listen = [\"{dns}\"]\ngeoip_db = \"geo.mmdb\"\nfeed_token = {{ env = \"FEED_TOKEN\" }}"))
        .replace("admin = \"127.0.0.1:9153\"", &format!("admin = \"{}:9153\"", net.host(53)))
        .replace("feed_grace = \"30s\"", "feed_grace = \"1s\"");
    let text = common::steering_beside(&text, dns);
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let places = [geodns::geo::Place {
        network: "198.51.100.0/24".parse().unwrap(),
        country: "NL",
        continent: "EU",
        latitude: 52.37,
        longitude: 4.90,
    }];
    std::fs::write(
        dir.path().join("geo.mmdb"),
        geodns::geo::synthetic_db(&places).unwrap(),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .env("FEED_TOKEN", "feed-secret");
    let geodns = Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || (dig_site(dns) == "ams")
            .then_some(()))
        .is_some(),
        "{}",
        geodns.log_text()
    );

    // Both Amsterdam nodes fail: the next answers go to London.
    publisher.publish(ams_feed(false));
    let moved = wait_for(Duration::from_secs(2), || {
        (dig_site(dns) == "lon").then_some(())
    });
    assert!(
        moved.is_some(),
        "answers did not move: {}\n{}",
        dig_site(dns),
        geodns.log_text()
    );

    // They recover.
    publisher.publish(ams_feed(true));
    assert!(
        wait_for(Duration::from_secs(2), || (dig_site(dns) == "ams")
            .then_some(()))
        .is_some()
    );

    // Down again, then the feed goes silent: after the grace period Amsterdam counts as up.
    publisher.publish(ams_feed(false));
    assert!(
        wait_for(Duration::from_secs(2), || (dig_site(dns) == "lon")
            .then_some(()))
        .is_some()
    );
    server.abort();
    drop(runtime);
    let failed_open = wait_for(Duration::from_secs(8), || {
        (dig_site(dns) == "ams").then_some(())
    });
    assert!(
        failed_open.is_some(),
        "silent feed did not fail open: {}",
        geodns.log_text()
    );
    assert!(
        geodns.log_text().contains("silent past its grace period"),
        "{}",
        geodns.log_text()
    );
}

/// Serves `publisher` on `addr` on a runtime of its own, as a healthd process would: dropping
/// the runtime ends every connection, as the process's death does.
fn serve_feed(addr: SocketAddr, publisher: &feed::server::Publisher) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let router = feed::server::router(publisher.clone(), None);
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        axum::serve(listener, router).await.unwrap();
    });
    runtime
}

#[test]
fn a_restarted_publisher_is_followed_at_once_and_a_silent_stream_is_dialled_again() {
    if testkit::require(
        "a_restarted_publisher_is_followed_at_once_and_a_silent_stream_is_dialled_again",
        &[("dig", "bind9-dnsutils")],
        false,
    )
    .is_none()
    {
        return;
    }
    let net = Loopback::fresh();
    let feed_addr = SocketAddr::from((net.host(70), 9180));
    // A publisher that has been running a while: Amsterdam down at generation 50.
    let first = feed::server::Publisher::new(ams_feed(true));
    for i in 0..50 {
        first.publish(ams_feed(i % 2 == 0));
    }
    let server = serve_feed(feed_addr, &first);

    let dir = TempDir::new("geodns-feed-restart");
    let dns = SocketAddr::from((net.host(53), 5353));
    let text = EXAMPLE
        .replace(
            "feed = \"127.0.10.1:9180\"",
            &format!("feed = \"{feed_addr}\""),
        )
        .replace(
            "listen = [\"127.0.0.1:5353\"]",
            &format!("listen = [\"{dns}\"]\ngeoip_db = \"geo.mmdb\""),
        )
        .replace(
            "admin = \"127.0.0.1:9153\"",
            &format!("admin = \"{}:9153\"", net.host(53)),
        );
    let text = common::steering_beside(&text, dns);
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let places = [geodns::geo::Place {
        network: "198.51.100.0/24".parse().unwrap(),
        country: "NL",
        continent: "EU",
        latitude: 52.37,
        longitude: 4.90,
    }];
    std::fs::write(
        dir.path().join("geo.mmdb"),
        geodns::geo::synthetic_db(&places).unwrap(),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.arg("--config").arg(dir.path().join("deploy.toml"));
    let geodns = Daemon::spawn("geodns", cmd, &dir.path().join("geodns.log")).unwrap();
    let steered = |site: &str, within: Duration| {
        wait_for(within, || (dig_site(dns) == site).then_some(())).is_some()
    };
    assert!(
        steered("lon", Duration::from_secs(10)),
        "{}",
        geodns.log_text()
    );

    // healthd restarts: a new instance whose generations start over, Amsterdam healthy.
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    let second = feed::server::Publisher::new(ams_feed(true));
    let started = std::time::Instant::now();
    let server = serve_feed(feed_addr, &second);
    assert!(
        steered("ams", Duration::from_secs(3)),
        "the restarted publisher was ignored:\n{}",
        geodns.log_text()
    );
    let followed = started.elapsed();
    println!("geodns followed the restarted publisher after {followed:?}");
    assert!(followed < Duration::from_millis(1500), "{followed:?}");

    // The publisher's host goes silent: the connection stays open, nothing more comes. A new
    // publisher (Amsterdam down) is found once the follower gives up on the silent stream.
    drop(server);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(feed_addr).await.unwrap();
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("geodns dials again")
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
            .await
            .unwrap();
        stream
    });
    let silent_since = std::time::Instant::now();
    let third = feed::server::Publisher::new(ams_feed(false));
    let _server = serve_feed(feed_addr, &third);
    assert!(
        steered("lon", Duration::from_secs(8)),
        "a silent stream was never dropped:\n{}",
        geodns.log_text()
    );
    let moved = silent_since.elapsed();
    println!("geodns left the silent stream after {moved:?}");
    assert!(
        moved >= feed::follower::SILENCE - Duration::from_millis(200),
        "{moved:?}"
    );
    drop(held);
}
