//! What a configuration means for answering, worked out once per (re)load.

use config::Deployment;
use hickory_proto::serialize::binary::BinEncodable;

use crate::cookie::Jar;
use crate::steering::Steering;
use crate::zone::{ZoneError, Zones};

/// Why a configuration cannot be put to use.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("dns.cookies: {0}")]
    CookieSecret(#[from] config::types::SecretError),
    #[error("dns.cookies: the secret is {0} characters long: expected at least 16")]
    ShortSecret(usize),
}

/// The parts derived from the deployment file.
#[derive(Debug)]
pub struct Prepared {
    pub deployment: Deployment,
    pub zones: Zones,
    pub steering: Steering,
    /// Service hostnames in lower-case wire format, for the UDP fast path.
    pub service_wire: foldhash::HashMap<Vec<u8>, usize>,
    /// DNS cookies' keys: from the deployment's shared secret, else this process's own.
    pub cookies: Jar,
    /// Services with content steering, by the path of their steering URL.
    pub steering_paths: std::collections::HashMap<String, usize>,
}

impl Prepared {
    pub fn new(deployment: Deployment) -> Result<Self, PrepareError> {
        let zones = Zones::build(&deployment)?;
        let cookies = match deployment.dns.as_ref().and_then(|d| d.cookies.as_ref()) {
            Some(c) => {
                let secret = c.secret.resolve()?;
                if secret.chars().count() < 16 {
                    return Err(PrepareError::ShortSecret(secret.chars().count()));
                }
                let previous = c
                    .previous_secret
                    .as_ref()
                    .map(|p| p.resolve())
                    .transpose()?;
                Jar::new(&secret, previous.as_deref(), c.rotate.get())
            }
            None => Jar::random(),
        };
        let steering = Steering::new(&deployment);
        let service_wire = zones
            .services
            .iter()
            .filter_map(|(name, service)| name.to_bytes().ok().map(|wire| (wire, *service)))
            .collect();
        let steering_paths = crate::content_steering::paths(&deployment);
        Ok(Self {
            steering_paths,
            deployment,
            zones,
            steering,
            service_wire,
            cookies,
        })
    }
}
