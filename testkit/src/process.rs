//! Child processes that are stopped when the test ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running program, terminated (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> std::io::Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, `KILL`, `HUP`).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log so far, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            self.signal("CONT");
            self.signal("TERM");
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Runs a command to completion with a timeout. Its output is read while it runs (a child
/// that writes more than a pipe holds would otherwise wait on us forever).
pub fn run(mut cmd: Command, timeout: Duration) -> std::io::Result<Output> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A temporary directory removed when dropped (kept when `KEEP_TEST_DIRS` is set, to debug).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("anycast-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// CPU seconds (user + system) a process has used so far; 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = cpu_times(pid);
    user + system
}

/// User and system CPU seconds a process has used, apart: the user part is the program's own
/// code, the system part the kernel working for it (for a network server, mostly the socket
/// path, which any server pays alike).
pub fn cpu_times(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // In clock ticks of 1/100 s (USER_HZ on Linux).
    (field(11) / 100.0, field(12) / 100.0)
}

/// [`cpu_seconds`] of a process and its live children (nginx's workers).
pub fn family_cpu_seconds(pid: u32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    cpu_seconds(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(cpu_seconds)
            .sum::<f64>()
}

/// [`memory_mib`] (resident now) of a process and its live children (nginx's workers).
pub fn family_memory_mib(pid: u32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    memory_mib(pid, false)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(|c| memory_mib(c, false))
            .sum::<f64>()
}

/// A process's memory in MiB: resident now (`peak` false) or its peak so far (`peak` true).
/// 0 when it cannot be read.
pub fn memory_mib(pid: u32, peak: bool) -> f64 {
    let field = if peak { "VmHWM:" } else { "VmRSS:" };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A process the test did not start itself (a replacement a daemon started), stopped
/// (SIGTERM) when dropped.
pub struct Adopted(pub u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

impl Adopted {
    /// The replacement named by a daemon's `replace` answer (`replaced: pid N serves, ...`).
    pub fn from_replace(said: &str) -> Option<Self> {
        said.split_whitespace()
            .skip_while(|w| *w != "pid")
            .nth(1)?
            .parse()
            .ok()
            .map(Self)
    }

    /// Runs a daemon's `replace` command: the replacement it started and what it said, or what
    /// it said when it replaced nothing.
    pub fn replace(mut cmd: Command) -> Result<(Self, String), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        match Self::from_replace(&said).filter(|_| out.status.success()) {
            Some(new) => Ok((new, said)),
            None => Err(format!("{said}{}", String::from_utf8_lossy(&out.stderr))),
        }
    }

    /// Whether the process is gone (or a zombie waiting for its parent).
    pub fn gone(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .map_or(true, |stat| stat.contains(") Z "))
    }
}
