//! The start and end every daemon shares: logs, the panic hook, the runtime, errors printed
//! with their causes, and an exit that never waits on a stuck task.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// How long the runtime's remaining tasks get once the daemon's main future has returned
/// (after SIGTERM): a task blocked on a peer that stopped reading must not keep the process.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs a daemon's main future on a multi-threaded runtime (`threads` workers, default one per
/// core) with logging and the panic hook installed, and turns its result into the exit code.
pub fn run<F, Fut>(threads: Option<usize>, main: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    crate::logging::init();
    crate::panics::install_hook();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(main());
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
