//! Upgrading the speaker under real routers: 20 `bgp-speaker replace` in a row while BIRD and
//! FRR hold its routes through graceful restart. Printed: how often the route was missing at
//! each router (sampled every 10 ms for BIRD, as fast as vtysh answers for FRR), the time from
//! the command to the new process serving its control API, and to both sessions Established
//! again.
//!
//! Run: `cargo bench -p bgp-speaker --bench replace` (needs bird2 and frr).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Speaker, frr_has, graceful_bird, graceful_frr, write_graceful_pair};
use testkit::bird::Bird;
use testkit::frr::Frr;
use testkit::net::Loopback;
use testkit::process::{Adopted, TempDir, wait_for};

const REPLACES: usize = 20;
const PREFIX: &str = "198.51.100.0/24";
/// Between sessions back and the next command.
const PAUSE: Duration = Duration::from_millis(500);

fn percentiles(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let at =
        |p: f64| testkit::percentile(&times, p).map_or(0.0, |d: Duration| d.as_secs_f64() * 1000.0);
    println!(
        "  {label:<28} p50 {:>5.0} ms  p95 {:>5.0} ms  max {:>5.0} ms",
        at(0.5),
        at(0.95),
        at(1.0)
    );
}

fn main() {
    let programs = [Bird::PROGRAMS, Frr::PROGRAMS].concat();
    if testkit::require("speaker replace benchmark", &programs, false).is_none() {
        return;
    }
    let net = Loopback::fresh();
    let bird = Arc::new(Bird::start(&graceful_bird(net)));
    let frr = Arc::new(Frr::start(&graceful_frr(net), net.host(3), 1179));
    let dir = TempDir::new("speaker-replace-bench");
    let config = write_graceful_pair(net, dir.path());
    let mut speaker = Speaker::start_with(dir, config);
    let established =
        |s: &Speaker| s.peer_state("bird") == "Established" && s.peer_state("frr") == "Established";
    assert!(
        wait_for(Duration::from_secs(20), || established(&speaker)
            .then_some(()))
        .is_some(),
        "{}",
        speaker.daemon.log_text()
    );
    assert!(speaker.cli(&["announce", PREFIX]).0 && speaker.cli(&["synced"]).0);
    assert!(wait_for(Duration::from_secs(20), || bird.route(PREFIX)).is_some());
    assert!(
        wait_for(Duration::from_secs(20), || frr_has(&frr, PREFIX)
            .then_some(()))
        .is_some()
    );

    let sampling = Arc::new(AtomicBool::new(true));
    let samplers: Vec<_> = [true, false]
        .into_iter()
        .map(|at_bird| {
            let (bird, frr, sampling) = (bird.clone(), frr.clone(), sampling.clone());
            std::thread::spawn(move || {
                let (mut samples, mut missing) = (0u32, 0u32);
                while sampling.load(Ordering::Relaxed) {
                    let present = if at_bird {
                        bird.route(PREFIX).is_some()
                    } else {
                        frr_has(&frr, PREFIX)
                    };
                    samples += 1;
                    missing += u32::from(!present);
                    std::thread::sleep(Duration::from_millis(10));
                }
                (samples, missing)
            })
        })
        .collect();
    let (mut serving, mut back, mut failed) = (Vec::new(), Vec::new(), 0);
    let mut processes: Vec<Adopted> = Vec::new();
    for _ in 0..REPLACES {
        let started = Instant::now();
        let (ok, said) = speaker.cli(&["replace"]);
        let Some(new) = Adopted::from_replace(&said).filter(|_| ok) else {
            failed += 1;
            println!("  replace failed: {said}");
            continue;
        };
        serving.push(started.elapsed());
        processes.push(new);
        if let Some(up) = wait_for(Duration::from_secs(20), || {
            established(&speaker).then(|| started.elapsed())
        }) {
            back.push(up);
        }
        std::thread::sleep(PAUSE);
    }
    sampling.store(false, Ordering::Relaxed);
    let results: Vec<(u32, u32)> = samplers
        .into_iter()
        .map(|s| s.join().expect("sampler"))
        .collect();
    speaker.daemon.wait_exit(Duration::from_secs(10));
    println!(
        "{} replaces of bgp-speaker ({failed} failed) with BIRD and FRR keeping {PREFIX} by graceful restart:",
        serving.len()
    );
    println!(
        "  route missing at BIRD in {} of {} samples, at FRR in {} of {}",
        results[0].1, results[0].0, results[1].1, results[1].0
    );
    percentiles("command to serving", serving);
    percentiles("command to sessions back", back);
    // Each replaced process exits by itself; the last one serving is stopped here.
    let last = processes.pop();
    for process in &processes {
        wait_for(Duration::from_secs(10), || process.gone().then_some(()));
    }
    std::mem::forget(processes);
    drop(last);
}
