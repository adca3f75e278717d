//! Support for tests that run real programs (BIRD, FRR, GoBGP, ExaBGP, gdnsd, dig, ffmpeg...)
//! or need root (network namespaces, TCP-MD5, ports below 1024).
//!
//! On a developer's machine such a test skips with a printed reason when what it needs is
//! missing. With `REQUIRE_PEERS=1` (set by CI) the same test fails instead: CI must never pass
//! by skipping.

pub mod bird;
pub mod browser;
pub mod dnsload;
pub mod edgeauth;
pub mod exabgp;
pub mod ffmpeg;
pub mod frr;
pub mod fuzz;
pub mod gobgp;
pub mod hlsjs;
pub mod http;
pub mod net;
pub mod netns;
pub mod nginx;
pub mod process;

use std::path::{Path, PathBuf};

/// What a test needs and did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Program {
        name: String,
        package: String,
    },
    /// A file from a package registry (npm) that `./scripts/test.sh` installs.
    File {
        path: PathBuf,
        what: String,
    },
    Root,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Program { name, package } => write!(
                f,
                "program `{name}` not found (install the Debian package `{package}`, or run ./scripts/test.sh as root)"
            ),
            Self::File { path, what } => write!(
                f,
                "{what} not found at {} (./scripts/test.sh installs it)",
                path.display()
            ),
            Self::Root => f.write_str("needs root (network namespaces, raw sockets or TCP-MD5)"),
        }
    }
}

/// Whether missing peers must fail the test run (CI) rather than skip.
pub fn peers_required() -> bool {
    std::env::var("REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Finds `name` in `PATH` or in the extra directories Debian packages use for daemons that are
/// not on a user's `PATH` (`/usr/sbin`, `/usr/lib/frr`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/lib/frr", "/usr/local/sbin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `p`th percentile (0 to 1) of `sorted` samples, nearest rank; `None` when there are none.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let i = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i.min(last)).copied()
}

/// Whether the test process runs as root.
pub fn is_root() -> bool {
    // Reading /proc avoids a libc dependency for one call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Decides what a test does about something missing: `None` means go on; otherwise the test
/// must return early. Panics (fails the test) when peers are required.
#[track_caller]
pub fn skip_or_fail(test: &str, missing: &[Missing]) -> Option<()> {
    if missing.is_empty() {
        return None;
    }
    let reasons: Vec<String> = missing.iter().map(ToString::to_string).collect();
    if peers_required() {
        panic!("{test}: REQUIRE_PEERS is set but {}", reasons.join("; "));
    }
    eprintln!("SKIPPED {test}: {}", reasons.join("; "));
    Some(())
}

/// Looks up programs; returns their paths, or `None` after skipping (or panics under
/// `REQUIRE_PEERS`). `programs` pairs each program with its Debian package.
#[track_caller]
pub fn require(test: &str, programs: &[(&str, &str)], root: bool) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (name, package) in programs {
        match find_program(name) {
            Some(path) => found.push(path),
            None => missing.push(Missing::Program {
                name: (*name).to_owned(),
                package: (*package).to_owned(),
            }),
        }
    }
    if root && !is_root() {
        missing.push(Missing::Root);
    }
    match skip_or_fail(test, &missing) {
        Some(()) => None,
        None => Some(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_every_machine_has() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-not-a-program-anywhere").is_none());
    }

    #[test]
    fn missing_reasons_name_the_package_to_install() {
        let m = Missing::Program {
            name: "birdc".into(),
            package: "bird2".into(),
        };
        assert!(m.to_string().contains("`bird2`"));
    }

    #[test]
    fn nothing_missing_means_go_on() {
        assert_eq!(skip_or_fail("t", &[]), None);
    }
}
