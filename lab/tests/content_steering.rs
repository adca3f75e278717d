//! HLS content steering with a real player: hls.js in headless Chromium, on a page of another
//! origin, plays the demo's steered channel while a second player plays the same stream with
//! DNS steering alone. The site both play from is frozen (its streams stop, HTTP still
//! answers 200); the steered player must move to the next site within one steering TTL and one
//! segment of the steering server putting another site first, without its playing position
//! standing still for longer than it had buffered; how the DNS-only player fares is printed
//! beside it.
//!
//! Chromium resolves every host name the players meet with the answer geodns gives for it
//! (`--host-resolver-rules`): the service name, the steering server and each site's pathway.

use std::process::Command;
use std::time::Duration;

use lab::browsing::{Fared, Resolved, SiteFault};
use testkit::browser::CHROMIUM;
use testkit::hlsjs;
use testkit::process::{Daemon, TempDir, wait_for};

#[test]
fn a_steered_player_leaves_a_frozen_site_within_one_ttl_and_one_segment() {
    let test = "a_steered_player_leaves_a_frozen_site_within_one_ttl_and_one_segment";
    if testkit::require(test, &CHROMIUM, false).is_none() {
        return;
    }
    let Some(library) = hlsjs::require(test) else {
        return;
    };
    let dir = TempDir::new("content-steering");
    let d = lab::demo::demo_deployment(dir.path()).unwrap();
    let dns = d.dns.as_ref().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab"));
    cmd.args(["demo", "--collector", "ours"]);
    let demo = Daemon::spawn("lab demo", cmd, &dir.path().join("demo.log")).unwrap();
    wait_for(Duration::from_secs(60), || {
        lab::browsing::every_feed_live(dns.admin).then_some(())
    })
    .unwrap_or_else(|| panic!("the demo's sites never came up:\n{}", demo.log_text()));
    let resolved = Resolved::ask(&d, dns.listen[0]).unwrap();
    let page = hlsjs::Site::start(&library).unwrap();
    let trial = lab::browsing::trial(
        &d,
        &resolved,
        &page,
        ("live", "sports"),
        SiteFault::Freeze,
        Duration::from_secs(14),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", demo.log_text()));

    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| d.as_millis().to_string());
    let show = |name: &str, f: &Fared| {
        println!(
            "{name}: moved to {} after {} ms; stalled {} ms (longest {} ms), lowest buffer {:.1} s, {} errors ({} fatal)",
            f.to.as_deref().unwrap_or("nowhere"),
            ms(f.moved),
            f.stalled.as_millis(),
            f.longest_stall.as_millis(),
            f.lowest_buffer,
            f.errors.len(),
            f.fatal
        )
    };
    println!(
        "frozen: {} ({:.1} s buffered); the steering server moved after {} ms",
        trial.site,
        trial.buffer_at_fault,
        ms(trial.steering_moved)
    );
    show("content steering", &trial.steered);
    show("DNS steering alone", &trial.dns);

    let steering_moved = trial
        .steering_moved
        .expect("the steering server never moved away from the frozen site");
    let Some(moved) = trial.steered.moved else {
        panic!(
            "the steered player stayed on {}: {}",
            trial.site, trial.steered.report
        );
    };
    let live = d.service("live").unwrap();
    let ttl = Duration::from_secs(u64::from(live.content_steering.as_ref().unwrap().ttl));
    let segment = d.channel("sports").unwrap().segment_duration.get();
    // A request's latency and the player's timers on top of one TTL and one segment.
    let slack = Duration::from_secs(1);
    let took = moved.saturating_sub(steering_moved);
    assert!(
        took <= ttl + segment + slack,
        "moved {took:?} after the steering server did: more than one TTL and one segment"
    );
    assert!(
        trial.steered.longest_stall.as_secs_f64() < trial.buffer_at_fault.max(1.0),
        "the steered player stood still for {:?}, longer than the {:.1} s it had buffered: {}",
        trial.steered.longest_stall,
        trial.buffer_at_fault,
        trial.steered.report
    );
    assert_eq!(
        trial.steered.fatal, 0,
        "fatal player errors: {:?}",
        trial.steered.errors
    );
    assert!(
        trial
            .problems
            .iter()
            .all(|p| !p.contains("uncaught exception")),
        "{:?}",
        trial.problems
    );
}
