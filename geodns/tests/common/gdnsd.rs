//! gdnsd configured like geodns (same sites, coordinates and location database), for the
//! agreement test and the benchmark.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use testkit::process::Daemon;

/// Starts gdnsd (geoip plugin, `auto_dc_coords`) serving tv.example.net with `live` steered
/// between ams, fra and lon, in its own directory under `dir`.
pub fn start(dir: &Path, db: &Path, addr: SocketAddr, threads: usize) -> Daemon {
    start_under(dir, db, addr, threads, &[])
}

/// [`start`], run by `wrapper` (a program and its arguments, such as valgrind) when not empty.
pub fn start_under(
    dir: &Path,
    db: &Path,
    addr: SocketAddr,
    threads: usize,
    wrapper: &[String],
) -> Daemon {
    let base = dir.join(format!("gdnsd-{threads}"));
    for sub in ["zones", "run", "state"] {
        std::fs::create_dir_all(base.join(sub)).expect("gdnsd dirs");
    }
    let config = format!(
        r#"options => {{
  listen => [ {ip} ]
  dns_port => {port}
  run_dir => {run}
  state_dir => {state}
  udp_threads => {threads}
  tcp_threads => 1
}}
plugins => {{ geoip => {{
  maps => {{ sites => {{
    geoip2_db => {db}
    datacenters => [ams, fra, lon]
    auto_dc_coords => {{ ams => [52.37, 4.90], fra => [50.11, 8.68], lon => [51.51, -0.13] }}
  }} }}
  resources => {{ live => {{
    map => sites
    dcmap => {{ ams => [127.0.11.1, 127.0.11.2], fra => [127.0.21.1, 127.0.21.2], lon => [127.0.31.1, 127.0.31.2] }}
  }} }}
}} }}
"#,
        ip = addr.ip(),
        port = addr.port(),
        run = base.join("run").display(),
        state = base.join("state").display(),
        db = db.display(),
    );
    std::fs::write(base.join("config"), config).expect("gdnsd config");
    std::fs::write(
        base.join("zones/tv.example.net"),
        "@ 3600 SOA ns1 hostmaster 1 3600 600 604800 30\n@ 3600 NS ns1\n@ 3600 NS ns2\nns1 A 127.0.0.1\nns2 A 127.0.0.1\nlive 20 DYNA geoip!live\n",
    )
    .expect("gdnsd zone");
    let gdnsd = testkit::find_program("gdnsd").expect("gdnsd");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(gdnsd);
            cmd
        }
        None => Command::new(gdnsd),
    };
    cmd.arg("-c").arg(&base).arg("start");
    Daemon::spawn("gdnsd", cmd, &base.join("gdnsd.log")).expect("start gdnsd")
}
