//! BIRD 2 as a test peer, driven through `birdc`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, TempDir, run, wait_for};

/// A running BIRD with its own config, control socket and log.
pub struct Bird {
    pub daemon: Daemon,
    socket: PathBuf,
    birdc: PathBuf,
    _dir: TempDir,
}

impl Bird {
    /// The programs a BIRD test needs, for `crate::require`.
    pub const PROGRAMS: &'static [(&'static str, &'static str)] =
        &[("bird", "bird2"), ("birdc", "bird2")];

    /// Starts BIRD with `config` (the text of bird.conf) and waits until it answers.
    pub fn start(config: &str) -> Self {
        let dir = TempDir::new("bird");
        let conf = dir.path().join("bird.conf");
        std::fs::write(&conf, config).expect("write bird.conf");
        let socket = dir.path().join("bird.ctl");
        let bird = crate::find_program("bird").expect("bird (checked by require)");
        let birdc = crate::find_program("birdc").expect("birdc (checked by require)");
        let mut cmd = Command::new(bird);
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.path().join("bird.pid"));
        let daemon = Daemon::spawn("bird", cmd, &dir.path().join("bird.log")).expect("start bird");
        let bird = Self {
            daemon,
            socket,
            birdc,
            _dir: dir,
        };
        let ready = wait_for(Duration::from_secs(10), || {
            bird.cli("show status")
                .contains("Daemon is up")
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "BIRD did not start:\n{}",
            bird.daemon.log_text()
        );
        bird
    }

    /// Runs a birdc command and returns its output.
    pub fn cli(&self, command: &str) -> String {
        let mut cmd = Command::new(&self.birdc);
        cmd.arg("-s").arg(&self.socket);
        cmd.args(command.split_whitespace());
        match run(cmd, Duration::from_secs(10)) {
            Ok(out) => {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            }
            Err(e) => format!("birdc failed: {e}"),
        }
    }

    /// `show route all` for one prefix, or `None` while BIRD does not have it.
    pub fn route(&self, prefix: &str) -> Option<String> {
        let out = self.cli(&format!("show route for {prefix} all"));
        out.lines().any(|l| l.starts_with(prefix)).then_some(out)
    }

    /// Whether a protocol is Established.
    pub fn established(&self, protocol: &str) -> bool {
        self.cli(&format!("show protocols {protocol}"))
            .contains("Established")
    }
}
