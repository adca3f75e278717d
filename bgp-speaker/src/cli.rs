//! The operator CLI: `show neighbors`, `show routes`, `announce`, `withdraw`, `drain`, in
//! aligned columns like birdc and gobgp, or `--json`.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::Value;

use speaker_control::ShownRoute;
use speaker_control::{Reply, RouteEntry};

/// `show neighbors` as a table.
pub fn neighbors_table(peers: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<26} {:>10}  {:<12} {:>10}  {:>6} {:>6}  {:>5}  {:<8}  LAST ERROR",
        "PEER", "ADDRESS", "AS", "STATE", "UPTIME", "ADV", "RCV", "FLAPS", "BFD"
    );
    for p in peers {
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        let since = n("since");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(
            out,
            "{:<10} {:<26} {:>10}  {:<12} {:>10}  {:>6} {:>6}  {:>5}  {:<8}  {}",
            s("name"),
            s("address"),
            n("remote_asn"),
            s("state"),
            duration(now.saturating_sub(since)),
            n("prefixes_advertised"),
            n("prefixes_received"),
            n("flaps"),
            p.get("bfd").and_then(Value::as_str).unwrap_or("-"),
            s("last_error"),
        );
    }
    out
}

/// The header of `show routes`, aligned with [`route_row`].
pub fn routes_header() -> String {
    format!(
        "{:<24} {:<8} {:>7} {:>6} {:>9}  {:<10} {:<24} DRAINED",
        "PREFIX", "SERVICE", "PREPEND", "MED", "LEASE", "STATE", "COMMUNITIES"
    )
}

/// One originated route: its lease, its state, and who drained it and when.
pub fn route_row(r: &RouteEntry) -> String {
    let mut communities: Vec<String> = r
        .attrs
        .communities
        .iter()
        .map(ToString::to_string)
        .collect();
    communities.extend(r.attrs.large_communities.iter().map(ToString::to_string));
    let state = if r.withdrawn_by_drain {
        "drained"
    } else if r.draining {
        "draining"
    } else {
        "active"
    };
    let drained = match (&r.drained_by, r.drained_at) {
        (Some(by), Some(at)) => format!(
            "by {by} at {}",
            humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at)
            )
        ),
        _ => "-".into(),
    };
    let communities = if communities.is_empty() {
        "-".to_owned()
    } else {
        communities.join(" ")
    };
    format!(
        "{:<24} {:<8} {:>7} {:>6} {:>9}  {:<10} {:<24} {}",
        r.prefix.to_string(),
        r.service.as_deref().unwrap_or("-"),
        r.attrs.prepend,
        r.attrs.med.map_or("-".into(), |m| m.to_string()),
        r.lease_left_ms
            .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
        state,
        communities,
        drained,
    )
}

/// The header of `show routes advertised|received`, aligned with [`peer_route_row`].
pub fn peer_routes_header() -> String {
    format!(
        "{:<24} {:<26} {:<6} {:>6} {:>6}  {:<24} COMMUNITIES",
        "PREFIX", "NEXT HOP", "ORIGIN", "MED", "LPREF", "AS PATH"
    )
}

/// One route a peer was sent or sent us.
pub fn peer_route_row(r: &ShownRoute) -> String {
    let mut communities = r.communities.clone();
    communities.extend(r.large_communities.iter().cloned());
    format!(
        "{:<24} {:<26} {:<6} {:>6} {:>6}  {:<24} {}",
        r.prefix,
        r.next_hop,
        r.origin,
        r.med.map_or("-".into(), |m| m.to_string()),
        r.local_pref.map_or("-".into(), |m| m.to_string()),
        r.as_path,
        communities.join(" ")
    )
}

/// A reply to announce/withdraw/drain in one line.
pub fn change_line(reply: &Reply) -> String {
    match reply {
        Reply::Changed { change, routes } => {
            format!("{change:?} ({routes} routes in the table)").to_lowercase()
        }
        Reply::Drained { routes } => {
            format!("drain ordered: {routes} routes now, and any announced until undrain")
        }
        Reply::Undrained { routes } => format!("drain ended for {routes} routes"),
        Reply::Replaced { pid, ms } => format!(
            "replaced: pid {pid} serves, {ms} ms after the command; this process ends its sessions without a NOTIFICATION and exits"
        ),
        Reply::Error(e) => format!("error: {e}"),
        other => format!("{other:?}"),
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(duration(59), "00:00:59");
        assert_eq!(duration(3 * 86400 + 3661), "3d01h01m");
    }

    #[test]
    fn neighbor_rows_line_up_with_the_header() {
        let peer = serde_json::json!({"name": "r1", "address": "127.0.0.2", "remote_asn": 65000, "state": "Established", "since": 0, "prefixes_advertised": 2, "prefixes_received": 0, "flaps": 1});
        let table = neighbors_table(&[peer]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].find("STATE"), lines[1].find("Established"));
    }
}
