//! `geodns explain` as an operator reads it: the answer, where the client is, how each site
//! ranks and why it is usable or not, and the rate limiter's view of the client. The JSON
//! (`--json`, and the admin API's `/explain`) stays the machine's form; this reads that JSON, so
//! the live and the offline explanation print the same way.

use std::fmt::Write;

use serde_json::Value;

/// The explanation `e` (the JSON of [`crate::server::Explanation`]) as text.
pub fn table(e: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let _ = writeln!(
        out,
        "{} for {}: {}, scope /{}",
        text(&e["name"]),
        text(&e["client"]),
        text(&e["rcode"]),
        text(&e["scope"])
    );
    let location = &e["location"];
    if location.is_object() {
        let mut parts = vec![text(&location["network"])];
        for key in ["country", "continent"] {
            if let Some(s) = location[key].as_str() {
                parts.push(s.to_owned());
            }
        }
        if let Some([lat, lon]) = location["coordinates"]
            .as_array()
            .and_then(|c| <&[Value; 2]>::try_from(c.as_slice()).ok())
        {
            parts.push(format!(
                "{:.2}, {:.2}",
                lat.as_f64().unwrap_or(0.0),
                lon.as_f64().unwrap_or(0.0)
            ));
        }
        let _ = writeln!(out, "location    {}", parts.join(" | "));
    } else {
        let _ = writeln!(out, "location    unknown (no database entry)");
    }
    let steering = &e["steering"];
    if steering.is_object() {
        let by = match steering["ranked_by"]["by"].as_str() {
            Some("override") => format!(
                "override rule {} of [[dns.overrides]]",
                text(&steering["ranked_by"]["index"])
            ),
            Some("distance") => "distance".to_owned(),
            Some("default") => "the default order (no location)".to_owned(),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "service     {}, sites ranked by {by}",
            text(&steering["service"])
        );
        let empty = Vec::new();
        let sites = steering["ranking"].as_array().unwrap_or(&empty);
        let distances = steering["distances_km"].as_array().unwrap_or(&empty);
        let verdicts = steering["choice"]["verdicts"].as_array().unwrap_or(&empty);
        let _ = writeln!(
            out,
            "  {:<8} {:>9} {:>8} {:>6}  {:<6} WHY",
            "SITE", "DISTANCE", "HEALTHY", "LOAD", "USABLE"
        );
        for (i, site) in sites.iter().enumerate() {
            let distance = distances
                .get(i)
                .and_then(Value::as_f64)
                .map_or("-".to_owned(), |d| format!("{d:.0} km"));
            let v = verdicts.get(i).unwrap_or(&Value::Null);
            let usable = match v["usable"].as_bool() {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            let load = v["load"]
                .as_f64()
                .map_or("-".to_owned(), |l| format!("{l:.2}"));
            let _ = writeln!(
                out,
                "  {:<8} {:>9} {:>8} {:>6}  {:<6} {}",
                text(site),
                distance,
                text(&v["healthy_nodes"]),
                load,
                usable,
                v["why"].as_str().unwrap_or("")
            );
        }
        let chosen = text(&steering["site"]);
        if steering["choice"]["fail_open"].as_bool() == Some(true) {
            let _ = writeln!(
                out,
                "chosen      {chosen} (FAIL OPEN: no site is usable; the least-bad one)"
            );
        } else {
            let _ = writeln!(out, "chosen      {chosen}");
        }
    }
    let answer: Vec<String> = e["answer"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "answer      {}",
        if answer.is_empty() {
            "(no records)".to_owned()
        } else {
            answer.join(", ")
        }
    );
    let canary = &e["steering"]["canary"];
    if canary.is_object() {
        // A percentage as the operator wrote the share: 0.05 is "5%".
        let share = (canary["share"].as_f64().unwrap_or(0.0) * 100_000.0).round() / 1000.0;
        let version = text(&canary["version"]);
        let withdrawn = canary["withdrawn"].as_bool() == Some(true);
        let side = match (canary["side"].as_str(), canary["answered"].as_bool()) {
            _ if withdrawn => {
                "out of it: WITHDRAWN by an operator, every network is answered with the other nodes".to_owned()
            }
            (Some("canary"), Some(true)) => format!("in the canary's {share}%: answered with its nodes"),
            (Some("canary"), _) => format!(
                "in the canary's {share}%, but no node of it is up here: answered with the others"
            ),
            _ => format!("not in the canary's {share}%: answered with the other nodes"),
        };
        let _ = writeln!(out, "canary      {version}: this network is {side}");
    }
    let content = &e["content_steering"];
    if content.is_object() {
        let manifest = &content["manifest"];
        let pathways: Vec<String> = manifest["PATHWAY-PRIORITY"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "steering    {} (players reload in {} s)",
            if pathways.is_empty() {
                "(no pathway)".to_owned()
            } else {
                pathways.join(" > ")
            },
            text(&manifest["TTL"])
        );
    }
    let limit = &e["rate_limit"];
    if limit.is_object() {
        let _ = writeln!(
            out,
            "rate limit  {}: {:.0} responses left now, {}",
            text(&limit["prefix"]),
            limit["tokens"].as_f64().unwrap_or(0.0),
            if limit["limited"].as_bool() == Some(true) {
                "LIMITED within the last second"
            } else {
                "not limited"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_an_explanation_is_a_line_and_sites_are_named() {
        let e = serde_json::json!({
            "name": "live.tv.example.net.",
            "client": "198.51.100.7",
            "rcode": "NOERROR",
            "scope": 24,
            "location": {"network": "198.51.100.0/24", "country": "NL", "continent": "EU", "coordinates": [52.37, 4.9]},
            "steering": {
                "service": "live",
                "ranking": ["ams", "lon", "fra"],
                "distances_km": [1.0, 357.0, null],
                "ranked_by": {"by": "distance"},
                "choice": {"fail_open": false, "verdicts": [
                    {"site": "ams", "healthy_nodes": 0, "load": 0.0, "usable": false, "why": "0 of 2 nodes healthy"},
                    {"site": "lon", "healthy_nodes": 2, "load": 0.12, "usable": true, "why": "healthy"},
                    {"site": "fra", "healthy_nodes": 2, "load": 0.0, "usable": true, "why": "healthy"}
                ]},
                "site": "lon",
                "canary": {"version": "2.4.0", "share": 0.05, "withdrawn": false, "side": "canary", "answered": true}
            },
            "answer": ["127.0.31.1", "127.0.31.2"],
            "content_steering": {"site": "lon", "manifest": {"VERSION": 1, "TTL": 2, "RELOAD-URI": "http://steer/live", "PATHWAY-PRIORITY": ["lon", "fra", "ams"]}},
            "rate_limit": {"prefix": "198.51.100.0/24", "tokens": 3999.5, "limited": false}
        });
        let t = table(&e);
        for line in [
            "live.tv.example.net. for 198.51.100.7: NOERROR, scope /24",
            "location    198.51.100.0/24 | NL | EU | 52.37, 4.90",
            "service     live, sites ranked by distance",
            "  ams           1 km        0   0.00  no     0 of 2 nodes healthy",
            "  lon         357 km        2   0.12  yes    healthy",
            "  fra              -        2   0.00  yes    healthy",
            "chosen      lon",
            "answer      127.0.31.1, 127.0.31.2",
            "steering    lon > fra > ams (players reload in 2 s)",
            "canary      2.4.0: this network is in the canary's 5%: answered with its nodes",
            "rate limit  198.51.100.0/24: 4000 responses left now, not limited",
        ] {
            assert!(t.lines().any(|l| l == line), "no line {line:?} in:\n{t}");
        }
        // A client without a location, a static name: no steering section.
        let bare = table(&serde_json::json!({
            "name": "www.tv.example.net.", "client": "192.0.2.1", "rcode": "NOERROR",
            "scope": 0, "location": null, "steering": null, "answer": []
        }));
        assert!(bare.contains("location    unknown"), "{bare}");
        assert!(bare.contains("answer      (no records)"), "{bare}");
    }
}
