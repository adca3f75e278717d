//! Signals a daemon reacts to.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP: re-read the deployment file.
    Reload,
    /// SIGTERM or Ctrl-C: stop cleanly.
    Stop,
    /// SIGUSR1, for daemons that drain (`Signals::with_drain`): take no new work.
    Drain,
    /// SIGUSR2: end a drain.
    Undrain,
}

/// Listens for SIGHUP, SIGTERM and SIGINT.
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
    drain: Option<(Signal, Signal)>,
}

impl Signals {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            drain: None,
        })
    }

    /// Also listens for SIGUSR1 (drain) and SIGUSR2 (undrain). Only daemons that handle them
    /// ask: elsewhere the signals keep their default action.
    pub fn with_drain() -> std::io::Result<Self> {
        let mut signals = Self::new()?;
        signals.drain = Some((
            signal(SignalKind::user_defined1())?,
            signal(SignalKind::user_defined2())?,
        ));
        Ok(signals)
    }

    /// Waits for the next request.
    pub async fn next(&mut self) -> Request {
        let request = self.wait().await;
        if request == Request::Stop {
            crate::systemd::stopping();
        }
        request
    }

    async fn wait(&mut self) -> Request {
        tokio::select! {
            _ = self.hangup.recv() => Request::Reload,
            _ = self.terminate.recv() => Request::Stop,
            _ = self.interrupt.recv() => Request::Stop,
            r = async {
                match &mut self.drain {
                    Some((drain, undrain)) => tokio::select! {
                        _ = drain.recv() => Request::Drain,
                        _ = undrain.recv() => Request::Undrain,
                    },
                    None => std::future::pending().await,
                }
            } => r,
        }
    }
}
