//! What a configuration means for answering, worked out once per (re)load.

use config::Deployment;
use hickory_proto::serialize::binary::BinEncodable;

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
