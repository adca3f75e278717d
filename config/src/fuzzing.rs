//! Entry points for fuzzing, shared by the bounded run in `tests/fuzz.rs` and the
//! coverage-guided target in `fuzz/` (`cargo fuzz run deployment_file`).

use std::path::Path;

use crate::Deployment;

/// A deployment file's bytes through the parser and every validation rule: nothing may panic,
/// every problem names the file and a line within it, and a file that parses prints back into
/// one that parses.
pub fn deployment(bytes: &[u8]) {
    let file = Path::new("deploy.toml");
    let text = String::from_utf8_lossy(bytes);
    let lines = text.lines().count().max(1);
    match Deployment::parse(&text, file) {
        Ok(d) => {
            let again = toml::to_string(&d).expect("a parsed deployment prints");
            let reparsed = Deployment::parse(&again, file);
            assert!(reparsed.is_ok(), "{again}\n{reparsed:?}");
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems.iter() {
                assert_eq!(p.file, file);
                assert!(p.line >= 1 && p.line <= lines + 1, "{p} ({lines} lines)");
                assert!(!p.message.is_empty());
            }
        }
    }
}
