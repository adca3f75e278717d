//! Replacing a running speaker (`bgp-speaker replace`) while BIRD and FRR hold its routes: the
//! old process ends its sessions without a NOTIFICATION, the new one takes the control and
//! admin listeners and the table, and brings the sessions up again; through graceful restart
//! (RFC 4724) both routers keep the routes the whole time, sampled every few milliseconds. A
//! withdraw asked of the new process before its sessions are up is not lost: the routers drop
//! that route at its End-of-RIB.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Speaker, frr_has, graceful_bird, graceful_frr, write_graceful_pair};
use testkit::bird::Bird;
use testkit::frr::Frr;
use testkit::net::Loopback;
use testkit::process::{Adopted, TempDir, wait_for};

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
    let net = Loopback::fresh();
    let bird = Arc::new(Bird::start(&graceful_bird(net)));
    let frr = Arc::new(Frr::start(&graceful_frr(net), net.host(3), 1179));
    let dir = TempDir::new("speaker-replace");
    let config = write_graceful_pair(net, dir.path());
    let mut speaker = Speaker::start_with(dir, config.clone());
    for peer in ["bird", "frr"] {
        assert!(
            speaker.wait_state(peer, "Established", WAIT),
            "{peer}: {}",
            speaker.daemon.log_text()
        );
    }
    assert!(speaker.cli(&["announce", V4, V6]).0);
    assert!(speaker.cli(&["synced"]).0);
    assert!(wait_for(WAIT, || bird.route(V4).and(bird.route(V6))).is_some());
    assert!(wait_for(WAIT, || frr_has(&frr, V4).then_some(())).is_some());

    // Sampled from before the command until the sessions are back and settled.
    let sampling = Arc::new(AtomicBool::new(true));
    let samplers: Vec<_> = [true, false]
        .into_iter()
        .map(|at_bird| {
            let (bird, frr, sampling) = (bird.clone(), frr.clone(), sampling.clone());
            std::thread::spawn(move || {
                let (mut samples, mut missing) = (0u32, Vec::new());
                let started = Instant::now();
                while sampling.load(Ordering::Relaxed) {
                    let present = if at_bird {
                        bird.route(V4).is_some()
                    } else {
                        frr_has(&frr, V4)
                    };
                    samples += 1;
                    if !present {
                        missing.push(started.elapsed().as_millis());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                (samples, missing)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (ok, said) = speaker.cli(&["replace"]);
    assert!(ok, "{said}\n{}", speaker.daemon.log_text());
    let _new = Adopted::from_replace(&said).unwrap_or_else(|| panic!("no pid in {said:?}"));
    // Asked of the new process before its sessions are up: must reach the routers.
    let (ok, out) = speaker.cli(&["withdraw", V6]);
    assert!(ok, "{out}");
    let exited = speaker.daemon.wait_exit(Duration::from_secs(10));
    let back = wait_for(WAIT, || {
        (speaker.peer_state("bird") == "Established" && speaker.peer_state("frr") == "Established")
            .then(|| started.elapsed())
    });
    let withdrawn = wait_for(WAIT, || bird.route(V6).is_none().then(|| started.elapsed()));
    std::thread::sleep(Duration::from_secs(2));
    sampling.store(false, Ordering::Relaxed);
    let results: Vec<(u32, Vec<u128>)> = samplers.into_iter().map(|s| s.join().unwrap()).collect();
    print!("{said}");
    println!(
        "sessions back after {back:?}; {V6} withdrawn at BIRD after {withdrawn:?}; samples of {V4}: BIRD {} ({} missing), FRR {} ({} missing)",
        results[0].0,
        results[0].1.len(),
        results[1].0,
        results[1].1.len()
    );
    assert_eq!(exited, Some(0), "the old speaker exits by itself");
    assert!(
        back.is_some(),
        "sessions did not come back:\n{}",
        bird.cli("show protocols all up1")
    );
    assert!(
        results[0].0 > 20 && results[1].0 > 5,
        "too few samples: {results:?}"
    );
    assert!(
        results[0].1.is_empty(),
        "BIRD lost {V4} at {:?} ms",
        results[0].1
    );
    assert!(
        results[1].1.is_empty(),
        "FRR lost {V4} at {:?} ms",
        results[1].1
    );
    assert!(
        withdrawn.is_some(),
        "the withdraw was lost: {:?}",
        bird.route(V6)
    );
    let route = bird.route(V4).unwrap_or_default();
    assert!(!route.contains("stale"), "{route}");
}
