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
        Self::start_in(None, config)
    }

    /// [`Bird::start`] inside a network namespace of the test's.
    pub fn start_in(namespace: Option<&crate::netns::Namespace>, config: &str) -> Self {
        let dir = TempDir::new("bird");
        let conf = dir.path().join("bird.conf");
        std::fs::write(&conf, config).expect("write bird.conf");
        let socket = dir.path().join("bird.ctl");
        let bird = crate::find_program("bird").expect("bird (checked by require)");
        let birdc = crate::find_program("birdc").expect("birdc (checked by require)");
        let mut cmd = match namespace {
            Some(ns) => ns.command(bird),
            None => Command::new(bird),
        };
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

/// A persistent connection to BIRD's control socket: sub-millisecond queries for measurements,
/// where starting `birdc` for every poll would dominate what is measured.
pub struct BirdCtl {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

impl BirdCtl {
    pub fn connect(bird: &Bird) -> std::io::Result<Self> {
        let stream = std::os::unix::net::UnixStream::connect(&bird.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut ctl = Self {
            stream,
            buf: Vec::new(),
        };
        ctl.read_reply()?; // the greeting
        Ok(ctl)
    }

    /// Sends one command and returns the reply lines.
    pub fn query(&mut self, command: &str) -> std::io::Result<String> {
        use std::io::Write;
        self.stream.write_all(format!("{command}\n").as_bytes())?;
        self.read_reply()
    }

    /// Reads until a line whose 4-digit code is followed by a space: the end of a reply.
    fn read_reply(&mut self) -> std::io::Result<String> {
        use std::io::Read;
        let mut reply = String::new();
        loop {
            while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                let last = line.len() >= 5
                    && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                    && line.as_bytes()[4] == b' ';
                reply.push_str(&line);
                if last {
                    return Ok(reply);
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "BIRD closed the control socket",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether BIRD has a route for exactly `prefix`.
    pub fn has_route(&mut self, prefix: &str) -> bool {
        self.query(&format!("show route for {prefix}"))
            .is_ok_and(|r| r.contains(prefix))
    }

    /// Routes in a table (`show route count table T`).
    pub fn route_count(&mut self, table: &str) -> u64 {
        let reply = self
            .query(&format!("show route count table {table}"))
            .unwrap_or_default();
        reply
            .lines()
            .find_map(|l| {
                let l = l.get(5..).unwrap_or(l);
                l.split(" of ").next()?.trim().parse().ok()
            })
            .unwrap_or(0)
    }
}

/// The start of a BIRD configuration that originates `count` static /24s from 16.0.0.0 on (a
/// full table's worth at a million): router id, device and a static protocol named `flood`.
/// The caller adds the BGP protocol that exports them.
pub fn flood_table(router_id: std::net::Ipv4Addr, count: u32) -> String {
    use std::fmt::Write as _;
    let mut conf = format!(
        "router id {router_id};\nprotocol device {{}}\nprotocol static flood {{\n  ipv4;\n"
    );
    for i in 0..count {
        let n = 0x1000_0000u32 + (i << 8);
        let _ = writeln!(
            conf,
            "  route {}.{}.{}.0/24 unreachable;",
            n >> 24,
            (n >> 16) & 0xff,
            (n >> 8) & 0xff
        );
    }
    conf.push_str("}\n");
    conf
}
