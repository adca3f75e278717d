//! Everything a query needs, swapped whole on reload so a query never sees half of a change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::atlas::{Atlas, AtlasError};
use crate::geo::GeoDb;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::prepared::Prepared;
use crate::rrl::Limiter;

/// Shared by every query and the background tasks.
///
/// Configuration, database (with the atlas compiled from both) and health are each an `Arc`
/// swapped whole (health copy-on-write) through the setters below, which bump `generation`: a
/// UDP worker keeps its own snapshot and re-reads it only when the generation has moved, so a
/// query costs one load of a counter that changes rarely instead of locks and reference counts
/// every core writes to (see `memo`).
pub struct Shared {
    pub prepared: RwLock<Arc<Prepared>>,
    pub health: RwLock<Arc<HealthState>>,
    pub geo: RwLock<Option<Arc<GeoDb>>>,
    pub atlas: RwLock<Arc<Atlas>>,
    /// Response rate limiting (`None`: off); kept across reloads that leave its settings be.
    pub limiter: RwLock<Option<Arc<Limiter>>>,
    pub metrics: Metrics,
    /// What the operators' console shows beyond health: feed documents and recent events.
    pub console: crate::console::board::Board,
    /// Held while an atlas is compiled and swapped in: a configuration reload and a database
    /// reload at once must not swap in an atlas of the older of the two.
    compiling: Mutex<()>,
    generation: AtomicU64,
}

impl Shared {
    /// Compiles the atlas of `prepared` and `geo` (seconds for a full-size database).
    pub fn new(prepared: Prepared, geo: Option<GeoDb>) -> Result<Self, AtlasError> {
        let metrics = Metrics::new();
        metrics.know(&prepared.deployment);
        let atlas = compile(&metrics, &prepared, geo.as_ref())?;
        let health = HealthState::from_deployment(&prepared.deployment);
        let limiter = Limiter::new(&rate_limit(&prepared)).map(Arc::new);
        Ok(Self {
            limiter: RwLock::new(limiter),
            prepared: RwLock::new(Arc::new(prepared)),
            health: RwLock::new(Arc::new(health)),
            geo: RwLock::new(geo.map(Arc::new)),
            atlas: RwLock::new(atlas),
            metrics,
            console: Default::default(),
            compiling: Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    /// Moves whenever configuration, database or health changes: odd while a change is being
    /// written, even otherwise (a sequence lock; see `memo::View`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs `write` between two steps of the generation, so readers can tell a half-made
    /// change from a whole one.
    fn change<R>(&self, write: impl FnOnce() -> R) -> R {
        /// Ends the change even if `write` panics: an odd generation left behind would keep
        /// every reader waiting.
        struct End<'a>(&'a AtomicU64);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Release);
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        let _end = End(&self.generation);
        write()
    }

    /// Swaps in a reloaded configuration with its atlas, and health rebuilt for its sites and
    /// nodes (state carried over by name), as one change: site indices always mean the same in
    /// all three. Compiles on the calling thread, which must not be a serving one; until the
    /// swap the running configuration answers. On error nothing changes.
    pub fn set_prepared(&self, prepared: Prepared) -> Result<(), AtlasError> {
        let _compiling = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
        let atlas = compile(&self.metrics, &prepared, self.geo().as_deref())?;
        self.metrics.know(&prepared.deployment);
        self.change(|| {
            let mut health = self.health.write().unwrap_or_else(|e| e.into_inner());
            *health = Arc::new(health.carried_over(&prepared.deployment));
            let settings = rate_limit(&prepared);
            let mut limiter = self.limiter.write().unwrap_or_else(|e| e.into_inner());
            if limiter.as_ref().map(|l| l.settings()) != Some(&settings).filter(|s| s.enabled) {
                *limiter = Limiter::new(&settings).map(Arc::new);
            }
            drop(limiter);
            *self.prepared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(prepared);
            *self.atlas.write().unwrap_or_else(|e| e.into_inner()) = atlas;
        });
        Ok(())
    }

    /// Swaps in a reloaded location database with its atlas (compiled as for `set_prepared`).
    pub fn set_geo(&self, geo: GeoDb) -> Result<(), AtlasError> {
        let _compiling = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
        let atlas = compile(&self.metrics, &self.prepared(), Some(&geo))?;
        self.change(|| {
            *self.geo.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(geo));
            *self.atlas.write().unwrap_or_else(|e| e.into_inner()) = atlas;
        });
        Ok(())
    }

    /// Changes health: `f` works on a copy when snapshots of the current state are held, and
    /// the result replaces it for every query from the next one on.
    pub fn update_health<R>(&self, f: impl FnOnce(&mut HealthState) -> R) -> R {
        self.change(|| {
            let mut health = self.health.write().unwrap_or_else(|e| e.into_inner());
            f(Arc::make_mut(&mut health))
        })
    }

    pub fn health(&self) -> Arc<HealthState> {
        self.health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn prepared(&self) -> Arc<Prepared> {
        // A poisoned lock only means a panic elsewhere mid-swap; the Arc inside is whole.
        self.prepared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn geo(&self) -> Option<Arc<GeoDb>> {
        self.geo.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn atlas(&self) -> Arc<Atlas> {
        self.atlas.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn limiter(&self) -> Option<Arc<Limiter>> {
        self.limiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The rate limiting settings of a configuration.
fn rate_limit(prepared: &Prepared) -> config::dns::RateLimit {
    prepared
        .deployment
        .dns
        .as_ref()
        .map(|d| d.rate_limit.clone())
        .unwrap_or_default()
}

/// Compiles the atlas of `prepared` and `geo`, logged and counted.
fn compile(
    metrics: &Metrics,
    prepared: &Prepared,
    geo: Option<&GeoDb>,
) -> Result<Arc<Atlas>, AtlasError> {
    let atlas = Atlas::compile(&prepared.steering, geo)?;
    metrics.compiled(&atlas.stats);
    let s = &atlas.stats;
    tracing::info!(
        networks = s.networks,
        records = s.records,
        runs_v4 = s.runs_v4,
        runs_v6 = s.runs_v6,
        classes = s.classes,
        bytes = s.bytes,
        took_ms = s.took.as_millis() as u64,
        "location atlas compiled"
    );
    Ok(Arc::new(atlas))
}
