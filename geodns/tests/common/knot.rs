//! Knot DNS serving the same name from a static zone, with `mod-rrl`, for the benchmark of
//! response rate limiting under a flood.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use testkit::process::Daemon;

/// Starts knotd serving tv.example.net (`live`: Amsterdam's two node addresses, as geodns
/// answers a client there) with `mod-rrl` at `rate` responses per second per /24 or /56 and
/// `slip`, in its own directory under `dir`.
pub fn start(dir: &Path, addr: SocketAddr, threads: usize, rate: u32, slip: u32) -> Daemon {
    let base = dir.join(format!("knot-{threads}"));
    std::fs::create_dir_all(&base).expect("knot dir");
    let config = format!(
        "server:\n    listen: {ip}@{port}\n    rundir: {base}\n    udp-workers: {threads}\n    tcp-workers: 1\n    background-workers: 1\ndatabase:\n    storage: {base}\nlog:\n  - target: stderr\n    any: warning\nmod-rrl:\n  - id: limit\n    rate-limit: {rate}\n    slip: {slip}\ntemplate:\n  - id: default\n    storage: {base}\n    global-module: mod-rrl/limit\nzone:\n  - domain: tv.example.net\n    file: {base}/tv.example.net.zone\n",
        ip = addr.ip(),
        port = addr.port(),
        base = base.display(),
    );
    std::fs::write(base.join("knot.conf"), config).expect("knot config");
    std::fs::write(
        base.join("tv.example.net.zone"),
        "@ 3600 SOA ns1 hostmaster 1 3600 600 604800 30\n@ 3600 NS ns1\n@ 3600 NS ns2\nns1 A 127.0.0.1\nns2 A 127.0.0.1\nlive 20 A 127.0.11.1\nlive 20 A 127.0.11.2\n",
    )
    .expect("knot zone");
    let mut cmd = Command::new(testkit::find_program("knotd").expect("knotd"));
    cmd.arg("-c").arg(base.join("knot.conf"));
    Daemon::spawn("knotd", cmd, &base.join("knot.log")).expect("start knotd")
}
