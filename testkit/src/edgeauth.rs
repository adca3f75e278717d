//! Akamai's reference implementation of EdgeAuth tokens, the `akamai-edgeauth` package from
//! PyPI, run by python3: tokens it mints must validate in our nodes, and ours must be the same
//! as its. `./scripts/test.sh` installs it under `target/python/`.

use std::path::PathBuf;
use std::process::Command;

use crate::Missing;

/// Where `./scripts/test.sh` installs the package.
pub fn directory() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("python")
}

/// The reference, ready to run.
pub struct Reference {
    python: PathBuf,
}

/// The reference, or `None` after skipping `test` (a failure under `REQUIRE_PEERS`).
pub fn require(test: &str) -> Option<Reference> {
    let python = crate::require(test, &[("python3", "python3")], false)?.remove(0);
    let reference = Reference { python };
    if reference.run("import akamai.edgeauth").is_ok() {
        return Some(reference);
    }
    crate::skip_or_fail(
        test,
        &[Missing::File {
            path: directory().join("akamai/edgeauth"),
            what: "akamai-edgeauth (PyPI package akamai-edgeauth)".into(),
        }],
    );
    None
}

/// What the reference mints: a token for `acl` or `url`, the other parameters as
/// `EdgeAuth(...)` takes them.
#[derive(Debug, Clone, Default)]
pub struct Ask<'a> {
    pub key: &'a str,
    pub algorithm: &'a str,
    pub acl: Option<&'a str>,
    pub url: Option<&'a str>,
    pub start: Option<u64>,
    pub end: u64,
    pub ip: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub payload: Option<&'a str>,
}

impl Reference {
    fn run(&self, script: &str) -> Result<String, String> {
        let out = Command::new(&self.python)
            .arg("-c")
            .arg(script)
            .env("PYTHONPATH", directory())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The token the reference mints for `ask`.
    pub fn mint(&self, ask: &Ask<'_>) -> String {
        // Python literals: repr-safe for the test's plain ASCII values.
        let text = |v: Option<&str>| v.map_or("None".to_owned(), |v| format!("{v:?}"));
        let number = |v: Option<u64>| v.map_or("None".to_owned(), |v| v.to_string());
        let call = match (ask.acl, ask.url) {
            (Some(acl), _) => format!("generate_acl_token({acl:?})"),
            (None, Some(url)) => format!("generate_url_token({url:?})"),
            (None, None) => "generate_acl_token('/*')".to_owned(),
        };
        let script = format!(
            "from akamai.edgeauth import EdgeAuth\n\
             e = EdgeAuth(key={:?}, algorithm={:?}, start_time={}, end_time={}, ip={}, session_id={}, payload={})\n\
             print(e.{call})",
            ask.key,
            ask.algorithm,
            number(ask.start),
            ask.end,
            text(ask.ip),
            text(ask.session_id),
            text(ask.payload),
        );
        self.run(&script)
            .unwrap_or_else(|e| panic!("akamai-edgeauth failed: {e}"))
    }
}
