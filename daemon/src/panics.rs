//! Panics are contained where they happen (a datagram, a connection, a task) and must not pass
//! unseen: the hook logs each at ERROR through `tracing` and counts it for `/metrics`.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics in this process since it started.
pub fn count() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Installs the hook (once per process): every panic is counted and logged at ERROR with the
/// thread and source location, instead of printed to stderr outside the log.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            let thread = std::thread::current();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(
                thread = thread.name().unwrap_or("-"),
                %location,
                "panic contained: {message}; the request being handled was dropped (a bug: please report it with this line)"
            );
        }));
    });
}

/// The counter in Prometheus text format, named for the daemon.
pub fn metrics_text(daemon: &str) -> String {
    format!(
        "# HELP {daemon}_panics_total Panics contained (the request being handled was dropped)\n# TYPE {daemon}_panics_total counter\n{daemon}_panics_total {}\n",
        count()
    )
}
