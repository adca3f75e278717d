//! The site drain an operator controls: `POST /drain` and `/undrain` on the admin API (behind
//! the admin token), or the drain file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::info;

/// Whether an operator drained the site; cheap to clone.
#[derive(Clone, Default)]
pub struct DrainSwitch(Arc<AtomicBool>);

impl DrainSwitch {
    /// Drained through the API, or while `drain_file` exists.
    pub fn drained(&self, drain_file: Option<&Path>) -> bool {
        self.0.load(Ordering::Relaxed) || drain_file.is_some_and(Path::exists)
    }

    /// Drained through the API (the drain file speaks for itself).
    pub fn by_api(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, drained: bool) {
        self.0.store(drained, Ordering::Relaxed);
    }
}

/// The state-changing admin routes (the caller puts them behind the admin token).
pub fn router(switch: DrainSwitch) -> axum::Router {
    let undrain = switch.clone();
    axum::Router::new()
        .route(
            "/drain",
            axum::routing::post(move || async move {
                switch.set(true);
                info!("site drained by an operator: graceful shutdown, then withdraw");
                "draining\n"
            }),
        )
        .route(
            "/undrain",
            axum::routing::post(move || async move {
                undrain.set(false);
                info!("site drain cleared by an operator");
                "ok\n"
            }),
        )
}
