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
        let servers: String = sites
            .iter()
            .map(|(addr, root)| {
                format!(
                    "  server {{ listen {addr}; root {}; location / {{ }} }}\n",
                    root.display()
                )
            })
            .collect();
        let user = if crate::is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n{servers}}}\n",
            pid = dir.path().join("nginx.pid").display(),
            log = dir.path().join("error.log").display(),
            tmp = dir.path().display(),
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let mut cmd =
            Command::new(crate::find_program("nginx").expect("nginx (checked by require)"));
        cmd.arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .arg("-g")
            .arg("daemon off;");
        let daemon =
            Daemon::spawn("nginx", cmd, &dir.path().join("nginx.out")).expect("start nginx");
        let first = sites.first().map(|(a, _)| *a);
        let up = wait_for(Duration::from_secs(10), || {
            first
                .and_then(|a| std::net::TcpStream::connect(a).ok())
                .map(|_| ())
        });
        assert!(up.is_some(), "nginx did not start:\n{}", daemon.log_text());
        Self { daemon, _dir: dir }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}
