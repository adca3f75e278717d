//! ExaBGP as a test peer: what it receives is written as JSON lines to a file by an API
//! process, and read back by the test.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, TempDir, wait_for};

/// A running ExaBGP with the file its received messages go to.
pub struct ExaBgp {
    pub daemon: Daemon,
    received: PathBuf,
    _dir: TempDir,
}

impl ExaBgp {
    pub const PROGRAMS: &'static [(&'static str, &'static str)] =
        &[("exabgp", "exabgp"), ("python3", "python3")];

    /// Starts ExaBGP listening on `listen:port`. `neighbors` is the neighbor section(s) of the
    /// configuration; each should include `api { processes [ dump ]; receive { parsed; update; } }`
    /// to have its received UPDATEs recorded.
    pub fn start(neighbors: &str, listen: Ipv4Addr, port: u16) -> Self {
        let dir = TempDir::new("exabgp");
        let received = dir.path().join("received.jsonl");
        let dump = dir.path().join("dump.py");
        std::fs::write(&dump, "import sys\nwith open(sys.argv[1], 'a') as out:\n    for line in sys.stdin:\n        out.write(line)\n        out.flush()\n").expect("write dump.py");
        let python = crate::find_program("python3").expect("python3 (checked by require)");
        let conf = dir.path().join("exabgp.conf");
        let config = format!(
            "process dump {{\n  run {} {} {};\n  encoder json;\n}}\n{neighbors}\n",
            python.display(),
            dump.display(),
            received.display()
        );
        std::fs::write(&conf, config).expect("write exabgp.conf");
        let mut cmd =
            Command::new(crate::find_program("exabgp").expect("exabgp (checked by require)"));
        cmd.arg(&conf)
            .env("exabgp.tcp.bind", listen.to_string())
            .env("exabgp.tcp.port", port.to_string())
            .env("exabgp.daemon.user", whoami())
            .env("exabgp.cli.enable", "false")
            .env("exabgp.log.destination", "stdout");
        let daemon =
            Daemon::spawn("exabgp", cmd, &dir.path().join("exabgp.log")).expect("start exabgp");
        let exa = Self {
            daemon,
            received,
            _dir: dir,
        };
        let ready = wait_for(Duration::from_secs(15), || {
            exa.daemon
                .log_text()
                .contains("loaded new configuration successfully")
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "ExaBGP did not start:\n{}",
            exa.daemon.log_text()
        );
        exa
    }

    /// Every message received so far, one JSON document per line.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(&self.received)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// ExaBGP drops privileges to this user; it must be able to write the received file.
fn whoami() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            if crate::is_root() {
                "root".into()
            } else {
                "nobody".into()
            }
        })
}
