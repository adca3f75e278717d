//! Response rate limiting under a flood, over loopback (any 127.0.0.0/8 address is a source):
//! one /24 floods at 5,000 queries per second while 50 resolvers, each from its own /24, ask
//! at a normal rate. Every resolver's query is answered; the flooding prefix receives at most
//! its burst plus its rate in full answers, every second limited answer truncated (slip 2) and
//! the rest dropped, and fewer bytes than it sent; the limiter's counts and `explain` say so.
//! And a real resolver (unbound) whose prefix is limited still resolves: its truncated answer
//! sends it to TCP.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::flood::{flood, resolvers};
use common::{answers, example_on, metric, spawn_geodns, write_geo_db};
use testkit::dnsload;
use testkit::net::Loopback;
use testkit::process::{Daemon, TempDir, wait_for};

const NAME: &str = "live.tv.example.net.";
const RATE: u32 = 100;
const BURST: u32 = 200;
const FLOOD_RATE: u32 = 5_000;
const SECONDS: u64 = 3;
const RESOLVERS: u8 = 50;
/// The flood asks for Amsterdam's answer.
const ECS_SUBNET: &str = "198.51.100.0/24";

/// The tests here measure loss under load: one at a time, so that neither's servers take the
/// other's cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The count of limited responses that were `action` (0 before the first).
fn counted(admin: SocketAddr, action: &str) -> f64 {
    let name = format!("geodns_rate_limited_responses_total{{action=\"{action}\"}}");
    metric(admin, &name).unwrap_or(0.0)
}

/// geodns with the three cities' database and `rate_limit` as its `[dns.rate_limit]`,
/// answering; its DNS and admin addresses.
fn limited_geodns(dir: &TempDir, rate_limit: &str) -> (Daemon, SocketAddr, SocketAddr) {
    write_geo_db(dir.path());
    let net = Loopback::fresh();
    let (dns, admin) = (
        SocketAddr::from((net.host(1), 5353)),
        SocketAddr::from((net.host(1), 9153)),
    );
    let text = format!(
        "{}\n[dns.rate_limit]\n{rate_limit}\n",
        example_on(dns, admin)
    );
    let geodns = spawn_geodns(dir.path(), "geodns", &text);
    let up = wait_for(Duration::from_secs(20), || answers(dns).then_some(()));
    assert!(up.is_some(), "geodns did not answer: {}", geodns.log_text());
    (geodns, dns, admin)
}

#[test]
fn a_flooding_prefix_is_limited_and_everyone_else_answered() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("geodns-rrl");
    let (_geodns, dns, admin) =
        limited_geodns(&dir, &format!("rate = {RATE}\nburst = {BURST}\nslip = 2"));

    // 50 resolvers, 127.78.N.1, 20 queries per second each, many client subnets.
    let resolvers = resolvers(dns, NAME, RESOLVERS, 200, 20, SECONDS);
    let flooder = IpAddr::V4(Ipv4Addr::new(127, 77, 7, 1));
    let flooding = std::thread::spawn(move || {
        flood(dns, flooder, NAME, Some(ECS_SUBNET), FLOOD_RATE, SECONDS)
    });
    // Halfway through the flood, `explain` shows its prefix limited.
    std::thread::sleep(Duration::from_millis(SECONDS * 500));
    let explained = testkit::http::get(
        admin,
        &format!("/explain?name=live.tv.example.net&client={flooder}"),
    )
    .map(|(_, body)| body)
    .unwrap_or_default();
    let seen = flooding.join().unwrap();
    for (n, resolver) in resolvers.into_iter().enumerate() {
        let report = resolver.join().unwrap();
        assert!(
            report.sent >= SECONDS * 20 - 2 && report.lost == 0,
            "resolver {n}: {report}"
        );
        assert_eq!(
            report.rcodes.keys().copied().collect::<Vec<_>>(),
            vec![0],
            "resolver {n}: {report}"
        );
    }
    eprintln!("flood: {seen:?}");
    eprintln!("explain for the flooding source: {explained}");
    // A flood it was: the generator shares two cores with 50 resolvers and the server, so it
    // may fall somewhat short of its pace, never to anything a limit of 100/s would not see.
    assert!(
        seen.sent >= u64::from(FLOOD_RATE) * SECONDS * 3 / 4,
        "{seen:?}"
    );
    // The burst, the rate for the run (and a little: the flood's last answers may come late).
    let allowed = u64::from(BURST) + u64::from(RATE) * (SECONDS + 1);
    assert!(
        seen.full <= allowed && seen.full >= u64::from(BURST),
        "full answers {} (allowed {allowed}): {seen:?}",
        seen.full
    );
    let limited = seen.sent - seen.full;
    assert!(
        seen.truncated.abs_diff(limited / 2) <= limited / 20 + 2,
        "every second limited answer is truncated: {seen:?}"
    );
    assert!(
        seen.bytes_in <= seen.bytes_out,
        "the flooding prefix receives fewer bytes than it sends: {seen:?}"
    );
    // Workers publish their counts every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let (slipped, dropped) = (counted(admin, "slipped"), counted(admin, "dropped"));
    assert!(
        slipped + dropped >= (limited as f64) * 0.98 && slipped + dropped <= limited as f64 + 2.0,
        "limited {limited}, counted slipped {slipped} + dropped {dropped}"
    );
    assert!(
        explained.contains("\"limited\":true") && explained.contains("127.77.7.0/24"),
        "explain shows the flooding prefix limited: {explained}"
    );
    // TCP is never limited: the flooding source still gets a full answer over it.
    if testkit::require(
        "a_flooding_prefix_is_limited_and_everyone_else_answered (TCP)",
        &[("dig", "dnsutils")],
        false,
    )
    .is_some()
    {
        let out = Command::new("dig")
            .args(["+tcp", "+time=2", "+tries=1", "-b", "127.77.7.1"])
            .arg(format!("@{}", dns.ip()))
            .args(["-p", &dns.port().to_string(), "live.tv.example.net", "A"])
            .output()
            .expect("dig runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("status: NOERROR") && text.contains("127.0."),
            "{text}"
        );
    }
}

#[test]
fn a_resolver_whose_prefix_is_limited_still_resolves_over_tcp_after_slip() {
    let Some(_) = testkit::require(
        "a_resolver_whose_prefix_is_limited_still_resolves_over_tcp_after_slip",
        &[("unbound", "unbound"), ("dig", "dnsutils")],
        false,
    ) else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("geodns-rrl-unbound");
    // One response a second per prefix, every limited one truncated.
    let (_geodns, dns, admin) = limited_geodns(&dir, "rate = 1\nburst = 1\nslip = 1");

    // unbound on 127.80.0.1, asking geodns from that address for the zone.
    let resolver = Ipv4Addr::new(127, 80, 0, 1);
    let unbound_conf = dir.path().join("unbound.conf");
    std::fs::write(
        &unbound_conf,
        format!(
            "server:\n  interface: {resolver}\n  port: 5300\n  outgoing-interface: {resolver}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  qname-minimisation: no\n  num-threads: 1\nstub-zone:\n  name: \"tv.example.net\"\n  stub-addr: {}@{}\nremote-control:\n  control-enable: no\n",
            dns.ip(),
            dns.port(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("unbound");
    cmd.arg("-d").arg("-c").arg(&unbound_conf);
    let unbound = Daemon::spawn("unbound", cmd, &dir.path().join("unbound.log")).unwrap();
    let dig = |name: &str| {
        Command::new("dig")
            .args(["+time=3", "+tries=1", "-p", "5300"])
            .arg(format!("@{resolver}"))
            .args([name, "A"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let ready = wait_for(Duration::from_secs(15), || {
        dig("tv.example.net").contains("status: ").then_some(())
    });
    assert!(
        ready.is_some(),
        "unbound did not answer: {}",
        unbound.log_text()
    );

    // Spend the resolver prefix's bucket from a neighbour in its /24, then resolve through
    // unbound: its UDP query is truncated, it asks again over TCP and gets the answer.
    let neighbour = UdpSocket::bind((Ipv4Addr::new(127, 80, 0, 2), 0)).unwrap();
    let spend = dnsload::query(
        &hickory_proto::rr::Name::from_ascii(NAME).unwrap(),
        hickory_proto::rr::RecordType::A,
        None,
    )
    .to_vec()
    .unwrap();
    for _ in 0..20 {
        neighbour.send_to(&spend, dns).unwrap();
    }
    let answer = dig("live.tv.example.net");
    assert!(
        answer.contains("status: NOERROR") && answer.contains("127.0."),
        "unbound resolved through TC and TCP:\n{answer}\n{}",
        unbound.log_text()
    );
    // The neighbour's 20 queries got one answer and 19 truncated ones; anything past 19 is
    // unbound's UDP query, truncated, whose answer therefore came over TCP.
    std::thread::sleep(Duration::from_millis(300));
    let slipped = counted(admin, "slipped");
    assert!(
        slipped >= 20.0,
        "unbound's UDP query was truncated: {slipped} slipped"
    );
}
