//! The namespace runner: a topology built from Linux network namespaces and veth pairs.
//!
//! Each node with its own network becomes a namespace `clab-LAB-NODE` (the name containerlab
//! gives its containers); a node with `network-mode: container:OTHER` runs in OTHER's. A bridge
//! node is a namespace holding a Linux bridge that its links' ends join. Links are veth pairs,
//! addressed as the topology says. Processes run on the host's filesystem: bind targets in
//! `cmd` and `exec` are rewritten to the host paths behind them (see
//! [`Node::host_command`](crate::topology::Node::host_command)), `__clabDir__` is
//! `/run/iptv-lab/LAB` and `__clabNodeDir__` a directory of its own per node.
//!
//! Everything is driven through iproute2 (`ip netns`, `ip link`, `ip addr`), the tool operators
//! already use to look at the result. `down` finds what to remove from the namespaces' names,
//! so it also cleans up after a runner that crashed half-way.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::topology::{Kind, NetworkMode, Node, Topology};

/// Where labs keep their directories.
pub const LAB_ROOT: &str = "/run/iptv-lab";

/// The bridge device inside a bridge node's namespace.
const BRIDGE_DEVICE: &str = "br0";

/// Something the runner could not do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what}: {cause}")]
    Io { what: String, cause: io::Error },
    #[error("lab `{0}` is already up (namespaces clab-{0}-*): run `lab down` for it first")]
    AlreadyUp(String),
    #[error(
        "the namespace runner needs root to create network namespaces and veth pairs: run it with sudo"
    )]
    NotRoot,
    #[error("no node named `{0}` in the topology")]
    NoSuchNode(String),
    #[error("node `{0}` is a bridge: it runs no processes")]
    Bridge(String),
    #[error("{0}")]
    Prepare(String),
}

/// A topology as the runner sees it: names of namespaces and directories.
pub struct Lab<'t> {
    topology: &'t Topology,
    dir: PathBuf,
}

impl<'t> Lab<'t> {
    pub fn new(topology: &'t Topology) -> Self {
        Self {
            dir: Path::new(LAB_ROOT).join(&topology.name),
            topology,
        }
    }

    pub fn topology(&self) -> &Topology {
        self.topology
    }

    /// The lab directory (`__clabDir__`): generated files, node directories.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A node's own directory (`__clabNodeDir__`), where its console log also goes.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// The namespace a node's processes run in.
    pub fn namespace(&self, node: &str) -> Result<String, RunError> {
        let n = self.find(node)?;
        let owner = match &n.network_mode {
            NetworkMode::Own => &n.name,
            NetworkMode::SharedWith(other) => other,
        };
        Ok(namespace_name(&self.topology.name, owner))
    }

    fn find(&self, node: &str) -> Result<&'t Node, RunError> {
        self.topology
            .node(node)
            .ok_or_else(|| RunError::NoSuchNode(node.to_string()))
    }

    /// Builds the topology and starts every node's command. On failure, whatever was built
    /// is removed again.
    pub fn up(&self) -> Result<(), RunError> {
        if !is_root() {
            return Err(RunError::NotRoot);
        }
        if !lab_namespaces(&self.topology.name)?.is_empty() {
            return Err(RunError::AlreadyUp(self.topology.name.clone()));
        }
        let result = self.build();
        if result.is_err() {
            let _ = down(&self.topology.name);
        }
        result
    }

    fn build(&self) -> Result<(), RunError> {
        for node in &self.topology.nodes {
            let dir = self.node_dir(&node.name);
            std::fs::create_dir_all(&dir).map_err(|cause| RunError::Io {
                what: format!("cannot create {}", dir.display()),
                cause,
            })?;
        }
        crate::prepare::write(self.topology, &self.dir)
            .map_err(|e| RunError::Prepare(format!("{e:#}")))?;

        for node in &self.topology.nodes {
            if node.network_mode != NetworkMode::Own {
                continue;
            }
            let ns = namespace_name(&self.topology.name, &node.name);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            if node.kind == Kind::Bridge {
                ip(&["-n", &ns, "link", "add", BRIDGE_DEVICE, "type", "bridge"])?;
                ip(&["-n", &ns, "link", "set", BRIDGE_DEVICE, "up"])?;
            }
        }
        for link in &self.topology.links {
            let [a, b] = &link.ends;
            let (ns_a, ns_b) = (self.namespace(&a.node)?, self.namespace(&b.node)?);
            let mut args = vec!["-n", &ns_a, "link", "add", &a.interface];
            let mtu = link.mtu.map(|m| m.to_string());
            if let Some(mtu) = &mtu {
                args.extend(["mtu", mtu]);
            }
            args.extend(["type", "veth", "peer", "name", &b.interface, "netns", &ns_b]);
            ip(&args)?;
            for (end, ns) in [(a, &ns_a), (b, &ns_b)] {
                if self.find(&end.node)?.kind == Kind::Bridge {
                    ip(&[
                        "-n",
                        ns,
                        "link",
                        "set",
                        &end.interface,
                        "master",
                        BRIDGE_DEVICE,
                    ])?;
                }
                for addr in &end.addresses {
                    ip(&[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &addr.to_string(),
                        "dev",
                        &end.interface,
                    ])?;
                }
                ip(&["-n", ns, "link", "set", &end.interface, "up"])?;
            }
        }
        // Sysctls and exec before any command starts: daemons bind addresses and expect
        // forwarding and routes to be in place.
        for node in &self.topology.nodes {
            if node.kind == Kind::Bridge {
                continue;
            }
            let ns = self.namespace(&node.name)?;
            for (key, value) in &node.sysctls {
                run(Command::new("ip").args([
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    &format!("{key}={value}"),
                ]))?;
            }
            for text in &node.exec {
                let command = node.host_command(text, &self.dir, &self.node_dir(&node.name));
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns, "sh", "-c", &command]);
                self.environment(node, &mut cmd);
                run(&mut cmd).map_err(|e| RunError::Command {
                    command: format!("{}: exec `{text}`", node.name),
                    detail: e.to_string(),
                })?;
            }
        }
        for node in &self.topology.nodes {
            if node.cmd.is_some() {
                self.start(&node.name)?;
            }
        }
        Ok(())
    }

    /// The environment of a node's commands: the node's `env`, and the directory of this
    /// program first on the PATH so that the lab runs the daemons built beside it.
    fn environment(&self, node: &Node, cmd: &mut Command) {
        let mut path = OsString::new();
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
        {
            path.push(dir);
            path.push(":");
        }
        path.push(
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        );
        cmd.env("PATH", path);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.envs(&node.env);
    }

    /// Starts a node's command in the background, its output appended to the node's
    /// `console.log`. The process leads a process group of its own, so that [`Lab::stop`]
    /// reaches everything it starts.
    pub fn start(&self, node: &str) -> Result<u32, RunError> {
        use std::os::unix::process::CommandExt;
        let n = self.find(node)?;
        if n.kind == Kind::Bridge {
            return Err(RunError::Bridge(node.to_string()));
        }
        let Some(text) = &n.cmd else {
            return Err(RunError::Command {
                command: format!("start {node}"),
                detail: "the node has no `cmd`".into(),
            });
        };
        let dir = self.node_dir(node);
        let command = n.host_command(text, &self.dir, &dir);
        let log_path = dir.join("console.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|cause| RunError::Io {
                what: format!("cannot open {}", log_path.display()),
                cause,
            })?;
        let err = log.try_clone().map_err(|cause| RunError::Io {
            what: format!("cannot open {}", log_path.display()),
            cause,
        })?;
        let ns = self.namespace(node)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "sh", "-c", &command])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        self.environment(n, &mut cmd);
        let child = cmd.spawn().map_err(|cause| RunError::Io {
            what: format!("cannot start {node}: `{command}`"),
            cause,
        })?;
        let pid = child.id();
        // Dropping the handle neither waits for nor kills the child: it outlives this process
        // (init reaps it), and `stop` reaches it through its process group.
        drop(child);
        let pid_path = dir.join("pid");
        std::fs::write(&pid_path, pid.to_string()).map_err(|cause| RunError::Io {
            what: format!("cannot write {}", pid_path.display()),
            cause,
        })?;
        Ok(pid)
    }

    /// Stops a node's processes with `signal`: its process group and, for a node with a
    /// network of its own that no other node shares, anything else left in its namespace
    /// (daemons that detached). Returns whether anything was running.
    pub fn stop(&self, node: &str, signal: i32) -> Result<bool, RunError> {
        let n = self.find(node)?;
        let mut any = false;
        if let Some(pid) = std::fs::read_to_string(self.node_dir(node).join("pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
            any |= unsafe { libc::kill(-pid, signal) } == 0;
        }
        let shared = self
            .topology
            .nodes
            .iter()
            .any(|o| o.network_mode == NetworkMode::SharedWith(n.name.clone()));
        if n.network_mode == NetworkMode::Own && !shared {
            for pid in namespace_pids(&self.namespace(node)?)? {
                // SAFETY: as above, for one process.
                any |= unsafe { libc::kill(pid, signal) } == 0;
            }
        }
        Ok(any)
    }

    /// Runs `argv` in a node's namespace with the terminal attached.
    pub fn exec(&self, node: &str, argv: &[String]) -> Result<ExitStatus, RunError> {
        let n = self.find(node)?;
        let ns = self.namespace(node)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]).args(argv);
        self.environment(n, &mut cmd);
        cmd.status().map_err(|cause| RunError::Io {
            what: format!("cannot run `{}` in {node}", argv.join(" ")),
            cause,
        })
    }

    /// Runs `argv` in a node's namespace and returns its standard output.
    pub fn output(&self, node: &str, argv: &[&str]) -> Result<String, RunError> {
        let n = self.find(node)?;
        let ns = self.namespace(node)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]).args(argv);
        self.environment(n, &mut cmd);
        run(&mut cmd)
    }
}

/// Moves the calling thread into a namespace: sockets it opens from then on belong there.
/// Monitors and viewers run on threads of their own that call this first.
pub fn enter(namespace: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(Path::new("/run/netns").join(namespace))?;
    // SAFETY: setns(2) on an open namespace file descriptor; affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The namespace of a node with its own network.
pub fn namespace_name(lab: &str, node: &str) -> String {
    format!("clab-{lab}-{node}")
}

/// Removes a lab: stops every process in its namespaces (SIGTERM, then SIGKILL after a few
/// seconds), deletes the namespaces (their veth pairs go with them) and the lab directory.
/// Removing a lab that is not up does nothing.
pub fn down(lab: &str) -> Result<usize, RunError> {
    if !is_root() {
        return Err(RunError::NotRoot);
    }
    let namespaces = lab_namespaces(lab)?;
    let mut pids = Vec::new();
    for ns in &namespaces {
        pids.extend(namespace_pids(ns)?);
    }
    for &pid in &pids {
        // SAFETY: kill(2) on a pid found in the lab's namespaces; no memory involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: signal 0 only checks that the process exists.
    while pids.iter().any(|&p| unsafe { libc::kill(p, 0) } == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for ns in &namespaces {
        for pid in namespace_pids(ns)? {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        ip(&["netns", "del", ns])?;
    }
    let dir = Path::new(LAB_ROOT).join(lab);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|cause| RunError::Io {
            what: format!("cannot remove {}", dir.display()),
            cause,
        })?;
    }
    Ok(namespaces.len())
}

/// The namespaces of a lab, found by name.
fn lab_namespaces(lab: &str) -> Result<Vec<String>, RunError> {
    let prefix = format!("clab-{lab}-");
    let list = run(Command::new("ip").args(["netns", "list"]))?;
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_string)
        .collect())
}

fn namespace_pids(ns: &str) -> Result<Vec<i32>, RunError> {
    let out = run(Command::new("ip").args(["netns", "pids", ns]))?;
    Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) -> Result<String, RunError> {
    run(Command::new("ip").args(args))
}

/// Runs a command to completion; its standard error becomes the error.
fn run(cmd: &mut Command) -> Result<String, RunError> {
    let describe = |cmd: &Command| {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|cause| RunError::Io {
            what: format!("cannot run `{}`", describe(cmd)),
            cause,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RunError::Command {
            command: describe(cmd),
            detail: format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        })
    }
}
