//! Everything a query needs, swapped whole on reload so a query never sees half of a change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::geo::GeoDb;
use crate::geo::Location;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::prepared::Prepared;
use crate::scope::ScopeCache;
use crate::steering::Ranking;

/// Shared by every query and the background tasks.
///
/// Configuration, database and health are each an `Arc` swapped whole (health copy-on-write)
/// through the setters below, which bump `generation`: a UDP worker keeps its own snapshot and
/// re-reads it only when the generation has moved, so a query costs one load of a counter that
/// changes rarely instead of locks and reference counts every core writes to (see `memo`).
pub struct Shared {
    pub prepared: RwLock<Arc<Prepared>>,
    pub health: RwLock<Arc<HealthState>>,
    pub geo: RwLock<Option<Arc<GeoDb>>>,
    pub metrics: Metrics,
    pub scopes: ScopeCache,
    generation: AtomicU64,
}

impl Shared {
    pub fn new(prepared: Prepared, geo: Option<GeoDb>) -> Self {
        let health = HealthState::from_deployment(&prepared.deployment);
        Self {
            prepared: RwLock::new(Arc::new(prepared)),
            health: RwLock::new(Arc::new(health)),
            geo: RwLock::new(geo.map(Arc::new)),
            metrics: Metrics::new(),
            scopes: ScopeCache::default(),
            generation: AtomicU64::new(0),
        }
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

    /// Swaps in a reloaded configuration, and health rebuilt for its sites and nodes (state
    /// carried over by name), as one change: site indices always mean the same in both.
    pub fn set_prepared(&self, prepared: Prepared) {
        self.change(|| {
            let mut health = self.health.write().unwrap_or_else(|e| e.into_inner());
            *health = Arc::new(health.carried_over(&prepared.deployment));
            *self.prepared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(prepared);
        });
    }

    pub fn set_geo(&self, geo: GeoDb) {
        self.change(|| {
            *self.geo.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(geo));
        });
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
}

impl Shared {
    /// The ECS scope for an answer ranked `ranking` for a client at `location`: the database
    /// network widened to every neighbour with the same site order (see `scope`).
    pub fn scope(
        &self,
        prepared: &Arc<Prepared>,
        location: Option<&Location>,
        ranking: &Ranking,
    ) -> u8 {
        match (self.geo(), location) {
            (Some(geo), Some(l)) => self.scopes.scope(prepared, &geo, l.network, ranking),
            _ => ranking.scope,
        }
    }
}
