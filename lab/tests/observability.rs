//! What operators get to watch the system with (`ops/`): every daemon's `/metrics` passes
//! `promtool check metrics`; every metric the dashboards and alert rules name is in some
//! daemon's output; the alert rules pass their unit tests (`promtool test rules`), each alert
//! with a severity, a test that fires it and a runbook section; the example scrape
//! configuration names every daemon of the demo with its site.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_yaml_ng::Value;
use testkit::process::{Daemon, TempDir, wait_for};

const PROMTOOL: [(&str, &str); 1] = [("promtool", "prometheus")];
/// The prefixes of the control plane's metric names.
const PREFIXES: [&str; 4] = ["bgp_", "geodns_", "healthd_", "streamnode_"];

fn ops(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(ops(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs promtool with `args` (and `stdin`), asserting it succeeds; its output.
fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(ops("prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every alert rule of alerts.yml: (name, rule).
fn alerts() -> Vec<(String, Value)> {
    let rules = yaml("prometheus/alerts.yml");
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .filter_map(|r| Some((r["alert"].as_str()?.to_owned(), r.clone())))
        .collect()
}

#[test]
fn alert_rules_pass_their_unit_tests_and_each_has_a_severity_a_test_and_a_runbook() {
    let test = "alert_rules_pass_their_unit_tests_and_each_has_a_severity_a_test_and_a_runbook";
    if testkit::require(test, &PROMTOOL, false).is_none() {
        return;
    }
    promtool(&["check", "rules", "alerts.yml"], None);
    let tested = promtool(&["test", "rules", "alerts.test.yml"], None);
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&["check", "config", "prometheus.yml"], None);

    let runbook = std::fs::read_to_string(ops("../docs/RUNBOOK.md")).unwrap();
    let tests = yaml("prometheus/alerts.test.yml");
    let fired: BTreeSet<&str> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap().iter())
        .filter(|a| a["exp_alerts"].as_sequence().is_some_and(|e| !e.is_empty()))
        .filter_map(|a| a["alertname"].as_str())
        .collect();
    let alerts = alerts();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        assert_eq!(
            rule["annotations"]["runbook_url"].as_str(),
            Some(format!("docs/RUNBOOK.md#{}", name.to_lowercase()).as_str()),
            "{name}"
        );
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "{name} has no section in docs/RUNBOOK.md"
        );
        assert!(
            fired.contains(name.as_str()),
            "{name} is never fired in alerts.test.yml"
        );
    }
}

#[test]
fn the_example_scrape_configuration_names_every_daemon_of_the_demo() {
    let dir = TempDir::new("scrape-config");
    let d = lab::demo::demo_deployment(dir.path()).unwrap();
    // (job, target) -> labels.
    let mut targets: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let config = yaml("prometheus/prometheus.yml");
    for job in config["scrape_configs"].as_sequence().unwrap() {
        let name = job["job_name"].as_str().unwrap();
        for group in job["static_configs"].as_sequence().unwrap() {
            let labels: BTreeMap<String, String> = group["labels"]
                .as_mapping()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().unwrap().to_owned(),
                                v.as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            for target in group["targets"].as_sequence().unwrap() {
                let target = target.as_str().unwrap().to_owned();
                targets.insert((name.to_owned(), target), labels.clone());
            }
        }
    }
    let mut expected = Vec::new();
    for site in &d.sites {
        let labels = |node: Option<&str>| {
            let mut l = BTreeMap::from([("site".to_owned(), site.name.clone())]);
            if let Some(node) = node {
                l.insert("node".to_owned(), node.to_owned());
            }
            l
        };
        expected.push(("bgp-speaker", site.speaker.admin, labels(None)));
        expected.push(("healthd", site.healthd.admin, labels(None)));
        for node in &site.nodes {
            let admin = node.admin.expect("demo nodes have an admin address");
            expected.push(("streamnode", admin, labels(Some(&node.name))));
        }
    }
    let dns = d.dns.as_ref().expect("the demo has DNS").admin;
    expected.push(("geodns", dns, BTreeMap::new()));
    for (job, addr, labels) in &expected {
        let key = (job.to_string(), addr.to_string());
        assert_eq!(
            targets.get(&key),
            Some(labels),
            "ops/prometheus/prometheus.yml: job {job} target {addr}"
        );
    }
    assert_eq!(targets.len(), expected.len(), "{targets:?}");
}

/// The metric names `expr` (PromQL) mentions: identifiers with one of [`PREFIXES`].
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| PREFIXES.iter().any(|p| w.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// Every `expr` string inside a JSON document.
fn json_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => json_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn every_daemon_s_metrics_pass_promtool_and_hold_what_dashboards_and_rules_name() {
    let test = "every_daemon_s_metrics_pass_promtool_and_hold_what_dashboards_and_rules_name";
    if testkit::require(test, &PROMTOOL, false).is_none() {
        return;
    }
    // What the dashboards and rules name.
    let mut exprs: Vec<String> = alerts()
        .iter()
        .map(|(_, rule)| rule["expr"].as_str().unwrap().to_owned())
        .collect();
    let dashboards: Vec<PathBuf> = std::fs::read_dir(ops("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(!dashboards.is_empty());
    for path in &dashboards {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Provisionable: a stable uid and title, a schema version, a Prometheus data source
        // chosen by variable.
        for key in ["uid", "title", "schemaVersion", "panels"] {
            assert!(doc.get(key).is_some(), "{}: no {key}", path.display());
        }
        json_exprs(&doc, &mut exprs);
    }
    let named: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(named.len() > 20, "{named:?}");

    // The demo runs every daemon; each one's admin address serves its metrics.
    let dir = TempDir::new("observability");
    let d = lab::demo::demo_deployment(dir.path()).unwrap();
    let mut admins: Vec<(String, SocketAddr)> = Vec::new();
    for site in &d.sites {
        admins.push((format!("{} speaker", site.name), site.speaker.admin));
        admins.push((format!("{} healthd", site.name), site.healthd.admin));
        for node in &site.nodes {
            admins.push((format!("stream node {}", node.name), node.admin.unwrap()));
        }
    }
    admins.push(("geodns".into(), d.dns.as_ref().unwrap().admin));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.args(["demo", "--collector", "ours"]);
    let mut demo = Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).unwrap();
    let mut exposed = BTreeSet::new();
    for (daemon, addr) in &admins {
        // Up, and past its first rounds (healthd has judged its services).
        let text = wait_for(Duration::from_secs(30), || {
            let (200, text) = testkit::http::get(*addr, "/metrics")? else {
                return None;
            };
            let judged = !daemon.ends_with("healthd") || text.contains("healthd_service_healthy{");
            judged.then_some(text)
        })
        .unwrap_or_else(|| panic!("no metrics from {daemon} at {addr}:\n{}", demo.log_text()));
        let checked = promtool(&["check", "metrics"], Some(&text));
        assert!(
            checked.trim().is_empty(),
            "{daemon}: promtool check metrics: {checked}"
        );
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            exposed.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exposed.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    let missing: Vec<&String> = named.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "dashboards or rules name metrics no daemon exposes: {missing:?}"
    );
    demo.signal("TERM");
    assert_eq!(demo.wait_exit(Duration::from_secs(10)), Some(0));
}
