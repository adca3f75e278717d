//! The chaos report: Markdown with the checks and key times per scenario, and an SVG timeline
//! per scenario (one lane per observer: the fault, each router, DNS per city, each viewer).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::chaos::Outcome;
use crate::timeline::EventKind;

/// One check over every trial of its scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub scenario: &'static str,
    pub what: String,
    pub bound: String,
    /// The times measured, sorted.
    pub times: Vec<Duration>,
    pub passed: usize,
    pub trials: usize,
}

impl Spread {
    /// The `p`th percentile (0 to 1) of the times, nearest rank.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        testkit::percentile(&self.times, p)
    }

    /// `p50 X ms, p95 Y ms, max Z ms`, or what was seen when nothing was timed.
    pub fn figures(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{} ms", d.as_millis()));
        if self.times.is_empty() {
            return "not timed".into();
        }
        format!(
            "p50 {}, p95 {}, max {}",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.95)),
            ms(self.times.last().copied())
        )
    }
}

/// Every check, over the trials of its scenario, in the order first run.
pub fn spreads(outcomes: &[Outcome]) -> Vec<Spread> {
    let mut spreads: Vec<Spread> = Vec::new();
    for o in outcomes {
        for c in &o.checks {
            let scenario = o.scenario.name();
            let i = match spreads
                .iter()
                .position(|s| s.scenario == scenario && s.what == c.what)
            {
                Some(i) => i,
                None => {
                    spreads.push(Spread {
                        scenario,
                        what: c.what.clone(),
                        bound: c.bound.clone(),
                        times: Vec::new(),
                        passed: 0,
                        trials: 0,
                    });
                    spreads.len() - 1
                }
            };
            let s = &mut spreads[i];
            s.trials += 1;
            s.passed += usize::from(c.passed);
            s.times.extend(c.time());
        }
    }
    for s in &mut spreads {
        s.times.sort();
    }
    spreads
}

/// Writes `report.md` and one `SCENARIO.svg` per outcome (`SCENARIO-N.svg` for the Nth trial
/// after the first) into `dir`; returns the report path. Scenarios run more than once get a
/// table of their figures over the trials first.
pub fn write(dir: &Path, topology: &str, outcomes: &[Outcome]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# Chaos report: {topology}\n");
    let repeated: Vec<Spread> = spreads(outcomes)
        .into_iter()
        .filter(|s| s.trials > 1)
        .collect();
    if !repeated.is_empty() {
        let _ = writeln!(
            md,
            "## Over the trials\n\n| scenario | check | bound | figures | passed |\n|---|---|---|---|---|"
        );
        for s in &repeated {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} of {} |",
                s.scenario,
                s.what,
                s.bound,
                s.figures(),
                s.passed,
                s.trials
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "| scenario | site | fault | result |\n|---|---|---|---|"
    );
    for o in outcomes {
        let _ = writeln!(
            md,
            "| [{0}](#{0}) | {1} | {2} | {3} |",
            o.scenario.name(),
            o.site,
            o.target,
            if o.passed() { "pass" } else { "**FAIL**" }
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for o in outcomes {
        let name = o.scenario.name();
        let trial = seen.iter().filter(|n| **n == name).count();
        seen.push(name);
        let svg = if trial == 0 {
            format!("{name}.svg")
        } else {
            format!("{name}-{trial}.svg")
        };
        std::fs::write(dir.join(&svg), timeline_svg(o))
            .with_context(|| format!("cannot write {svg}"))?;
        let _ = writeln!(md, "\n## {name}\n");
        let _ = writeln!(
            md,
            "Fault at {:.2} s, repaired at {:.2} s (times below are from the fault).\n",
            o.fault_at.as_secs_f64(),
            o.restore_at.as_secs_f64()
        );
        let _ = writeln!(md, "| check | bound | measured | |\n|---|---|---|---|");
        for c in &o.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.what,
                c.bound,
                c.measured.replace('|', "\\|"),
                if c.passed { "pass" } else { "**FAIL**" }
            );
        }
        let _ = writeln!(md, "\n![timeline of {name}]({svg})\n");
        qoe_table(&mut md, &o.viewers);
        let _ = writeln!(md, "<details><summary>Changes seen</summary>\n\n```");
        for e in o.events.iter().filter(|e| e.kind() != EventKind::Segment) {
            let at = e.at.as_secs_f64() - o.fault_at.as_secs_f64();
            let _ = writeln!(md, "{at:+8.3}s  {:<22} {}", e.lane, e.text());
        }
        let _ = writeln!(md, "```\n</details>");
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// What each city's viewer experienced over the run, as its player measured it (the figures it
/// sends as CMCD; throughput is the mean over segment downloads): beside the timeline, what the routing and DNS changes meant to viewers.
fn qoe_table(md: &mut String, viewers: &[(String, crate::viewer::Experience)]) {
    if viewers.is_empty() {
        return;
    }
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let _ = writeln!(
        md,
        "Viewers (QoE per city, whole run):\n\n| city | start-up | stalls | stalled | lowest buffer | throughput | errors | segments | servers |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (city, e) in viewers {
        let _ = writeln!(
            md,
            "| {city} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e.startup.map_or("never".to_owned(), ms),
            e.stalls,
            ms(e.stalled),
            e.lowest_buffer.map_or("-".to_owned(), ms),
            e.throughput_kbps().map_or("-".to_owned(), |k| format!(
                "{:.1} Mbit/s",
                k as f64 / 1000.0
            )),
            e.errors,
            e.segments,
            e.servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" > ")
        );
    }
    let _ = writeln!(md);
}

/// One scenario's timeline as SVG: lanes top to bottom, time left to right.
pub fn timeline_svg(o: &Outcome) -> String {
    const LEFT: f64 = 170.0;
    const WIDTH: f64 = 960.0;
    const LANE: f64 = 22.0;
    const TOP: f64 = 40.0;
    let mut lanes: Vec<&str> = Vec::new();
    for e in &o.events {
        if !lanes.contains(&e.lane.as_str()) {
            lanes.push(&e.lane);
        }
    }
    // Cause first, then the network's reaction, DNS, and what viewers saw.
    let group = |lane: &str| {
        ["fault", "route", "dns", "resolver", "viewer"]
            .iter()
            .position(|g| lane.starts_with(g))
            .unwrap_or(5)
    };
    lanes.sort_by_key(|lane| (group(lane), lane.to_string()));
    let end = o.end.as_secs_f64().max(1.0);
    let x = |at: Duration| LEFT + (WIDTH - LEFT - 20.0) * at.as_secs_f64() / end;
    let y = |lane: &str| TOP + LANE * lanes.iter().position(|l| *l == lane).unwrap_or(0) as f64;
    let height = TOP + LANE * lanes.len() as f64 + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="18" font-size="14">{} at {} ({})</text>"#,
        o.scenario.name(),
        o.site,
        escape(&o.target)
    );
    for (i, lane) in lanes.iter().enumerate() {
        let ly = TOP + LANE * i as f64;
        let _ = writeln!(
            svg,
            r##"<text x="10" y="{:.1}">{}</text><line x1="{LEFT}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="#ddd"/>"##,
            ly + 4.0,
            escape(lane),
            WIDTH - 20.0
        );
    }
    // Seconds along the bottom, zero at the fault.
    let axis_y = TOP + LANE * lanes.len() as f64;
    let mut s = 0.0;
    while s <= end {
        let at = Duration::from_secs_f64(s);
        let rel = s - o.fault_at.as_secs_f64();
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" fill="#666" text-anchor="middle">{rel:+.0}s</text>"##,
            x(at),
            axis_y + 12.0
        );
        s += 2.0;
    }
    for (at, colour, label) in [
        (o.fault_at, "#c00", "fault"),
        (o.restore_at, "#080", "repair"),
    ] {
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{axis_y:.1}" stroke="{colour}" stroke-dasharray="4 3"/><text x="{0:.1}" y="{1}" fill="{colour}">{label}</text>"#,
            x(at),
            TOP - 14.0
        );
    }
    // Stalls as bars, from their start to their end (or the end of the run).
    for e in o
        .events
        .iter()
        .filter(|e| e.kind() == EventKind::StallStart)
    {
        let stop = o
            .events
            .iter()
            .find(|f| f.lane == e.lane && f.kind() == EventKind::StallEnd && f.at >= e.at)
            .map_or(o.end, |f| f.at);
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="10" fill="#f90"><title>stall</title></rect>"##,
            x(e.at),
            y(&e.lane) - 5.0,
            (x(stop) - x(e.at)).max(1.0)
        );
    }
    for e in &o.events {
        let (cx, cy) = (x(e.at), y(&e.lane));
        let title = escape(&format!(
            "{:+.3}s {}",
            e.at.as_secs_f64() - o.fault_at.as_secs_f64(),
            e.text()
        ));
        let mark = match e.kind() {
            EventKind::Segment => format!(
                r##"<line x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}" stroke="#999"><title>{title}</title></line>"##,
                cy - 3.0,
                cy + 3.0
            ),
            EventKind::Error => format!(
                r##"<text x="{cx:.1}" y="{:.1}" fill="#c00" text-anchor="middle">×<title>{title}</title></text>"##,
                cy + 4.0
            ),
            EventKind::Change | EventKind::Fault | EventKind::Restore => format!(
                r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="#06c"><title>{title}</title></circle>"##
            ),
            EventKind::Info | EventKind::StallStart | EventKind::StallEnd => format!(
                r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="2.5" fill="#666"><title>{title}</title></circle>"##
            ),
        };
        let _ = writeln!(svg, "{mark}");
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::{Check, Scenario};

    fn outcome(checks: &[(&str, &str, bool)]) -> Outcome {
        Outcome {
            scenario: Scenario::SiteDown,
            site: "ams".into(),
            target: "ams-1, ams-2".into(),
            fault_at: Duration::from_secs(8),
            restore_at: Duration::from_secs(14),
            end: Duration::from_secs(20),
            events: Vec::new(),
            checks: checks
                .iter()
                .map(|(what, measured, passed)| Check {
                    what: (*what).into(),
                    bound: "< 300 ms".into(),
                    measured: (*measured).into(),
                    passed: *passed,
                })
                .collect(),
            viewers: Vec::new(),
        }
    }

    #[test]
    fn checks_are_summed_up_over_the_trials() {
        let outcomes: Vec<Outcome> = [120, 180, 110, 400]
            .iter()
            .map(|ms| {
                let t = format!("{ms} ms");
                outcome(&[
                    ("withdrawn at r1", &t, *ms < 300),
                    ("never empty", "always answered", true),
                ])
            })
            .collect();
        let spreads = spreads(&outcomes);
        assert_eq!(spreads.len(), 2);
        let w = &spreads[0];
        assert_eq!((w.passed, w.trials), (3, 4));
        assert_eq!(w.percentile(0.5), Some(Duration::from_millis(180)));
        assert_eq!(w.figures(), "p50 180 ms, p95 400 ms, max 400 ms");
        assert_eq!(spreads[1].figures(), "not timed");
        assert_eq!((spreads[1].passed, spreads[1].trials), (4, 4));
    }

    #[test]
    fn the_report_shows_each_city_s_qoe_beside_the_timeline() {
        let mut o = outcome(&[("withdrawn at r1", "69 ms", true)]);
        o.viewers = vec![(
            "amsterdam".into(),
            crate::viewer::Experience {
                startup: Some(Duration::from_millis(420)),
                stalled: Duration::from_millis(1500),
                stalls: 1,
                lowest_buffer: Some(Duration::ZERO),
                downloaded_bytes: 3_062_500,
                downloading: Duration::from_secs(1),
                errors: 2,
                segments: 30,
                servers: vec!["10.0.1.1".parse().unwrap(), "10.0.3.1".parse().unwrap()],
            },
        )];
        let dir = temp_dir();
        let path = write(&dir, "three-sites", &[o]).unwrap();
        let md = std::fs::read_to_string(path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            md.contains("| amsterdam | 420 ms | 1 | 1500 ms | 0 ms | 24.5 Mbit/s | 2 | 30 | 10.0.1.1 > 10.0.3.1 |"),
            "{md}"
        );
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("chaos-report-{}", std::process::id()))
    }
}
