//! Generated and mutated deployment files through the parser and every validation rule, on
//! stable Rust, bounded (see `testkit::fuzz`): nothing may panic, and every problem reported
//! names the file and a line within it. Crashes are kept in `tests/fuzz-regressions/config/`.

use std::path::Path;

#[test]
fn mutated_deployment_files_get_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/config");
    let seeds = vec![
        include_bytes!("../examples/minimal.toml").to_vec(),
        include_bytes!("../examples/three-sites.toml").to_vec(),
        include_bytes!("../../lab/topologies/three-sites/deployment.toml").to_vec(),
    ];
    testkit::fuzz::run_n(
        "deployment-file",
        &dir,
        &seeds,
        3000,
        config::fuzzing::deployment,
    );
}
