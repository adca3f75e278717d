//! What viewers live through when the site they play from fails, with HLS content steering and
//! with DNS steering alone, in real players: the demo runs every daemon (release build), and
//! hls.js in headless Chromium, on a page of another origin, plays the steered channel twice at
//! once: through its master playlist (content steering), and through its first rendition's
//! media playlist at the service's host name (DNS alone: the browser resolved the name once, as
//! browsers keep an answer for a minute and players keep their connection).
//!
//! For each scenario, site-down (every node of the site stops serving: connections refused,
//! open ones closed) and site-freeze (its streams stop while HTTP answers 200), and each trial:
//! both players play 4 s, the fault hits their site, and for 20 s each is watched: the time
//! until its fragments come from another site, the errors hls.js reports, and the time its
//! position stood still. The fault is then cleared, and every site must be back in service
//! before the next trial (flap damping holds a site out for a while after a few faults).
//!
//! Then the steering server's own cost is `cargo bench -p geodns --bench steering`.
//!
//! Run: `cargo bench -p lab --bench steering [-- --trials N]` (3 by default; needs chromium,
//! and hls.js under `target/npm`, which `./scripts/test.sh` installs).

use std::process::Command;
use std::time::Duration;

use lab::browsing::{Fared, Resolved, SiteFault, Trial, trial};
use testkit::hlsjs;
use testkit::process::{Daemon, TempDir, wait_for};

/// How long each player is watched after the fault.
const WINDOW: Duration = Duration::from_secs(20);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(3usize);
    if testkit::find_program("chromium").is_none() {
        eprintln!("chromium is missing: apt-get install chromium (or run ./scripts/test.sh)");
        std::process::exit(1);
    }
    let library = hlsjs::library();
    if !library.is_file() {
        eprintln!(
            "hls.js is missing at {}: ./scripts/test.sh installs it",
            library.display()
        );
        std::process::exit(1);
    }
    let dir = TempDir::new("steering-bench");
    let d = lab::demo::demo_deployment(dir.path()).expect("the demo's deployment");
    let dns = d.dns.as_ref().expect("the demo runs geodns");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.args(["demo", "--collector", "ours"]);
    let demo = Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).expect("lab demo");
    wait_for(Duration::from_secs(60), || {
        lab::browsing::every_feed_live(dns.admin).then_some(())
    })
    .unwrap_or_else(|| panic!("the demo's sites never came up:\n{}", demo.log_text()));
    let resolved = Resolved::ask(&d, dns.listen[0]).expect("geodns answers");
    let page = hlsjs::Site::start(&library).expect("the page's server");
    let host = "live.tv.example.net";
    let steering = d
        .service("live")
        .and_then(|s| s.content_steering.clone())
        .expect("the demo's live service is steered");
    println!(
        "{trials} trials per scenario, each player watched for {} s after the fault; steering TTL {} s ({} s while a site changes), segments of {} s",
        WINDOW.as_secs(),
        steering.ttl,
        steering.changing_ttl,
        d.channel("sports")
            .map_or(0, |c| c.segment_duration.get().as_secs())
    );
    for fault in [SiteFault::Down, SiteFault::Freeze] {
        let mut done: Vec<Trial> = Vec::new();
        for n in 0..trials {
            // Every site back in service first: flap damping may hold a site out for minutes
            // after a few faults, as it should.
            match lab::browsing::wait_every_site_usable(dns.admin, host, Duration::from_secs(600)) {
                Ok(waited) if waited > Duration::from_secs(5) => {
                    println!(
                        "  (waited {} s for every site to be back)",
                        waited.as_secs()
                    )
                }
                Ok(_) => {}
                Err(e) => eprintln!("{e:#}"),
            }
            match trial(&d, &resolved, &page, ("live", "sports"), fault, WINDOW) {
                Ok(t) => done.push(t),
                Err(e) => eprintln!("{} trial {}: {e:#}", fault.name(), n + 1),
            }
        }
        println!("\n{} ({} trials)", fault.name(), done.len());
        let moved: Vec<Duration> = done.iter().filter_map(|t| t.steering_moved).collect();
        println!(
            "  steering server: another site first after {}",
            spread(&moved, done.len())
        );
        println!(
            "  {:<18} {:>24} {:>14} {:>22} {:>16}",
            "PLAYER", "TO A WORKING SITE", "ERRORS", "STALLED (LONGEST)", "LOWEST BUFFER"
        );
        for (name, of) in [
            (
                "content steering",
                (|t: &Trial| &t.steered) as fn(&Trial) -> &Fared,
            ),
            ("DNS alone", |t: &Trial| &t.dns),
        ] {
            let fared: Vec<&Fared> = done.iter().map(of).collect();
            let moved: Vec<Duration> = fared.iter().filter_map(|f| f.moved).collect();
            let errors: usize = fared.iter().map(|f| f.errors.len()).sum();
            let stalled: Vec<Duration> = fared.iter().map(|f| f.stalled).collect();
            let longest = fared
                .iter()
                .map(|f| f.longest_stall)
                .max()
                .unwrap_or_default();
            let lowest = fared
                .iter()
                .map(|f| f.lowest_buffer)
                .fold(f64::INFINITY, f64::min);
            println!(
                "  {name:<18} {:>24} {:>14} {:>22} {:>14.1} s",
                spread(&moved, fared.len()),
                format!("{:.1} per trial", errors as f64 / fared.len().max(1) as f64),
                format!("{} ({} ms)", median_ms(&stalled), longest.as_millis()),
                if lowest.is_finite() { lowest } else { 0.0 },
            );
        }
    }
    drop(demo);
}

/// "p50 X ms, max Y ms", and how many of `of` trials never got there.
fn spread(samples: &[Duration], of: usize) -> String {
    if samples.is_empty() {
        return format!("never within {} s", WINDOW.as_secs());
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let p50 = sorted[sorted.len() / 2].as_millis();
    let max = sorted[sorted.len() - 1].as_millis();
    let missing = of - samples.len();
    if missing > 0 {
        format!("p50 {p50} ms, max {max} ms, {missing} never")
    } else {
        format!("p50 {p50} ms, max {max} ms")
    }
}

/// The median of `samples`, in milliseconds, as text.
fn median_ms(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len() / 2)
        .map_or("-".into(), |d| format!("{} ms", d.as_millis()))
}
