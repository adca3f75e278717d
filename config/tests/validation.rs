//! One test per validation rule: each breaks the minimal example in one way and checks that the
//! problem is reported at the right line with the right key path and an actionable message.

use std::path::Path;

use config::{Deployment, Diagnostic};

const MINIMAL: &str = include_str!("../examples/minimal.toml");

fn parse(text: &str) -> Result<Deployment, Vec<Diagnostic>> {
    Deployment::parse(text, Path::new("deploy.toml")).map_err(|d| d.0)
}

/// 1-based number of the line holding `marker`; markers are chosen to be unique.
fn line_of(text: &str, marker: &str) -> usize {
    let offset = text
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in text"));
    text[..offset].matches('\n').count() + 1
}

/// Asserts that `text` is rejected with a problem at `key`, on the line holding `marker`, whose
/// message contains `says`.
#[track_caller]
fn assert_problem(text: &str, key: &str, marker: &str, says: &str) {
    let problems = match parse(text) {
        Ok(_) => panic!("expected a problem at {key}, but the file was accepted"),
        Err(problems) => problems,
    };
    let found = problems.iter().find(|d| d.key.to_string() == key);
    let Some(d) = found else {
        panic!("no problem reported at {key}; got:\n{problems:#?}");
    };
    assert_eq!(d.line, line_of(text, marker), "wrong line for {key}: {d}");
    assert!(
        d.message.contains(says),
        "message for {key} lacks {says:?}: {d}"
    );
    assert_eq!(d.file, Path::new("deploy.toml"));
    let rendered = d.to_string();
    assert!(
        rendered.starts_with(&format!("deploy.toml:{}:", d.line)),
        "{rendered}"
    );
}

fn replace(from: &str, to: &str) -> String {
    assert!(
        MINIMAL.contains(from),
        "{from:?} not in the minimal example"
    );
    MINIMAL.replacen(from, to, 1)
}

const SECOND_SITE: &str = r#"
[[sites]]
name = "fra"
country = "DE"
latitude = 50.11
longitude = 8.68
asn = 65002
router_id = "10.0.0.2"
speaker.control = "unix:/tmp/fra.sock"

[[sites.nodes]]
name = "fra-1"
ipv4 = "127.0.2.1"
listen = "127.0.2.1:8080"
capacity_mbps = 1000
services = ["live"]
"#;

/// The minimal example with a second site appended after the first one's tables.
fn with_second_site(site: &str) -> String {
    let at = MINIMAL.find("[[services]]").unwrap();
    format!("{}{}\n{}", &MINIMAL[..at], site, &MINIMAL[at..])
}

#[test]
fn minimal_example_is_valid() {
    let d = parse(MINIMAL).unwrap();
    assert_eq!(d.sites.len(), 1);
    assert_eq!(d.sites[0].peers[0].hold_time, 9, "default hold time");
}

#[test]
fn three_site_example_is_valid() {
    let d =
        Deployment::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/three-sites.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = d.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ams", "fra", "lon"]);
    // Two origins a site, and an edge in Frankfurt.
    let origins = |s: &config::Site| {
        s.nodes
            .iter()
            .filter(|n| n.role == config::site::NodeRole::Origin)
            .count()
    };
    assert!(
        d.sites
            .iter()
            .all(|s| origins(s) == 2 && s.peers.len() == 2)
    );
    let edges: Vec<&str> = d
        .nodes()
        .filter(|(_, n)| n.role == config::site::NodeRole::Edge)
        .map(|(_, n)| n.name.as_str())
        .collect();
    assert_eq!(edges, ["fra-3"]);
}

#[test]
fn syntax_error_points_at_line_and_column() {
    let text = replace("asn = 65001", "asn = = 65001");
    let problems = parse(&text).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, line_of(&text, "asn = = 65001"));
    assert!(problems[0].column > 1);
    assert!(
        problems[0].message.starts_with("invalid TOML"),
        "{}",
        problems[0]
    );
}

#[test]
fn unknown_key_is_an_error_naming_the_key() {
    let text = replace("port = 1179", "prot = 1179");
    assert_problem(
        &text,
        "sites[0].peers[0].prot",
        "prot = 1179",
        "unknown key `prot`",
    );
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let text = replace("port = 1179", "prot = 1179")
        .replace("ttl", "tll")
        .replace("kind = \"hls\"", "kind = \"hls\"\nintreval = \"1s\"");
    let problems = parse(&text).unwrap_err();
    let keys: Vec<String> = problems.iter().map(|d| d.key.to_string()).collect();
    assert!(
        keys.contains(&"sites[0].peers[0].prot".to_owned()),
        "{keys:?}"
    );
    assert!(keys.contains(&"checks[0].intreval".to_owned()), "{keys:?}");
}

#[test]
fn wrong_value_type_names_key_and_found_text() {
    let text = replace("address = \"127.0.0.2\"", "address = \"127.0.0.300\"");
    assert_problem(
        &text,
        "sites[0].peers[0].address",
        "127.0.0.300",
        "found \"127.0.0.300\"",
    );
}

#[test]
fn missing_required_key_points_at_its_table() {
    let text = replace("remote_asn = 65000\n", "");
    let problems = parse(&text).unwrap_err();
    assert!(
        problems[0].message.contains("remote_asn"),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].key.to_string().starts_with("sites[0].peers"),
        "{}",
        problems[0]
    );
}

#[test]
fn malformed_prefix_is_rejected() {
    let text = replace("\"198.51.100.0/24\"", "\"198.51.100.0/33\"");
    assert_problem(&text, "services[0].prefixes[0]", "198.51.100.0/33", "found");
}

#[test]
fn prefix_with_host_bits_is_rejected() {
    let text = replace("\"198.51.100.0/24\"", "\"198.51.100.7/24\"");
    assert_problem(
        &text,
        "services[0].prefixes[0]",
        "198.51.100.7/24",
        "expected the network address 198.51.100.0/24",
    );
}

#[test]
fn latitude_out_of_range_is_rejected() {
    let text = replace("latitude = 52.37", "latitude = 152.37");
    assert_problem(
        &text,
        "sites[0].latitude",
        "latitude = 152.37",
        "expected -90 to 90",
    );
}

#[test]
fn longitude_out_of_range_is_rejected() {
    let text = replace("longitude = 4.90", "longitude = 184.90");
    assert_problem(
        &text,
        "sites[0].longitude",
        "longitude = 184.90",
        "expected -180 to 180",
    );
}

#[test]
fn rise_of_zero_is_rejected() {
    let text = replace("kind = \"hls\"", "kind = \"hls\"\nrise = 0");
    assert_problem(&text, "checks[0].rise", "rise = 0", "rise 0 is not allowed");
}

#[test]
fn fall_of_zero_is_rejected() {
    let text = replace("kind = \"hls\"", "kind = \"hls\"\nfall = 0");
    assert_problem(&text, "checks[0].fall", "fall = 0", "fall 0 is not allowed");
}

#[test]
fn timeout_longer_than_interval_is_rejected() {
    let text = replace(
        "kind = \"hls\"",
        "kind = \"hls\"\ninterval = \"1s\"\ntimeout = \"2s\"",
    );
    assert_problem(
        &text,
        "checks[0].timeout",
        "timeout = \"2s\"",
        "at most the interval",
    );
}

#[test]
fn lease_shorter_than_check_interval_is_rejected() {
    let text = replace(
        "kind = \"hls\"",
        "kind = \"hls\"\ninterval = \"5s\"\ntimeout = \"1s\"",
    )
    .replace("speaker.control", "healthd.lease = \"2s\"\nspeaker.control");
    assert_problem(
        &text,
        "sites[0].healthd.lease",
        "healthd.lease",
        "shorter than the interval 5s",
    );
}

#[test]
fn hostname_outside_every_zone_is_rejected() {
    let text = replace("\"live.tv.example.net\"", "\"live.example.org\"");
    assert_problem(
        &text,
        "services[0].hostnames[0]",
        "live.example.org",
        "outside every zone",
    );
}

#[test]
fn prefix_announced_by_no_site_is_rejected() {
    let text = replace("services = [\"live\"]", "services = [\"live\"]")
        .replace("[[sites.peers]]\nname = \"upstream\"\naddress = \"127.0.0.2\"\nremote_asn = 65000\nport = 1179\nlocal_address = \"127.0.0.1\"\n", "");
    assert_problem(
        &text,
        "services[0].prefixes",
        "prefixes = ",
        "no site announces them",
    );
}

#[test]
fn duplicate_site_name_is_rejected() {
    let text = with_second_site(&SECOND_SITE.replace("name = \"fra\"", "name = \"ams\""));
    // The second `name = "ams"` is the duplicate.
    let second = text.match_indices("name = \"ams\"").nth(1).unwrap().0;
    let problems = parse(&text).unwrap_err();
    let d = problems
        .iter()
        .find(|d| d.key.to_string() == "sites[1].name")
        .expect("reported");
    assert_eq!(d.line, text[..second].matches('\n').count() + 1);
    assert!(d.message.contains("already used by sites[0]"), "{d}");
}

#[test]
fn duplicate_node_name_across_sites_is_rejected() {
    let text = with_second_site(&SECOND_SITE.replace("name = \"fra-1\"", "name = \"ams-1\""));
    let problems = parse(&text).unwrap_err();
    let d = problems
        .iter()
        .find(|d| d.key.to_string() == "sites[1].nodes[0].name")
        .expect("reported");
    assert!(d.message.contains("unique across all sites"), "{d}");
}

#[test]
fn duplicate_peer_name_is_rejected() {
    let peer =
        "\n[[sites.peers]]\nname = \"upstream\"\naddress = \"127.0.0.3\"\nremote_asn = 65000\n";
    let text = replace("\n[[sites.nodes]]", &format!("{peer}\n[[sites.nodes]]"));
    assert_problem(
        &text,
        "sites[0].peers[1].name",
        "name = \"upstream\"\naddress = \"127.0.0.3\"",
        "duplicate peer name",
    );
}

#[test]
fn invalid_names_are_rejected() {
    let text = replace("name = \"ams\"", "name = \"Amsterdam 1\"");
    assert_problem(
        &text,
        "sites[0].name",
        "Amsterdam 1",
        "expected 1-63 characters",
    );
}

#[test]
fn unknown_service_reference_is_rejected() {
    let text = replace("services = [\"live\"]", "services = [\"liev\"]");
    assert_problem(
        &text,
        "sites[0].nodes[0].services[0]",
        "liev",
        "unknown service \"liev\": expected one of: live",
    );
}

#[test]
fn unknown_check_profile_is_rejected() {
    let text = replace("check = \"stream\"", "check = \"streem\"");
    assert_problem(
        &text,
        "services[0].check",
        "streem",
        "unknown check profile",
    );
}

#[test]
fn unknown_channel_is_rejected() {
    let text = replace("channels = [\"test\"]", "channels = [\"tset\"]");
    assert_problem(&text, "services[0].channels[0]", "tset", "unknown channel");
}

const RENDITIONS: &str = r#"[[channels]]
name = "test"
source = "udp"

[[channels.renditions]]
name = "hd"
primary = "239.1.1.1:5000"
backup = "239.1.1.2:5000"

[[channels.renditions]]
name = "sd"
primary = "239.1.1.3:5000"
"#;

#[test]
fn renditions_are_accepted_and_checked() {
    let channel = "[[channels]]\nname = \"test\"\nsource = \"builtin\"\n";
    let good = replace(channel, RENDITIONS);
    let d = parse(&good).expect("renditions with their own feeds are valid");
    assert_eq!(d.channels[0].renditions.len(), 2);

    let text = replace(channel, &RENDITIONS.replace("\"sd\"", "\"hd\""));
    assert_problem(
        &text,
        "channels[0].renditions[1].name",
        "name = \"hd\"\nprimary = \"239.1.1.3",
        "duplicate rendition name",
    );
    let text = replace(channel, &RENDITIONS.replace("239.1.1.3", "239.1.1.2"));
    assert_problem(
        &text,
        "channels[0].renditions[1].primary",
        "primary = \"239.1.1.2",
        "already channels[0].renditions[0].backup",
    );
    let text = replace(
        channel,
        &RENDITIONS.replace("primary = \"239.1.1.3:5000\"", "clip = \"180p\""),
    );
    assert_problem(
        &text,
        "channels[0].renditions[1].primary",
        "[[channels.renditions]]\nname = \"sd\"",
        "needs its primary feed",
    );
    let text = replace(
        channel,
        &RENDITIONS.replace(
            "source = \"udp\"",
            "source = \"udp\"\nprimary = \"239.9.9.9:1\"",
        ),
    );
    assert_problem(
        &text,
        "channels[0].primary",
        "239.9.9.9",
        "feeds per rendition",
    );
    let text = replace(
        channel,
        &RENDITIONS.replace("source = \"udp\"", "source = \"builtin\""),
    );
    assert_problem(
        &text,
        "channels[0].renditions[0].primary",
        "239.1.1.1",
        "builtin channel takes no",
    );
}

#[test]
fn unknown_site_in_dns_order_is_rejected() {
    let text = replace(
        "listen = [\"127.0.0.1:5353\"]",
        "listen = [\"127.0.0.1:5353\"]\ndefault_order = [\"ams\", \"lhr\"]",
    );
    assert_problem(
        &text,
        "dns.default_order[1]",
        "default_order",
        "unknown site \"lhr\"",
    );
}

#[test]
fn unknown_site_in_override_is_rejected() {
    let text = format!("{MINIMAL}\n[[dns.overrides]]\ncountries = [\"BE\"]\nsites = [\"bru\"]\n");
    assert_problem(
        &text,
        "dns.overrides[0].sites[0]",
        "sites = [\"bru\"]",
        "unknown site \"bru\"",
    );
}

#[test]
fn override_matching_nothing_is_rejected() {
    let text = format!("{MINIMAL}\n[[dns.overrides]]\nsites = [\"ams\"]\n");
    let problems = parse(&text).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|d| d.key.to_string() == "dns.overrides[0]"
                && d.message.contains("matches nothing"))
    );
}

#[test]
fn hold_time_of_one_or_two_seconds_is_rejected() {
    let text = replace("port = 1179", "port = 1179\nhold_time = 2");
    assert_problem(
        &text,
        "sites[0].peers[0].hold_time",
        "hold_time = 2",
        "RFC 4271",
    );
}

#[test]
fn reserved_as_numbers_are_rejected() {
    let text = replace("asn = 65001", "asn = 23456");
    assert_problem(&text, "sites[0].asn", "asn = 23456", "AS_TRANS");
    let text = replace("remote_asn = 65000", "remote_asn = 0");
    assert_problem(
        &text,
        "sites[0].peers[0].remote_asn",
        "remote_asn = 0",
        "invalid AS number 0",
    );
}

#[test]
fn node_without_address_is_rejected() {
    let text = replace("ipv4 = \"127.0.1.1\"\n", "");
    assert_problem(
        &text,
        "sites[0].nodes[0]",
        "[[sites.nodes]]",
        "node has no address",
    );
}

#[test]
fn withdraw_settle_must_stay_within_the_withdraw_bound() {
    let text = replace(
        "speaker.control = \"unix:/tmp/anycast-ams-speaker.sock\"\n",
        "speaker.control = \"unix:/tmp/anycast-ams-speaker.sock\"\nhealthd.withdraw_settle = \"3s\"\n",
    );
    assert_problem(
        &text,
        "sites[0].healthd.withdraw_settle",
        "withdraw_settle",
        "one-second bound",
    );
}

#[test]
fn viewer_timeouts_must_leave_time_to_be_served() {
    let text = replace(
        "listen = \"127.0.1.1:8080\"",
        "listen = \"127.0.1.1:8080\"\nidle_timeout = \"0s\"",
    );
    assert_problem(
        &text,
        "sites[0].nodes[0].idle_timeout",
        "idle_timeout",
        "would cut off every viewer",
    );
}

#[test]
fn anycast_answers_need_addresses_inside_the_prefixes() {
    let text = replace(
        "check = \"stream\"",
        "check = \"stream\"\nanswer = \"anycast\"",
    );
    assert_problem(
        &text,
        "services[0].anycast_addresses",
        "[[services]]",
        "needs the addresses",
    );
    let text = replace(
        "check = \"stream\"",
        "check = \"stream\"\nanswer = \"anycast\"\nanycast_addresses = [\"192.0.2.1\"]",
    );
    assert_problem(
        &text,
        "services[0].anycast_addresses[0]",
        "192.0.2.1",
        "not inside any of the service's prefixes",
    );
}

#[test]
fn spill_load_must_be_a_fraction() {
    let text = replace("check = \"stream\"", "check = \"stream\"\nspill_load = 1.5");
    assert_problem(
        &text,
        "services[0].spill_load",
        "spill_load = 1.5",
        "at most 1",
    );
}

#[test]
fn ttl_security_excludes_multihop() {
    let text = replace(
        "port = 1179",
        "port = 1179\nttl_security = true\nmultihop = 2",
    );
    assert_problem(
        &text,
        "sites[0].peers[0].ttl_security",
        "ttl_security = true",
        "mutually exclusive",
    );
}

#[test]
fn bfd_is_accepted_with_defaults_like_frr() {
    let text = replace("port = 1179", "port = 1179\nbfd = {}");
    let deployment = parse(&text).expect("valid");
    let bfd = deployment.sites[0].peers[0].bfd.expect("bfd");
    assert_eq!(bfd.detection_time(), std::time::Duration::from_millis(900));
    assert!(!bfd.passive);
}

#[test]
fn bfd_needs_local_address() {
    let text = replace(
        "port = 1179\nlocal_address = \"127.0.0.1\"",
        "port = 1179\nbfd = { interval = \"100ms\" }",
    );
    assert_problem(
        &text,
        "sites[0].peers[0].bfd",
        "bfd = {",
        "bfd needs local_address",
    );
}

#[test]
fn bfd_is_single_hop() {
    let text = replace("port = 1179", "port = 1179\nmultihop = 2\nbfd = {}");
    assert_problem(
        &text,
        "sites[0].peers[0].multihop",
        "multihop = 2",
        "single hop",
    );
}

#[test]
fn bfd_interval_and_multiplier_are_bounded() {
    let text = replace(
        "port = 1179",
        "port = 1179\nbfd = { interval = \"1ms\", multiplier = 0 }",
    );
    assert_problem(
        &text,
        "sites[0].peers[0].bfd.interval",
        "bfd = {",
        "expected 10ms to 60s",
    );
    assert_problem(
        &text,
        "sites[0].peers[0].bfd.multiplier",
        "bfd = {",
        "expected 1-255",
    );
}

#[test]
fn secret_needs_exactly_one_source() {
    let text = replace(
        "port = 1179",
        "port = 1179\nmd5_key = { env = \"K\", file = \"k\" }",
    );
    assert_problem(
        &text,
        "sites[0].peers[0].md5_key",
        "md5_key",
        "expected exactly one",
    );
}

#[test]
fn tcp_control_endpoint_must_be_loopback_with_a_token() {
    let text = replace(
        "speaker.control = \"unix:/tmp/anycast-ams-speaker.sock\"",
        "speaker.control = \"192.0.2.1:50051\"",
    );
    let problems = parse(&text).unwrap_err();
    let at_control: Vec<&Diagnostic> = problems
        .iter()
        .filter(|d| d.key.to_string() == "sites[0].speaker.control")
        .collect();
    assert!(
        at_control.iter().any(|d| d.message.contains("loopback")),
        "{problems:#?}"
    );
    assert!(
        at_control
            .iter()
            .any(|d| d.message.contains("needs a token")),
        "{problems:#?}"
    );
    assert!(
        at_control
            .iter()
            .all(|d| d.line == line_of(&text, "speaker.control"))
    );
}

#[test]
fn passive_peer_needs_a_listening_speaker() {
    let text = replace("port = 1179", "port = 1179\npassive = true");
    let problems = parse(&text).unwrap_err();
    assert!(
        problems.iter().any(
            |d| d.key.to_string() == "sites[0].speaker" && d.message.contains("speaker.listen")
        ),
        "{problems:#?}"
    );
}

#[test]
fn ipv6_prefix_over_ipv4_session_needs_a_v6_next_hop() {
    let text = replace(
        "[\"198.51.100.0/24\"]",
        "[\"198.51.100.0/24\", \"2001:db8:100::/48\"]",
    );
    assert_problem(
        &text,
        "sites[0].peers[0].next_hop_v6",
        "[[sites.peers]]",
        "expected `next_hop_v6`",
    );
}

#[test]
fn zone_without_soa_is_rejected() {
    let text = replace(
        "soa = { mname = \"ns1.tv.example.net\", rname = \"hostmaster.tv.example.net\" }\n",
        "",
    );
    assert_problem(&text, "dns.zones[0]", "[[dns.zones]]", "zone has no SOA");
}

#[test]
fn static_record_data_must_match_its_type() {
    let text = format!(
        "{MINIMAL}records = [{{ name = \"www\", type = \"A\", data = \"2001:db8::1\" }}]\n"
    );
    assert_problem(
        &text,
        "dns.zones[0].records[0].data",
        "records = [",
        "expected an IPv4 address",
    );
}

#[test]
fn cname_at_zone_apex_is_rejected() {
    let text = format!(
        "{MINIMAL}records = [{{ name = \"@\", type = \"CNAME\", data = \"x.example.org.\" }}]\n"
    );
    assert_problem(
        &text,
        "dns.zones[0].records[0].type",
        "records = [",
        "CNAME at the zone apex",
    );
}

#[test]
fn check_parameters_must_match_the_kind() {
    let text = replace("kind = \"hls\"", "kind = \"hls\"\nhttp = { path = \"/\" }");
    assert_problem(
        &text,
        "checks[0].http",
        "http = {",
        "profile of kind \"hls\"",
    );
}

#[test]
fn exec_check_needs_a_command() {
    let text = replace("kind = \"hls\"", "kind = \"exec\"");
    let problems = parse(&text).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|d| d.key.to_string() == "checks[0].exec.command"),
        "{problems:#?}"
    );
}

#[test]
fn degrade_announce_must_change_something() {
    let text = replace(
        "check = \"stream\"",
        "check = \"stream\"\ndegrade = { action = \"announce\" }",
    );
    assert_problem(
        &text,
        "services[0].degrade.action",
        "degrade = {",
        "at least one",
    );
}

#[test]
fn degrade_action_must_be_known() {
    let text = replace(
        "check = \"stream\"",
        "check = \"stream\"\ndegrade = { action = \"blackhole\" }",
    );
    assert_problem(
        &text,
        "services[0].degrade.action",
        "degrade = {",
        "withdraw",
    );
}

#[test]
fn udp_channel_needs_a_primary_feed() {
    let text = replace("source = \"builtin\"", "source = \"udp\"");
    assert_problem(&text, "channels[0].primary", "[[channels]]", "primary feed");
}

#[test]
fn semantic_problems_are_all_reported_in_file_order() {
    let text = replace("latitude = 52.37", "latitude = 152.37")
        .replace("kind = \"hls\"", "kind = \"hls\"\nrise = 0")
        .replace("\"live.tv.example.net\"", "\"live.example.org\"");
    let problems = parse(&text).unwrap_err();
    let keys: Vec<String> = problems.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "sites[0].latitude",
            "services[0].hostnames[0]",
            "checks[0].rise"
        ]
    );
    assert!(problems.windows(2).all(|w| w[0].line <= w[1].line));
}

#[test]
fn connect_retry_below_a_second_is_rejected() {
    let text = replace("port = 1179", "port = 1179\nconnect_retry = \"0s\"");
    assert_problem(
        &text,
        "sites[0].peers[0].connect_retry",
        "connect_retry = \"0s\"",
        "at least 1s",
    );
}

#[test]
fn admin_apis_off_loopback_need_a_token() {
    let node = replace(
        "listen = \"127.0.1.1:8080\"",
        "listen = \"127.0.1.1:8080\"\nadmin = \"192.0.2.1:8081\"",
    );
    assert_problem(
        &node,
        "sites[0].nodes[0].admin",
        "admin = \"192.0.2.1:8081\"",
        "without credentials",
    );
    let with_token = node.replace(
        "admin = \"192.0.2.1:8081\"",
        "admin = \"192.0.2.1:8081\"\nadmin_token = { env = \"NODE_TOKEN\" }",
    );
    assert!(parse(&with_token).is_ok());
    let healthd = replace(
        "speaker.control = ",
        "healthd.admin = \"0.0.0.0:9181\"\nspeaker.control = ",
    );
    assert_problem(
        &healthd,
        "sites[0].healthd.admin",
        "healthd.admin",
        "expected `admin_token",
    );
    let dns = replace(
        "listen = [\"127.0.0.1:5353\"]",
        "listen = [\"127.0.0.1:5353\"]\nadmin = \"[::]:9153\"",
    );
    assert_problem(
        &dns,
        "dns.admin",
        "admin = \"[::]:9153\"",
        "operator overrides",
    );
    // On loopback no token is needed.
    let local = replace(
        "listen = \"127.0.1.1:8080\"",
        "listen = \"127.0.1.1:8080\"\nadmin = \"127.0.1.1:8081\"",
    );
    assert!(parse(&local).is_ok());
}

#[test]
fn fault_injection_needs_an_admin_api() {
    let text = replace(
        "listen = \"127.0.1.1:8080\"",
        "listen = \"127.0.1.1:8080\"\nfault_injection = true",
    );
    assert_problem(
        &text,
        "sites[0].nodes[0].fault_injection",
        "fault_injection = true",
        "expected `admin`",
    );
}

#[test]
fn rate_limits_must_be_meetable_and_their_table_bounded() {
    let at_end = |settings: &str| format!("{MINIMAL}\n[dns.rate_limit]\n{settings}\n");
    let cases = [
        (
            "rate = 0 # zero",
            "dns.rate_limit.rate",
            "rate 0 would allow nothing",
        ),
        (
            "rate = 100\nburst = 50 # small",
            "dns.rate_limit.burst",
            "below rate 100",
        ),
        ("slip = 101 # slip", "dns.rate_limit.slip", "expected 0"),
        (
            "ipv4_prefix = 33 # v4",
            "dns.rate_limit.ipv4_prefix",
            "expected 8 to 32",
        ),
        (
            "ipv6_prefix = 8 # v6",
            "dns.rate_limit.ipv6_prefix",
            "expected 16 to 128",
        ),
        (
            "table_size = 1000 # table",
            "dns.rate_limit.table_size",
            "power of two",
        ),
    ];
    for (settings, key, says) in cases {
        let marker = settings.rsplit('\n').next().unwrap();
        assert_problem(&at_end(settings), key, marker, says);
    }
    let fine = parse(&at_end("rate = 50\nburst = 125\nslip = 1")).unwrap();
    let rl = &fine.dns.unwrap().rate_limit;
    assert_eq!(
        (rl.rate, rl.burst, rl.slip, rl.ipv4_prefix),
        (50, 125, 1, 24)
    );
    let defaults = parse(MINIMAL).unwrap().dns.unwrap().rate_limit;
    assert!(defaults.enabled && defaults.rate >= 1_000, "{defaults:?}");
}

#[test]
fn client_limits_must_be_meetable_and_name_networks() {
    let with = |limits: &str| {
        replace(
            "listen = \"127.0.1.1:8080\"",
            &format!("listen = \"127.0.1.1:8080\"\nclient_limits = {{ {limits} }} # limits"),
        )
    };
    let key = "sites[0].nodes[0].client_limits";
    for (limits, field, says) in [
        ("connections = 0", "connections", "refuse every viewer"),
        ("rate = 0", "rate", "expected requests per second"),
        ("rate = 100, burst = 10", "burst", "below rate 100"),
        ("ipv6_prefix = 129", "ipv6_prefix", "expected 16 to 128"),
        ("table_size = 3", "table_size", "power of two"),
        ("trusted = [\"10.1.2.3/8\"]", "trusted[0]", "host bits set"),
    ] {
        assert_problem(&with(limits), &format!("{key}.{field}"), "# limits", says);
    }
    let fine = parse(&with(
        "rate = 50, trusted = [\"192.0.2.0/28\", \"2001:db8::/48\"]",
    ))
    .unwrap();
    let limits = &fine.sites[0].nodes[0].client_limits;
    assert_eq!(
        (limits.rate, limits.burst, limits.connections),
        (50, 1_000, 256)
    );
    assert_eq!(limits.trusted.len(), 2);
    let defaults = &parse(MINIMAL).unwrap().sites[0].nodes[0].client_limits;
    assert!(
        defaults.enabled && defaults.trusted.is_empty(),
        "{defaults:?}"
    );
}

#[test]
fn healthd_probes_must_leave_from_an_address_of_the_host() {
    let with = |source: &str| {
        replace(
            "router_id = \"10.0.0.1\"",
            &format!("router_id = \"10.0.0.1\"\nhealthd.probe_source = \"{source}\" # src"),
        )
    };
    for bad in ["0.0.0.0", "::", "224.0.0.1"] {
        assert_problem(
            &with(bad),
            "sites[0].healthd.probe_source",
            "# src",
            "expected an address of this host",
        );
    }
    let fine = parse(&with("192.0.2.10")).unwrap();
    assert_eq!(
        fine.sites[0].healthd.probe_source,
        Some("192.0.2.10".parse().unwrap())
    );
}

#[test]
fn cookies_need_one_secret_and_a_rotation_of_a_minute_or_more() {
    let at_end = |settings: &str| format!("{MINIMAL}\n[dns.cookies]\n{settings}\n");
    assert_problem(
        &at_end("secret = {} # none"),
        "dns.cookies.secret",
        "secret = {} # none",
        "neither `file` nor `env`",
    );
    assert_problem(
        &at_end("secret = { env = \"S\" }\nrotate = \"10s\" # short"),
        "dns.cookies.rotate",
        "rotate = \"10s\" # short",
        "at least a minute",
    );
    let fine = parse(&at_end("secret = { file = \"cookie.secret\" }")).unwrap();
    let cookies = fine.dns.unwrap().cookies.unwrap();
    assert_eq!(cookies.rotate.get().as_secs(), 86_400, "a day by default");
}

/// The minimal example with content steering for its service, the steering table given as
/// `steering`, and geodns's steering listener.
fn with_steering(steering: &str) -> String {
    replace(
        "channels = [\"test\"]\n",
        &format!("channels = [\"test\"]\n\n[services.content_steering]\n{steering}\n"),
    )
    .replacen(
        "listen = [\"127.0.0.1:5353\"]\n",
        "listen = [\"127.0.0.1:5353\"]\ncontent_steering = { listen = [\"127.0.0.1:8085\"] }\n",
        1,
    )
}

#[test]
fn content_steering_is_valid_with_a_pathway_per_site() {
    let text = with_steering(
        "server = \"https://steer.tv.example.net/live\"\npathway = \"https://{site}.live.tv.example.net\"",
    );
    let d = parse(&text).unwrap_or_else(|e| panic!("{e:#?}"));
    let steering = d.services[0].content_steering.as_ref().unwrap();
    assert_eq!(
        steering.pathway_url("ams").as_deref(),
        Some("https://ams.live.tv.example.net")
    );
    assert_eq!(
        steering.pathway_host("ams").as_deref(),
        Some("ams.live.tv.example.net")
    );
    assert_eq!((steering.ttl, steering.changing_ttl), (10, 2), "defaults");
    let by_site = with_steering(
        "server = \"https://steer.tv.example.net/live\"\nsites = { ams = \"http://127.0.1.1:8080/\" }",
    );
    let d = parse(&by_site).unwrap_or_else(|e| panic!("{e:#?}"));
    let steering = d.services[0].content_steering.as_ref().unwrap();
    assert_eq!(
        steering.pathway_url("ams").as_deref(),
        Some("http://127.0.1.1:8080")
    );
    assert_eq!(steering.pathway_host("ams"), None, "an address, not a name");
}

#[test]
fn a_pathway_without_the_site_is_rejected() {
    let text = with_steering(
        "server = \"https://steer.tv.example.net/live\"\npathway = \"https://live.tv.example.net\"",
    );
    assert_problem(
        &text,
        "services[0].content_steering.pathway",
        "pathway = ",
        "does not name the site",
    );
}

#[test]
fn a_site_without_a_pathway_is_rejected() {
    let text = with_steering("server = \"https://steer.tv.example.net/live\"");
    assert_problem(
        &text,
        "services[0].content_steering.pathway",
        "[services.content_steering]",
        "site \"ams\" carries the service but has no pathway",
    );
}

#[test]
fn a_steering_server_that_is_not_a_web_url_is_rejected() {
    let text = with_steering(
        "server = \"ftp://steer.tv.example.net/live\"\npathway = \"https://{site}.live.tv.example.net\"",
    );
    assert_problem(
        &text,
        "services[0].content_steering.server",
        "server = \"ftp:",
        "expected an absolute http or https URL",
    );
}

#[test]
fn a_pathway_for_an_unknown_site_is_rejected() {
    let text = with_steering(
        "server = \"https://steer.tv.example.net/live\"\nsites = { ams = \"http://127.0.1.1:8080\", par = \"http://127.0.9.1\" }",
    );
    assert_problem(
        &text,
        "services[0].content_steering.sites.par",
        "sites = ",
        "no site \"par\"",
    );
}

#[test]
fn content_steering_without_a_steering_listener_is_rejected() {
    let text = with_steering(
        "server = \"https://steer.tv.example.net/live\"\npathway = \"https://{site}.live.tv.example.net\"",
    )
    .replace(
        "content_steering = { listen = [\"127.0.0.1:8085\"] }\n",
        "",
    );
    assert_problem(
        &text,
        "services[0].content_steering.server",
        "server = ",
        "expected [dns.content_steering]",
    );
}

/// The minimal example whose node is labelled `version` and whose service has `canary`.
fn with_canary(version: &str, canary: &str) -> String {
    let text = replace(
        "services = [\"live\"]",
        &format!("services = [\"live\"]\nversion = \"{version}\""),
    );
    text.replacen(
        "channels = [\"test\"]",
        &format!("channels = [\"test\"]\ncanary = {{ {canary} }}"),
        1,
    )
}

#[test]
fn a_canary_names_a_version_some_node_has_and_a_share() {
    let d = parse(&with_canary("2.4.0", "version = \"2.4.0\", share = 0.05")).unwrap();
    let canary = d.services[0].canary.as_ref().unwrap();
    assert_eq!((canary.version.as_str(), canary.share), ("2.4.0", 0.05));
    assert_eq!(d.sites[0].nodes[0].version.as_deref(), Some("2.4.0"));
    assert_problem(
        &with_canary("2.3.9", "version = \"2.4.0\", share = 0.05"),
        "services[0].canary.version",
        "canary = {",
        "no node carrying service \"live\" has version \"2.4.0\"",
    );
    for share in ["0.0", "1.5", "-0.1", "nan"] {
        assert_problem(
            &with_canary("2.4.0", &format!("version = \"2.4.0\", share = {share}")),
            "services[0].canary.share",
            "canary = {",
            "above 0 and at most 1",
        );
    }
    let anycast = with_canary("2.4.0", "version = \"2.4.0\", share = 0.05").replacen(
        "channels = [\"test\"]",
        "channels = [\"test\"]\nanswer = \"anycast\"\nanycast_addresses = [\"192.0.2.1\"]",
        1,
    );
    assert_problem(
        &anycast,
        "services[0].canary",
        "canary = {",
        "expected answer = \"nodes\"",
    );
    assert_problem(
        &with_canary("2.4.0", "version = \"\", share = 0.05"),
        "services[0].canary.version",
        "canary = {",
        "empty version",
    );
}

#[test]
fn token_profiles_are_checked_and_channels_name_one() {
    let profile = "\n[[tokens]]\nname = \"subscribers\"\nkeys = [{ env = \"TOKEN_KEY\" }]\n";
    let text = format!("{MINIMAL}{profile}").replacen(
        "source = \"builtin\"",
        "source = \"builtin\"\ntoken = \"subscribers\"",
        1,
    );
    let d = parse(&text).unwrap();
    assert_eq!(d.channels[0].token.as_deref(), Some("subscribers"));
    assert_eq!(d.tokens[0].param(), "hdnts");
    assert_problem(
        &text.replacen("token = \"subscribers\"", "token = \"gold\"", 1),
        "channels[0].token",
        "token = \"gold\"",
        "unknown token profile \"gold\"",
    );
    assert_problem(
        &text.replacen("keys = [{ env = \"TOKEN_KEY\" }]", "keys = []", 1),
        "tokens[0].keys",
        "keys = []",
        "no key",
    );
    let link = text.replacen(
        "keys = [",
        "kind = \"secure-link\"\nexpression = \"$secure_link_expires$uri\"\nkeys = [",
        1,
    );
    assert_problem(
        &link,
        "tokens[0].expression",
        "expression = ",
        "expression without $secret",
    );
    assert_problem(
        &text.replacen("keys = [", "kind = \"secure-link\"\nkeys = [", 1),
        "tokens[0].expression",
        "[[tokens]]",
        "needs the signed text",
    );
}

#[test]
fn an_edge_needs_somewhere_to_fetch_from() {
    let edge = replace(
        "services = [\"live\"]",
        "services = [\"live\"]\nrole = \"edge\"",
    );
    assert_problem(
        &edge,
        "sites[0].nodes[0].role",
        "role = \"edge\"",
        "nowhere to fetch from",
    );
    let with_origin = edge.replacen(
        "role = \"edge\"",
        "role = \"edge\"\nedge = { origins = [\"127.0.9.1:8080\"], cache_mib = 64 }",
        1,
    );
    let d = parse(&with_origin).unwrap();
    let settings = d.sites[0].nodes[0].edge.as_ref().unwrap();
    assert_eq!((settings.cache_mib, settings.origin_port), (64, 8080));
    assert_problem(
        &with_origin.replacen("127.0.9.1:8080", "127.0.1.1:8080", 1),
        "sites[0].nodes[0].edge.origins",
        "edge = {",
        "fetch from itself",
    );
    assert_problem(
        &replace(
            "services = [\"live\"]",
            "services = [\"live\"]\nedge = { cache_mib = 64 }",
        ),
        "sites[0].nodes[0].edge",
        "edge = {",
        "expected role = \"edge\"",
    );
    let disk = with_origin.replacen(
        "cache_mib = 64 }",
        "cache_mib = 64, disk = { path = \"/var/cache/streamnode\", mib = 4096 } }",
        1,
    );
    let d = parse(&disk).unwrap();
    let tier = d.sites[0].nodes[0]
        .edge
        .as_ref()
        .unwrap()
        .disk
        .clone()
        .unwrap();
    assert_eq!(
        (tier.path.to_str(), tier.mib),
        (Some("/var/cache/streamnode"), 4096)
    );
    assert_problem(
        &disk.replacen("mib = 4096", "mib = 0", 1),
        "sites[0].nodes[0].edge.disk.mib",
        "edge = {",
        "keeps nothing",
    );
    assert_problem(
        &disk.replacen("/var/cache/streamnode", "cache", 1),
        "sites[0].nodes[0].edge.disk.path",
        "edge = {",
        "expected an absolute directory",
    );
}
