//! GoBGP (`gobgpd`) as a test peer, driven through the `gobgp` CLI and its gRPC API.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, TempDir, run, wait_for};

/// A running gobgpd with its config and API address.
pub struct GoBgp {
    pub daemon: Daemon,
    api: (Ipv4Addr, u16),
    _dir: TempDir,
}

impl GoBgp {
    pub const PROGRAMS: &'static [(&'static str, &'static str)] =
        &[("gobgpd", "gobgpd"), ("gobgp", "gobgpd")];

    /// Starts gobgpd with `config` (TOML); its gRPC API listens on `api`.
    pub fn start(config: &str, api: (Ipv4Addr, u16)) -> Self {
        let dir = TempDir::new("gobgp");
        let conf = dir.path().join("gobgpd.toml");
        std::fs::write(&conf, config).expect("write gobgpd.toml");
        let mut cmd =
            Command::new(crate::find_program("gobgpd").expect("gobgpd (checked by require)"));
        cmd.arg("-f")
            .arg(&conf)
            .arg("--api-hosts")
            .arg(format!("{}:{}", api.0, api.1));
        let daemon =
            Daemon::spawn("gobgpd", cmd, &dir.path().join("gobgpd.log")).expect("start gobgpd");
        let gobgp = Self {
            daemon,
            api,
            _dir: dir,
        };
        let ready = wait_for(Duration::from_secs(10), || {
            gobgp.cli(&["global"]).contains("AS:").then_some(())
        });
        assert!(
            ready.is_some(),
            "gobgpd did not start:\n{}",
            gobgp.daemon.log_text()
        );
        gobgp
    }

    /// Runs `gobgp ARGS` against this daemon.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd =
            Command::new(crate::find_program("gobgp").expect("gobgp (checked by require)"));
        cmd.arg("-u")
            .arg(self.api.0.to_string())
            .arg("-p")
            .arg(self.api.1.to_string())
            .args(args);
        match run(cmd, Duration::from_secs(10)) {
            Ok(out) => {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            }
            Err(e) => format!("gobgp failed: {e}"),
        }
    }
}
