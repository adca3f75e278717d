//! systemd's service protocol (sd_notify(3)) for `Type=notify` units, without libsystemd: a
//! datagram to `$NOTIFY_SOCKET`. `READY=1` once the daemon serves, `WATCHDOG=1` every half
//! `WatchdogSec` while every part in its [`Liveness`] serves (so systemd restarts a daemon
//! that runs but no longer serves, not only one that exited), `STOPPING=1` when it stops.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use crate::liveness::Liveness;

/// Where systemd listens for this service's notifications.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names (a path, or `@name` in the abstract namespace);
    /// `None` when the daemon does not run under systemd's `Type=notify`.
    pub fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_str()?;
        match Self::to(name) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={name} cannot be used, systemd is not told: {e}");
                None
            }
        }
    }

    /// A notifier sending to `name` (a path, or `@name` in the abstract namespace).
    pub fn to(name: &str) -> io::Result<Self> {
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
            None => SocketAddr::from_pathname(Path::new(name))?,
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends `state` (`READY=1`, `WATCHDOG=1`, ...).
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }
}

/// The watchdog interval systemd expects (`$WATCHDOG_USEC`), when it is meant for this process
/// (`$WATCHDOG_PID`, when set, is ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str()?.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Tells systemd the daemon serves, and feeds its watchdog (when the unit has one) for as long
/// as the runtime lives while every part of `liveness` serves. Call once, when the listeners
/// are up. Nothing outside systemd.
pub fn serving(liveness: &Liveness) {
    let Some(notifier) = Notifier::from_env() else {
        return;
    };
    if let Err(e) = notifier.send("READY=1") {
        tracing::warn!("cannot tell systemd the daemon is ready: {e}");
    }
    if let Some(interval) = watchdog_interval() {
        tokio::spawn(watchdog(notifier, liveness.clone(), interval));
    }
}

/// Hands the unit to `pid`, a replacement this process started that now serves: systemd
/// then follows it as the main process, and this one may exit without the unit stopping.
pub fn main_pid(pid: u32) {
    if let Some(notifier) = Notifier::from_env()
        && let Err(e) = notifier.send(&format!("MAINPID={pid}"))
    {
        tracing::warn!("cannot tell systemd that pid {pid} is the service now: {e}");
    }
}

/// Tells systemd the daemon is stopping (nothing outside systemd).
pub fn stopping() {
    if let Some(notifier) = Notifier::from_env() {
        let _ = notifier.send("STOPPING=1");
    }
}

/// Sends `WATCHDOG=1` every half `interval` while `liveness` has no problem; says once why it
/// stopped feeding, and again when it resumes.
pub async fn watchdog(notifier: Notifier, liveness: Liveness, interval: Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    let mut starving = false;
    loop {
        tick.tick().await;
        let problems = liveness.problems();
        if problems.is_empty() {
            if starving {
                tracing::warn!("every part serves again: feeding systemd's watchdog");
                starving = false;
            }
            if let Err(e) = notifier.send("WATCHDOG=1") {
                tracing::warn!("cannot feed systemd's watchdog: {e}");
            }
        } else if !starving {
            tracing::error!(
                "not feeding systemd's watchdog: {}; systemd restarts the daemon unless it recovers within {interval:?}",
                problems.join("; ")
            );
            starving = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time: liveness reads the clock, not tokio's.
    #[tokio::test]
    async fn the_watchdog_is_fed_only_while_every_part_serves() {
        let dir = std::env::temp_dir().join(format!("sd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        systemd.set_nonblocking(true).unwrap();
        let received = || {
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while let Ok(n) = systemd.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        };
        let notifier = Notifier::to(path.to_str().unwrap()).unwrap();
        notifier.send("READY=1").unwrap();
        assert_eq!(received(), ["READY=1"]);

        let liveness = Liveness::default();
        let worker = liveness.heartbeat("worker", Duration::from_millis(150));
        tokio::spawn(watchdog(notifier, liveness, Duration::from_millis(200)));
        let beat_for = |d: Duration| {
            let worker = worker.clone();
            async move {
                let until = std::time::Instant::now() + d;
                while std::time::Instant::now() < until {
                    worker.beat();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        // Beating: fed every 100 ms.
        beat_for(Duration::from_millis(500)).await;
        let fed = received();
        assert!(
            fed.len() >= 3 && fed.iter().all(|m| m == "WATCHDOG=1"),
            "{fed:?}"
        );
        // The worker stops beating: past its bound, no more feeding.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = received();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(received(), Vec::<String>::new());
        // It beats again: fed again.
        beat_for(Duration::from_millis(300)).await;
        assert!(received().contains(&"WATCHDOG=1".to_owned()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
