//! FRR's bgpd as a test peer, standalone (no zebra), driven through `vtysh`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, TempDir, run, wait_for};

/// A running bgpd with its own config and vty socket directory.
pub struct Frr {
    pub daemon: Daemon,
    dir: TempDir,
    vtysh: PathBuf,
}

impl Frr {
    pub const PROGRAMS: &'static [(&'static str, &'static str)] =
        &[("bgpd", "frr"), ("vtysh", "frr")];

    /// Starts bgpd listening on `listen:port` with `config` (bgpd.conf text).
    pub fn start(config: &str, listen: Ipv4Addr, port: u16) -> Self {
        let dir = TempDir::new("frr");
        let conf = dir.path().join("bgpd.conf");
        std::fs::write(&conf, config).expect("write bgpd.conf");
        let bgpd = crate::find_program("bgpd").expect("bgpd (checked by require)");
        let vtysh = crate::find_program("vtysh").expect("vtysh (checked by require)");
        let mut cmd = Command::new(bgpd);
        cmd.arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(dir.path())
            .args([
                "-Z",
                "-S",
                "-P",
                "0",
                "-p",
                &port.to_string(),
                "-l",
                &listen.to_string(),
            ]);
        let daemon = Daemon::spawn("bgpd", cmd, &dir.path().join("bgpd.log")).expect("start bgpd");
        let frr = Self { daemon, dir, vtysh };
        let ready = wait_for(Duration::from_secs(10), || {
            frr.vtysh("show bgp summary json")
                .contains("routerId")
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "bgpd did not start:\n{}",
            frr.daemon.log_text()
        );
        frr
    }

    /// Runs one vtysh command.
    pub fn vtysh(&self, command: &str) -> String {
        let mut cmd = Command::new(&self.vtysh);
        cmd.arg("--vty_socket")
            .arg(self.dir.path())
            .arg("-c")
            .arg(command);
        match run(cmd, Duration::from_secs(10)) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("vtysh failed: {e}"),
        }
    }
}
