//! Upgrading the speaker under real routers: 20 `bgp-speaker replace` in a row while BIRD and
//! FRR hold its routes through graceful restart. Printed: how often the route was missing at
//! each router (sampled every 10 ms for BIRD, as fast as vtysh answers for FRR), the time from
//! the command to the new process serving its control API, and to both sessions Established
//! again.
//!
//! Run: `cargo bench -p bgp-speaker --bench replace` (needs bird2 and frr).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::GracefulPair;
use testkit::bird::Bird;
use testkit::frr::Frr;
use testkit::process::{Adopted, wait_for};

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
    let mut pair = GracefulPair::start("speaker-replace-bench", &[PREFIX]);
    let sampling = pair.sample(PREFIX);
    let (mut serving, mut back, mut failed) = (Vec::new(), Vec::new(), 0);
    let mut processes: Vec<Adopted> = Vec::new();
    for _ in 0..REPLACES {
        let started = Instant::now();
        let (ok, said) = pair.speaker.cli(&["replace"]);
        let Some(new) = Adopted::from_replace(&said).filter(|_| ok) else {
            failed += 1;
            println!("  replace failed: {said}");
            continue;
        };
        serving.push(started.elapsed());
        processes.push(new);
        if let Some(up) = wait_for(Duration::from_secs(20), || {
            pair.established().then(|| started.elapsed())
        }) {
            back.push(up);
        }
        std::thread::sleep(PAUSE);
    }
    let (at_bird, at_frr) = sampling.finish();
    pair.speaker.daemon.wait_exit(Duration::from_secs(10));
    println!(
        "{} replaces of bgp-speaker ({failed} failed) with BIRD and FRR keeping {PREFIX} by graceful restart:",
        serving.len()
    );
    println!(
        "  route missing at BIRD in {} of {} samples, at FRR in {} of {}",
        at_bird.missing_at_ms.len(),
        at_bird.samples,
        at_frr.missing_at_ms.len(),
        at_frr.samples
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
