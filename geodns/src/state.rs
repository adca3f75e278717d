//! Everything a query needs, swapped whole on reload so a query never sees half of a change.

use std::sync::{Arc, RwLock};

use config::Deployment;
use hickory_proto::serialize::binary::BinEncodable;

use crate::geo::GeoDb;
use crate::geo::Location;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::scope::ScopeCache;
use crate::steering::Ranking;
use crate::steering::Steering;
use crate::zone::{ZoneError, Zones};

/// The parts derived from the deployment file.
#[derive(Debug)]
pub struct Prepared {
    pub deployment: Deployment,
    pub zones: Zones,
    pub steering: Steering,
    /// Service hostnames in lower-case wire format, for the UDP fast path.
    pub service_wire: foldhash::HashMap<Vec<u8>, usize>,
}

impl Prepared {
    pub fn new(deployment: Deployment) -> Result<Self, ZoneError> {
        let zones = Zones::build(&deployment)?;
        let steering = Steering::new(&deployment);
        let service_wire = zones
            .services
            .iter()
            .filter_map(|(name, service)| name.to_bytes().ok().map(|wire| (wire, *service)))
            .collect();
        Ok(Self {
            deployment,
            zones,
            steering,
            service_wire,
        })
    }
}

/// Shared by every query and the background tasks.
pub struct Shared {
    pub prepared: RwLock<Arc<Prepared>>,
    pub health: RwLock<HealthState>,
    pub geo: RwLock<Option<Arc<GeoDb>>>,
    pub metrics: Metrics,
    pub scopes: ScopeCache,
}

impl Shared {
    pub fn new(prepared: Prepared, geo: Option<GeoDb>) -> Self {
        let health = HealthState::from_deployment(&prepared.deployment);
        Self {
            prepared: RwLock::new(Arc::new(prepared)),
            health: RwLock::new(health),
            geo: RwLock::new(geo.map(Arc::new)),
            metrics: Metrics::new(),
            scopes: ScopeCache::default(),
        }
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
