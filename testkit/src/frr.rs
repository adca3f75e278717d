//! FRR's bgpd as a test peer, driven through `vtysh`: standalone (no zebra) on loopback, or
//! with zebra and bfdd inside a network namespace when the test needs FRR's BFD.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, TempDir, run, wait_for};

/// A running bgpd with its own config and vty socket directory.
pub struct Frr {
    /// bgpd.
    pub daemon: Daemon,
    /// zebra and bfdd when started with [`Frr::start_with_bfd`]; stopped when dropped.
    pub helpers: Vec<Daemon>,
    dir: TempDir,
    vtysh: PathBuf,
}

impl Frr {
    pub const PROGRAMS: &'static [(&'static str, &'static str)] =
        &[("bgpd", "frr"), ("vtysh", "frr")];

    /// What [`Frr::start_with_bfd`] needs beyond [`Frr::PROGRAMS`].
    pub const BFD_PROGRAMS: &'static [(&'static str, &'static str)] =
        &[("zebra", "frr"), ("bfdd", "frr")];

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
        let frr = Self {
            daemon,
            helpers: Vec::new(),
            dir,
            vtysh,
        };
        frr.wait_ready();
        frr
    }

    /// zebra, bfdd and bgpd inside `namespace`, the way a router runs them: bgpd registers its
    /// `neighbor X bfd` sessions with bfdd through zebra. `bgpd_conf` and `bfdd_conf` are the
    /// daemons' config texts; bgpd listens on port 179 of every address in the namespace.
    pub fn start_with_bfd(
        namespace: &crate::netns::Namespace,
        bgpd_conf: &str,
        bfdd_conf: &str,
    ) -> Self {
        let dir = TempDir::new("frr");
        // zebra and bfdd drop to FRR's own user, which must reach the sockets and logs here.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the FRR directory");
        }
        let zserv = dir.path().join("zserv.api");
        let vtysh = crate::find_program("vtysh").expect("vtysh (checked by require)");
        let start = |name: &str, config: &str, extra: &[&std::ffi::OsStr]| {
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(&conf, config).unwrap_or_else(|e| panic!("write {name}.conf: {e}"));
            let program =
                crate::find_program(name).unwrap_or_else(|| panic!("{name} (checked by require)"));
            let mut cmd = namespace.command(program);
            cmd.arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(dir.path().join(format!("{name}.pid")))
                .arg("--vty_socket")
                .arg(dir.path())
                .arg("-z")
                .arg(&zserv)
                .args(["-P", "0"])
                .args(extra);
            Daemon::spawn(name, cmd, &dir.path().join(format!("{name}.log")))
                .unwrap_or_else(|e| panic!("start {name}: {e}"))
        };
        let zebra = start("zebra", "", &[]);
        let ready = wait_for(Duration::from_secs(10), || zserv.exists().then_some(()));
        assert!(
            ready.is_some(),
            "zebra did not start:\n{}",
            zebra.log_text()
        );
        let bfdctl = dir.path().join("bfdd.sock");
        let bfdd = start(
            "bfdd",
            bfdd_conf,
            &["--bfdctl".as_ref(), bfdctl.as_os_str()],
        );
        // bgpd stays root (`-S`), as in `Frr::start`.
        let daemon = start("bgpd", bgpd_conf, &["-S".as_ref()]);
        let frr = Self {
            daemon,
            helpers: vec![zebra, bfdd],
            dir,
            vtysh,
        };
        frr.wait_ready();
        frr
    }

    /// Every log of this FRR, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut text = self.daemon.log_text();
        for helper in &self.helpers {
            text.push_str(&helper.log_text());
        }
        text
    }

    fn wait_ready(&self) {
        let frr = self;
        let ready = wait_for(Duration::from_secs(10), || {
            frr.vtysh("show bgp summary json")
                .contains("routerId")
                .then_some(())
        });
        assert!(ready.is_some(), "bgpd did not start:\n{}", frr.logs());
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
