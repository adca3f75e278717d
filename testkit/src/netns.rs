//! Network namespaces a test makes for itself (needs root): hosts joined by veth links, with
//! addresses no other test and not the machine itself uses. Removed, with whatever still runs
//! in them, when dropped.

use std::ffi::OsStr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The `ip` program, for `crate::require`.
pub const PROGRAMS: &[(&str, &str)] = &[("ip", "iproute2")];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with its loopback up.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    /// A fresh namespace named after `label`, this process and a counter.
    pub fn new(label: &str) -> Self {
        let name = format!(
            "t-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `program` to be run inside the namespace (`ip netns exec`, which keeps the pid).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `ip ARGS` inside the namespace; panics with its error when it fails.
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// Loads an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write as _;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ruleset.as_bytes())
            .expect("write the ruleset");
        assert!(
            child.wait().expect("nft").success(),
            "nft refused:\n{ruleset}"
        );
    }
}

/// The nftables table of [`Namespace::silence`].
const SILENCE: &str = "table inet silence {\n  chain input { type filter hook input priority -10; policy drop; }\n  chain output { type filter hook output priority -10; policy drop; }\n}\n";

impl Namespace {
    /// Drops every packet in and out of the namespace: its links are dead while their
    /// interfaces stay up, as with a failed switch or fibre.
    pub fn silence(&self) {
        self.nft(SILENCE);
    }

    /// Undoes [`Namespace::silence`].
    pub fn unsilence(&self) {
        self.nft("delete table inet silence\n");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins `a` and `b` with a veth pair named `eth-NAME` on both sides, with the addresses
/// given (`10.203.0.1/30`), and brings it up.
pub fn link(a: &Namespace, a_addr: &str, b: &Namespace, b_addr: &str, name: &str) {
    let ifname = format!("eth-{name}");
    run(Command::new("ip").args([
        "link",
        "add",
        "tmp-veth-a",
        "netns",
        &a.name,
        "type",
        "veth",
        "peer",
        "name",
        "tmp-veth-b",
        "netns",
        &b.name,
    ]));
    for (ns, tmp, addr) in [(a, "tmp-veth-a", a_addr), (b, "tmp-veth-b", b_addr)] {
        ns.ip(&["link", "set", tmp, "name", &ifname]);
        ns.ip(&["addr", "add", addr, "dev", &ifname]);
        ns.ip(&["link", "set", &ifname, "up"]);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run ip");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
