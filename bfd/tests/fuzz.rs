//! Generated and mutated BFD control packets through decoding and both ends of a session, on
//! stable Rust, bounded (see `testkit::fuzz`). Crashes are kept in
//! `tests/fuzz-regressions/bfd/`.

use std::path::Path;

use bfd::{Diag, Packet, State};

fn seeds() -> Vec<Vec<u8>> {
    let base = Packet {
        diag: Diag::None,
        state: State::Down,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 7,
        your_discr: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
    };
    let up = Packet {
        state: State::Up,
        your_discr: 1,
        poll: true,
        desired_min_tx_us: 300_000,
        ..base
    };
    let down = Packet {
        state: State::AdminDown,
        diag: Diag::AdminDown,
        final_: true,
        your_discr: 1,
        ..base
    };
    vec![
        base.encode().to_vec(),
        up.encode().to_vec(),
        down.encode().to_vec(),
    ]
}

#[test]
fn control_packets_never_panic_a_session() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/bfd");
    testkit::fuzz::run("bfd-packet", &dir, &seeds(), bfd::fuzzing::packet);
}
