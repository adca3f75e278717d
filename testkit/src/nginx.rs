//! nginx as a plain HTTP server for tests (and as the yardstick for stream serving).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, TempDir, wait_for};

/// A running nginx serving one directory per address.
pub struct Nginx {
    pub daemon: Daemon,
    _dir: TempDir,
}

impl Nginx {
    pub const PROGRAMS: &'static [(&'static str, &'static str)] = &[("nginx", "nginx-light")];

    /// Serves `root` on `addr` for each pair.
    pub fn start(sites: &[(SocketAddr, PathBuf)]) -> Self {
        let dir = TempDir::new("nginx");
        let path = configure(&dir, sites);
        let mut cmd = command(&dir, &path);
        cmd.arg("-g").arg("daemon off;");
        let daemon =
            Daemon::spawn("nginx", cmd, &dir.path().join("nginx.out")).expect("start nginx");
        wait_up(sites, || daemon.log_text());
        Self { daemon, _dir: dir }
    }

    /// nginx with `servers` (server blocks, and anything else of the `http` block) as its
    /// configuration, up once `first` accepts connections; `{dir}` in `servers` stands for
    /// its own directory (for cache paths).
    pub fn start_servers(servers: &str, first: SocketAddr) -> Self {
        let dir = TempDir::new("nginx");
        let servers = servers.replace("{dir}", &dir.path().display().to_string());
        let path = write_conf(&dir, &servers);
        let mut cmd = command(&dir, &path);
        cmd.arg("-g").arg("daemon off;");
        let daemon =
            Daemon::spawn("nginx", cmd, &dir.path().join("nginx.out")).expect("start nginx");
        wait_up(&[(first, PathBuf::new())], || daemon.log_text());
        Self { daemon, _dir: dir }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// nginx as it runs in production: a daemon whose master detaches, so that its binary upgrade
/// (USR2, which nginx refuses while its master's parent waits on it) works. The master running
/// when dropped is stopped.
pub struct Detached {
    dir: TempDir,
}

impl Detached {
    /// Serves `root` on `addr` for each pair.
    pub fn start(sites: &[(SocketAddr, PathBuf)]) -> Self {
        let dir = TempDir::new("nginx");
        let path = configure(&dir, sites);
        let status = command(&dir, &path).status().expect("start nginx");
        assert!(status.success(), "nginx did not start: {status}");
        let detached = Self { dir };
        wait_up(sites, || {
            std::fs::read_to_string(detached.dir.path().join("error.log")).unwrap_or_default()
        });
        detached
    }

    /// The master process's pid file (`nginx.pid`; the old master's is `nginx.pid.oldbin`
    /// during an upgrade).
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("nginx.pid")
    }

    /// The running master.
    pub fn master(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(master) = self.master() {
            let _ = Command::new("kill").arg(master.to_string()).status();
        }
    }
}

/// Writes the configuration serving each site from its root; its path.
fn configure(dir: &TempDir, sites: &[(SocketAddr, PathBuf)]) -> PathBuf {
    let servers: String = sites
        .iter()
        .map(|(addr, root)| {
            format!(
                "  server {{ listen {addr}; root {}; location / {{ }} }}\n",
                root.display()
            )
        })
        .collect();
    write_conf(dir, &servers)
}

/// Writes nginx.conf with `servers` inside its `http` block; its path.
fn write_conf(dir: &TempDir, servers: &str) -> PathBuf {
    let user = if crate::is_root() { "user root;\n" } else { "" };
    let conf = format!(
        "{user}worker_processes 1;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n{servers}}}\n",
        pid = dir.path().join("nginx.pid").display(),
        log = dir.path().join("error.log").display(),
        tmp = dir.path().display(),
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    path
}

/// nginx with `conf`, its prefix in `dir`.
fn command(dir: &TempDir, conf: &Path) -> Command {
    let mut cmd = Command::new(crate::find_program("nginx").expect("nginx (checked by require)"));
    cmd.arg("-c").arg(conf).arg("-p").arg(dir.path());
    cmd
}

/// Waits until the first site accepts connections.
fn wait_up(sites: &[(SocketAddr, PathBuf)], log: impl Fn() -> String) {
    let first = sites.first().map(|(a, _)| *a);
    let up = wait_for(Duration::from_secs(10), || {
        first
            .and_then(|a| std::net::TcpStream::connect(a).ok())
            .map(|_| ())
    });
    assert!(up.is_some(), "nginx did not start:\n{}", log());
}
