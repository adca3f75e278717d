//! Authoritative data: the zones of the deployment file (SOA, NS, static records) and RFC 1035
//! zone files, plus which names are service hostnames answered by steering.
//!
//! Static records from the deployment file are turned into zone-file text and parsed by
//! hickory's zone parser, so both sources share one parser and one set of rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use config::Deployment;
use config::dns::Zone;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// Why the zones could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("zone {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("zone {origin}: cannot read zone file {path}: {cause}")]
    File {
        origin: String,
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// One zone, names lower-cased.
#[derive(Debug)]
pub struct ZoneData {
    pub origin: Name,
    pub soa: Record,
    rrsets: HashMap<Name, BTreeMap<RecordType, Vec<Record>>>,
    /// Every name that exists, including empty non-terminals (for NODATA vs NXDOMAIN).
    names: HashSet<Name>,
}

/// The answer to a static lookup.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    /// Records for the name (a CNAME when the name is an alias).
    Answer(Vec<&'a Record>),
    /// The name exists without records of the type.
    NoData,
    NxDomain,
}

/// Every zone geodns is authoritative for.
#[derive(Debug)]
pub struct Zones {
    zones: Vec<ZoneData>,
    /// Service hostnames (lower-cased) and the index of their service.
    pub services: HashMap<Name, usize>,
    /// Hosts of content steering pathways inside a zone (lower-cased): the service and the
    /// site whose nodes they name.
    pub pathways: HashMap<Name, Pathway>,
}

/// A content steering pathway's host name: one site's nodes for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pathway {
    pub service: usize,
    pub site: usize,
}

fn name(text: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(text).map_err(|e| format!("invalid name {text:?}: {e}"))?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

/// Quotes TXT data unless the operator already wrote zone-file strings.
fn zone_data(rtype: config::RecordType, data: &str) -> String {
    match rtype {
        config::RecordType::Txt if !data.trim_start().starts_with('"') => {
            format!("\"{}\"", data.replace('"', "\\\""))
        }
        _ => data.to_owned(),
    }
}

fn type_name(t: config::RecordType) -> &'static str {
    use config::RecordType as T;
    match t {
        T::A => "A",
        T::Aaaa => "AAAA",
        T::Cname => "CNAME",
        T::Txt => "TXT",
        T::Mx => "MX",
        T::Caa => "CAA",
        T::Ns => "NS",
    }
}

/// Zone-file text for a zone defined in the deployment file.
fn zone_text(zone: &Zone) -> String {
    let origin = zone.origin.trim_end_matches('.');
    let mut text = format!("$ORIGIN {origin}.\n");
    if let Some(soa) = &zone.soa {
        let fq = |n: &str| {
            if n.ends_with('.') {
                n.to_owned()
            } else {
                format!("{n}.")
            }
        };
        text.push_str(&format!(
            "@ {} IN SOA {} {} {} {} {} {} {}\n",
            soa.minimum.max(300),
            fq(&soa.mname),
            fq(&soa.rname),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ));
    }
    for ns in &zone.ns {
        let ns = if ns.ends_with('.') {
            ns.clone()
        } else {
            format!("{ns}.")
        };
        text.push_str(&format!("@ 3600 IN NS {ns}\n"));
    }
    for r in &zone.records {
        text.push_str(&format!(
            "{} {} IN {} {}\n",
            r.name,
            r.ttl,
            type_name(r.rtype),
            zone_data(r.rtype, &r.data)
        ));
    }
    text
}

impl ZoneData {
    /// A zone from its zone-file text (empty without a file) and the records the deployment
    /// file gives it; the reason when it is not a valid zone.
    pub(crate) fn parse(zone: &Zone, mut text: String) -> Result<Self, String> {
        let origin = name(&zone.origin)?;
        text.push('\n');
        text.push_str(&zone_text(zone));
        let (_, records) = Parser::new(text, zone.file.clone(), Some(origin.clone()))
            .parse()
            .map_err(|e| format!("zone data does not parse: {e}"))?;
        let mut rrsets: HashMap<Name, BTreeMap<RecordType, Vec<Record>>> = HashMap::new();
        let mut soa = None;
        for set in records.values() {
            for record in set.records_without_rrsigs() {
                let owner = record.name.to_lowercase();
                if !origin.zone_of(&owner) {
                    return Err(format!("record {owner} is outside the zone"));
                }
                if record.record_type() == RecordType::SOA && owner == origin {
                    soa = Some(record.clone());
                }
                rrsets
                    .entry(owner)
                    .or_default()
                    .entry(record.record_type())
                    .or_default()
                    .push(record.clone());
            }
        }
        let soa = soa.ok_or_else(|| "no SOA record at the zone apex".to_owned())?;
        Ok(Self {
            origin,
            soa,
            names: HashSet::new(),
            rrsets,
        })
    }
}

impl Zones {
    pub fn build(d: &Deployment) -> Result<Self, ZoneError> {
        let mut zones = Vec::new();
        for zone in d.dns.iter().flat_map(|dns| dns.zones.iter()) {
            let invalid = |message: String| ZoneError::Invalid {
                origin: zone.origin.clone(),
                message,
            };
            let text = match &zone.file {
                Some(path) => std::fs::read_to_string(path).map_err(|cause| ZoneError::File {
                    origin: zone.origin.clone(),
                    path: path.clone(),
                    cause,
                })?,
                None => String::new(),
            };
            zones.push(ZoneData::parse(zone, text).map_err(invalid)?);
        }
        let mut services = HashMap::new();
        for (i, svc) in d.services.iter().enumerate() {
            for host in &svc.hostnames {
                if let Ok(n) = name(host) {
                    services.insert(n, i);
                }
            }
        }
        let mut pathways = HashMap::new();
        for (service, svc) in d.services.iter().enumerate() {
            let Some(steering) = &svc.content_steering else {
                continue;
            };
            for (site, s) in d.sites.iter().enumerate() {
                let carries = s.nodes.iter().any(|n| n.services.contains(&svc.name));
                let host = steering.pathway_host(&s.name).and_then(|h| name(&h).ok());
                if let Some(host) = host.filter(|_| carries) {
                    pathways.insert(host, Pathway { service, site });
                }
            }
        }
        // Record every existing name and its ancestors inside the zone (empty non-terminals).
        for zone in &mut zones {
            let owners: Vec<Name> = zone
                .rrsets
                .keys()
                .cloned()
                .chain(services.keys().filter(|s| zone.origin.zone_of(s)).cloned())
                .chain(pathways.keys().filter(|s| zone.origin.zone_of(s)).cloned())
                .collect();
            for owner in owners {
                let mut n = owner;
                loop {
                    zone.names.insert(n.clone());
                    if n == zone.origin || n.is_root() {
                        break;
                    }
                    n = n.base_name();
                }
            }
        }
        // Most specific zone first, so a delegated child zone wins over its parent.
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin.num_labels()));
        Ok(Self {
            zones,
            services,
            pathways,
        })
    }

    /// The zone `qname` (lower-cased) belongs to, if any.
    pub fn zone_for(&self, qname: &Name) -> Option<&ZoneData> {
        self.zones.iter().find(|z| z.origin.zone_of(qname))
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

impl ZoneData {
    /// Static lookup of `qname` (lower-cased) for `qtype`. ANY gets one RRset (RFC 8482).
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup<'_> {
        let Some(sets) = self.rrsets.get(qname) else {
            return if self.names.contains(qname) {
                Lookup::NoData
            } else {
                Lookup::NxDomain
            };
        };
        if qtype == RecordType::ANY {
            // RFC 8482 section 4.2: answer with one RRset rather than everything.
            return sets
                .values()
                .next()
                .map_or(Lookup::NoData, |r| Lookup::Answer(r.iter().collect()));
        }
        if let Some(records) = sets.get(&qtype) {
            return Lookup::Answer(records.iter().collect());
        }
        if let Some(cname) = sets.get(&RecordType::CNAME) {
            let mut answer: Vec<&Record> = cname.iter().collect();
            // Follow the alias inside the zone, so resolvers get the whole chain at once.
            if let Some(RData::CNAME(target)) = cname.first().map(|r| &r.data) {
                let target = target.0.to_lowercase();
                if let Some(records) = self.rrsets.get(&target).and_then(|s| s.get(&qtype)) {
                    answer.extend(records.iter());
                }
            }
            return Lookup::Answer(answer);
        }
        Lookup::NoData
    }

    /// The SOA for a negative answer, its TTL capped by the SOA minimum (RFC 2308 section 5).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(s) = &soa.data {
            soa.ttl = soa.ttl.min(s.minimum);
        }
        soa
    }
}
