//! Log set-up: `RUST_LOG` filters (default `info`), colour only on a terminal.

use std::io::IsTerminal;

/// Installs the global subscriber writing to stderr. Safe to call once per process.
pub fn init() {
    // hickory-server logs every query at info: far too much for a DNS server under load.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
