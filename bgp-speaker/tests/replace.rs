//! Replacing a running speaker (`bgp-speaker replace`) while BIRD and FRR hold its routes: the
//! old process ends its sessions without a NOTIFICATION, the new one takes the control and
//! admin listeners and the table, and brings the sessions up again; through graceful restart
//! (RFC 4724) both routers keep the routes the whole time, sampled every few milliseconds. A
//! withdraw asked of the new process before its sessions are up is not lost: the routers drop
//! that route at its End-of-RIB.

mod common;

use std::time::{Duration, Instant};

use common::GracefulPair;
use testkit::bird::Bird;
use testkit::frr::Frr;
use testkit::process::{Adopted, wait_for};

const WAIT: Duration = Duration::from_secs(20);
const V4: &str = "198.51.100.0/24";
const V6: &str = "2001:db8:100::/48";

#[test]
fn a_replaced_speaker_keeps_its_routes_at_bird_and_frr_and_loses_no_withdraw() {
    let test = "a_replaced_speaker_keeps_its_routes_at_bird_and_frr_and_loses_no_withdraw";
    let programs = [Bird::PROGRAMS, Frr::PROGRAMS].concat();
    let Some(_) = testkit::require(test, &programs, false) else {
        return;
    };
    let mut pair = GracefulPair::start("speaker-replace", &[V4, V6]);
    // Sampled from before the command until the sessions are back and settled.
    let sampling = pair.sample(V4);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (ok, said) = pair.speaker.cli(&["replace"]);
    assert!(ok, "{said}\n{}", pair.speaker.daemon.log_text());
    let _new = Adopted::from_replace(&said).unwrap_or_else(|| panic!("no pid in {said:?}"));
    // Asked of the new process before its sessions are up: must reach the routers.
    let (ok, out) = pair.speaker.cli(&["withdraw", V6]);
    assert!(ok, "{out}");
    let exited = pair.speaker.daemon.wait_exit(Duration::from_secs(10));
    let back = wait_for(WAIT, || pair.established().then(|| started.elapsed()));
    let bird = pair.bird.clone();
    let withdrawn = wait_for(WAIT, || bird.route(V6).is_none().then(|| started.elapsed()));
    std::thread::sleep(Duration::from_secs(2));
    let (at_bird, at_frr) = sampling.finish();
    print!("{said}");
    println!(
        "sessions back after {back:?}; {V6} withdrawn at BIRD after {withdrawn:?}; samples of {V4}: BIRD {} ({} missing), FRR {} ({} missing)",
        at_bird.samples,
        at_bird.missing_at_ms.len(),
        at_frr.samples,
        at_frr.missing_at_ms.len()
    );
    assert_eq!(exited, Some(0), "the old speaker exits by itself");
    assert!(
        back.is_some(),
        "sessions did not come back:\n{}",
        bird.cli("show protocols all up1")
    );
    assert!(
        at_bird.samples > 20 && at_frr.samples > 5,
        "too few samples: {at_bird:?} {at_frr:?}"
    );
    assert!(
        at_bird.missing_at_ms.is_empty(),
        "BIRD lost {V4} at {:?} ms",
        at_bird.missing_at_ms
    );
    assert!(
        at_frr.missing_at_ms.is_empty(),
        "FRR lost {V4} at {:?} ms",
        at_frr.missing_at_ms
    );
    assert!(
        withdrawn.is_some(),
        "the withdraw was lost: {:?}",
        bird.route(V6)
    );
    let route = bird.route(V4).unwrap_or_default();
    assert!(!route.contains("stale"), "{route}");
}
