//! Where a client is: a MaxMind DB (GeoIP2/GeoLite2 City or Country, or compatible) looked up
//! by address, and great-circle distances to sites.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use config::types::{Continent, CountryCode};
use ipnet::IpNet;
use maxminddb::geoip2;

/// What the database says about a client address.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The database network containing the address: every address in it gets the same
    /// answer from the database, so its prefix is the finest granularity a decision needs.
    pub network: IpNet,
    pub country: Option<CountryCode>,
    pub continent: Option<Continent>,
    /// Latitude and longitude in degrees.
    pub coordinates: Option<(f64, f64)>,
}

/// Why a location database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot read location database {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: maxminddb::MaxMindDbError,
    },
}

/// An opened MaxMind DB.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
    pub path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|cause| GeoError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok(Self {
            reader,
            path: path.to_path_buf(),
        })
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoError> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|cause| GeoError::Open {
            path: PathBuf::from("<memory>"),
            cause,
        })?;
        Ok(Self {
            reader,
            path: PathBuf::from("<memory>"),
        })
    }

    /// The underlying reader (for walking networks).
    pub fn reader(&self) -> &maxminddb::Reader<Vec<u8>> {
        &self.reader
    }

    /// Looks `ip` up; `None` when the database knows nothing about it (or cannot hold it).
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        let (network, found) = self.lookup(ip)?;
        self.locate_result(&found, network)
    }

    /// The database network holding `ip` and the undecoded record: a caller that remembers
    /// locations per network decodes only on a miss.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNet, maxminddb::LookupResult<'_, Vec<u8>>)> {
        let found = self.reader.lookup(ip.to_canonical()).ok()?;
        let net = found.network().ok()?;
        let network = IpNet::new(net.network(), net.prefix()).ok()?;
        Some((network, found))
    }

    /// The location of a lookup or walk result whose network is `network`.
    pub fn locate_result(
        &self,
        found: &maxminddb::LookupResult<'_, Vec<u8>>,
        network: IpNet,
    ) -> Option<Location> {
        // City databases have location and country; Country databases only the latter. Both
        // decode as `Record`, whose missing fields are simply empty. An address in a block
        // without data still has a location: "unknown, for this whole block", which is what the
        // ECS scope of its answer must say (scope 0 would claim the answer holds everywhere).
        let record = found
            .decode::<Record<'_>>()
            .ok()
            .flatten()
            .unwrap_or_default();
        Some(Location {
            network,
            country: record.country.and_then(|c| c.iso_code?.parse().ok()),
            continent: record.continent.and_then(|c| continent(c.code?)),
            coordinates: record.location.and_then(|l| l.latitude.zip(l.longitude)),
        })
    }
}

/// The fields steering reads from a GeoIP2 City or Country record. Decoding a whole
/// `geoip2::City` allocates its name maps and subdivisions, which steering never reads: this
/// shape skips them (compiling a full-size database decodes every distinct record once).
#[derive(Debug, Default, serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Code<'a>>,
    #[serde(borrow, default)]
    continent: Option<Code<'a>>,
    #[serde(default)]
    location: Option<Coordinates>,
}

/// `country.iso_code` or `continent.code`.
#[derive(Debug, Default, serde::Deserialize)]
struct Code<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Coordinates {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

fn continent(code: &str) -> Option<Continent> {
    Some(match code {
        "AF" => Continent::AF,
        "AN" => Continent::AN,
        "AS" => Continent::AS,
        "EU" => Continent::EU,
        "NA" => Continent::NA,
        "OC" => Continent::OC,
        "SA" => Continent::SA,
        _ => return None,
    })
}

/// One network of a synthetic location database.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    pub network: IpNet,
    pub country: &'a str,
    pub continent: &'a str,
    pub latitude: f64,
    pub longitude: f64,
}

/// Builds a GeoIP2-City compatible database (for the lab and tests, which must not depend on
/// a commercial database): each network gets the country, continent and coordinates given.
pub fn synthetic_db(places: &[Place<'_>]) -> Result<Vec<u8>, mmdb_writer::Error> {
    let mut writer = mmdb_writer::Writer::new("GeoIP2-City");
    for p in places {
        let mut city = geoip2::City::default();
        city.country.iso_code = Some(p.country);
        city.continent.code = Some(p.continent);
        city.location.latitude = Some(p.latitude);
        city.location.longitude = Some(p.longitude);
        writer.insert(p.network, &city)?;
    }
    writer.to_bytes()
}

/// Great-circle distance in kilometres (haversine on a spherical Earth, as gdnsd does).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_databases_are_read_back_with_their_networks() {
        let places = [
            Place {
                network: "198.51.100.0/24".parse().unwrap(),
                country: "NL",
                continent: "EU",
                latitude: 52.37,
                longitude: 4.9,
            },
            Place {
                network: "2001:db8:1::/48".parse().unwrap(),
                country: "DE",
                continent: "EU",
                latitude: 50.11,
                longitude: 8.68,
            },
        ];
        let db = GeoDb::from_bytes(synthetic_db(&places).unwrap()).unwrap();
        let l = db.locate("198.51.100.77".parse().unwrap()).unwrap();
        assert_eq!(l.network.to_string(), "198.51.100.0/24");
        assert_eq!(l.country.map(|c| c.to_string()).as_deref(), Some("NL"));
        assert_eq!(l.continent, Some(Continent::EU));
        assert_eq!(l.coordinates, Some((52.37, 4.9)));
        let l = db.locate("2001:db8:1::5".parse().unwrap()).unwrap();
        assert_eq!(l.network.prefix_len(), 48);
        let unknown = db.locate("203.0.113.1".parse().unwrap()).unwrap();
        assert_eq!(
            (unknown.country, unknown.coordinates),
            (None, None),
            "a block without data"
        );
        assert!(
            unknown
                .network
                .contains(&"203.0.113.1".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn distances_match_known_city_pairs() {
        let amsterdam = (52.37, 4.90);
        let london = (51.51, -0.13);
        let d = distance_km(amsterdam, london);
        assert!((d - 357.0).abs() < 5.0, "{d}");
        assert_eq!(distance_km(amsterdam, amsterdam), 0.0);
    }
}
