//! The atlas: the location database and the steering rules compiled, once per change of
//! either, into the one thing a query needs from them: for any client address, the order in
//! which sites are ranked, and the widest block around the address ranked the same (the ECS
//! scope of the answer).
//!
//! Why: ranking on demand (decode the client's record, compute great-circle distances, search
//! the neighbourhood for the scope) cost 7-10 µs per distinct client network, so a per-worker
//! memo was needed, and on a real-size database with clients all over the world the memo
//! missed, grew with every new network and still lost to gdnsd, which does this work at load
//! time. Here every database network is ranked once, while compiling:
//!
//! - the database is walked in address order (gaps included); each distinct record is decoded
//!   once (records are shared by many networks);
//! - network overrides split the networks they cut across; every piece is ranked by
//!   [`Steering::rank`] itself, so the atlas cannot disagree with the rules;
//! - equal orders are one class; neighbouring pieces of one class are one run. A table of runs
//!   by start address, indexed by the first 16 bits, answers a lookup with one index read and
//!   a binary search over the runs of that /16 (or IPv6 /16);
//! - the scope is the shortest prefix whose block around the address lies inside its run: the
//!   widest block with the same answer, which is what gdnsd's merged tree gives.
//!
//! Memory is one `u32`/`u128` start and one `u32` tag per run, whatever the traffic. The atlas
//! is read-only and shared by every worker; a new one is compiled off the serving threads and
//! swapped in whole (see `state`).
//!
//! IPv6 addresses that embed an IPv4 address where the database aliases them to its IPv4 data
//! (`::/96`, IPv4-mapped, Teredo, 6to4) are steered as that IPv4 address, as a database lookup
//! does; network overrides apply to them through the IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use maxminddb::WithinOptions;
use serde::Serialize;

use crate::geo::{GeoDb, Location};
use crate::steering::Steering;

/// Why a database could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum AtlasError {
    #[error("location database {path}: walking its networks failed at {at}: {cause}")]
    Walk {
        path: String,
        at: String,
        cause: maxminddb::MaxMindDbError,
    },
    #[error("location database {path}: more than {max} distinct site orders", max = Tag::ALIAS)]
    TooManyClasses { path: String },
}

/// How steering ranks a client, from the atlas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed<'a> {
    /// Site indices, best first.
    pub order: &'a [usize],
    /// The prefix length of the widest block around the client ranked the same.
    pub scope: u8,
}

/// What compiling cost and produced, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Networks the database yielded (with and without data).
    pub networks: usize,
    /// Distinct records decoded.
    pub records: usize,
    /// Runs of one class, per family.
    pub runs_v4: usize,
    pub runs_v6: usize,
    /// Distinct site orders.
    pub classes: usize,
    /// Heap bytes held by the atlas.
    pub bytes: usize,
    pub took: Duration,
}

/// The clients one site order ranks, as operators see them (the console): how many located
/// IPv4 addresses, and the countries most of them are in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Region {
    /// Site indices, best first.
    pub order: Vec<usize>,
    /// Located IPv4 addresses ranked this way (addresses the database does not place are not
    /// counted: they would swamp every other figure).
    pub ipv4_addresses: u64,
    /// The countries holding most of them, most first, with their address counts.
    pub countries: Vec<(String, u64)>,
}

/// How many countries a region names.
const REGION_COUNTRIES: usize = 5;

/// The compiled atlas.
#[derive(Debug)]
pub struct Atlas {
    v4: Table<u32>,
    v6: Table<u128>,
    classes: Vec<Vec<usize>>,
    /// One per class, the largest first.
    pub regions: Vec<Region>,
    pub stats: Stats,
}

impl Atlas {
    /// Compiles `geo` (none: every client unlocated) under the rules of `steering`.
    pub fn compile(steering: &Steering, geo: Option<&GeoDb>) -> Result<Self, AtlasError> {
        let started = Instant::now();
        let mut compiler = Compiler {
            steering,
            geo,
            records: HashMap::new(),
            places: Vec::new(),
            classes: HashMap::new(),
            orders: Vec::new(),
            by_place: Vec::new(),
            networks: 0,
            countries: Vec::new(),
        };
        let v4 = compiler.family::<u32>()?;
        let v6 = compiler.family::<u128>()?;
        let regions = compiler.regions();
        let mut atlas = Self {
            v4,
            v6,
            regions,
            classes: compiler.orders,
            stats: Stats {
                networks: compiler.networks,
                records: compiler.places.len(),
                ..Stats::default()
            },
        };
        atlas.stats.runs_v4 = atlas.v4.starts.len();
        atlas.stats.runs_v6 = atlas.v6.starts.len();
        atlas.stats.classes = atlas.classes.len();
        atlas.stats.bytes = atlas.v4.bytes()
            + atlas.v6.bytes()
            + atlas
                .classes
                .iter()
                .map(|c| c.capacity() * size_of::<usize>() + size_of::<Vec<usize>>())
                .sum::<usize>();
        atlas.stats.took = started.elapsed();
        Ok(atlas)
    }

    /// How `client` is ranked. IPv4-mapped addresses are looked up as IPv4.
    pub fn place(&self, client: IpAddr) -> Placed<'_> {
        let (tag, scope) = match client.to_canonical() {
            IpAddr::V4(a) => self.v4.find(a.to_bits()),
            IpAddr::V6(a) => {
                let bits = a.to_bits();
                match self.v6.find(bits) {
                    (Tag(t), scope) if t >= Tag::ALIAS => {
                        let at = t - Tag::ALIAS;
                        let v4 = (bits >> (128 - at - 32)) as u32;
                        let (tag, v4_scope) = self.v4.find(v4);
                        // The scope is the alias's prefix plus the IPv4 block's, but never
                        // wider than the alias itself.
                        (tag, (at as u8 + v4_scope).max(scope))
                    }
                    found => found,
                }
            }
        };
        Placed {
            order: self.classes.get(tag.0 as usize).map_or(&[], Vec::as_slice),
            scope,
        }
    }
}

/// A run's class, or (from [`Tag::ALIAS`] up) an IPv6 block aliased to the IPv4 data, whose
/// embedded IPv4 address starts after `tag - ALIAS` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tag(u32);

impl Tag {
    const ALIAS: u32 = u32::MAX - 128;
}

/// An address family's addresses as integers.
trait Bits: Copy + Ord + Eq + std::fmt::Debug {
    const WIDTH: u32;
    const MAX: Self;
    const ZERO: Self;
    fn top16(self) -> usize;
    fn from_top16(h: usize) -> Self;
    /// The block of `prefix` bits containing `self`: first and last address.
    fn block(self, prefix: u32) -> (Self, Self);
    /// The most host bits a block inside `start..=end` can have: log2 of its size, rounded down.
    fn span_bits(start: Self, end: Self) -> u32;
    fn next(self) -> Option<Self>;
    fn wide(self) -> u128;
    /// `self - 1`, for an address that is not the first.
    fn before(self) -> Self;
    fn net(self, prefix: u32) -> IpNet;
    fn ip(self) -> IpAddr;
    fn of(net: &IpNet) -> Option<(Self, Self)>;
}

macro_rules! bits {
    ($t:ty, $ip:ty, $net:ty) => {
        impl Bits for $t {
            const WIDTH: u32 = <$t>::BITS;
            const MAX: Self = <$t>::MAX;
            const ZERO: Self = 0;
            fn top16(self) -> usize {
                (self >> (Self::WIDTH - 16)) as usize
            }
            fn from_top16(h: usize) -> Self {
                (h as Self) << (Self::WIDTH - 16)
            }
            fn block(self, prefix: u32) -> (Self, Self) {
                let host = Self::MAX.checked_shr(prefix).unwrap_or(0);
                (self & !host, self | host)
            }
            fn span_bits(start: Self, end: Self) -> u32 {
                match (end - start).checked_add(1) {
                    Some(size) => Self::WIDTH - 1 - size.leading_zeros(),
                    None => Self::WIDTH,
                }
            }
            fn next(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn wide(self) -> u128 {
                self as u128
            }
            fn before(self) -> Self {
                self.wrapping_sub(1)
            }
            fn net(self, prefix: u32) -> IpNet {
                <$net>::new(<$ip>::from_bits(self), prefix as u8)
                    .map(IpNet::from)
                    .unwrap_or_default()
            }
            fn ip(self) -> IpAddr {
                IpAddr::from(<$ip>::from_bits(self))
            }
            fn of(net: &IpNet) -> Option<(Self, Self)> {
                match net {
                    IpNet::V4(_) if Self::WIDTH != 32 => None,
                    IpNet::V6(_) if Self::WIDTH != 128 => None,
                    _ => {
                        let start = match net.network() {
                            IpAddr::V4(a) => a.to_bits() as u128,
                            IpAddr::V6(a) => a.to_bits(),
                        };
                        let start = start as Self;
                        Some(start.block(u32::from(net.prefix_len())))
                    }
                }
            }
        }
    };
}
bits!(u32, Ipv4Addr, Ipv4Net);
bits!(u128, Ipv6Addr, Ipv6Net);

/// Runs covering a whole address family, by start address.
#[derive(Debug)]
struct Table<A> {
    /// Sorted; the first is the family's first address.
    starts: Vec<A>,
    tags: Vec<Tag>,
    /// For each value of the first 16 bits, the run holding that /16's first address.
    /// One more entry than there are /16s, the last run, so `index[h + 1]` always exists.
    index: Vec<u32>,
}

impl<A: Bits> Table<A> {
    /// From runs in address order, the first starting at zero (neighbours of one tag merged).
    fn new(runs: Vec<(A, Tag)>) -> Self {
        let mut starts = Vec::with_capacity(runs.len());
        let mut tags: Vec<Tag> = Vec::with_capacity(runs.len());
        for (start, tag) in runs {
            if tags.last() != Some(&tag) {
                starts.push(start);
                tags.push(tag);
            }
        }
        starts.shrink_to_fit();
        tags.shrink_to_fit();
        debug_assert_eq!(starts.first(), Some(&A::ZERO));
        let mut index = Vec::with_capacity((1 << 16) + 1);
        let mut at = 0usize;
        for h in 0..1usize << 16 {
            let first = A::from_top16(h);
            while at + 1 < starts.len() && starts[at + 1] <= first {
                at += 1;
            }
            index.push(at as u32);
        }
        index.push(starts.len().saturating_sub(1) as u32);
        Self {
            starts,
            tags,
            index,
        }
    }

    /// The tag of the run holding `addr`, and the scope there.
    #[inline]
    fn find(&self, addr: A) -> (Tag, u8) {
        let h = addr.top16();
        let (lo, hi) = (self.index[h] as usize, self.index[h + 1] as usize);
        // The last run starting at or before `addr`: `lo`'s start is at or before the /16's
        // first address, so the partition point is at least 1.
        let run = lo + self.starts[lo..=hi].partition_point(|s| *s <= addr) - 1;
        let start = self.starts[run];
        let end = self
            .starts
            .get(run + 1)
            .map_or(A::MAX, |next| next.before());
        (self.tags[run], scope(addr, start, end))
    }

    fn bytes(&self) -> usize {
        self.starts.capacity() * size_of::<A>()
            + self.tags.capacity() * size_of::<Tag>()
            + self.index.capacity() * size_of::<u32>()
    }
}

/// The shortest prefix whose block around `addr` lies within `start..=end`.
#[inline]
fn scope<A: Bits>(addr: A, start: A, end: A) -> u8 {
    // A block of `p` bits is at most as large as the run: begin there.
    let mut p = A::WIDTH - A::span_bits(start, end);
    loop {
        let (first, last) = addr.block(p);
        if (first >= start && last <= end) || p >= A::WIDTH {
            return p as u8;
        }
        p += 1;
    }
}

/// State while compiling.
struct Compiler<'a> {
    steering: &'a Steering,
    geo: Option<&'a GeoDb>,
    /// Record offset to its index in `places`.
    records: HashMap<usize, u32>,
    places: Vec<Location>,
    classes: HashMap<Vec<usize>, u32>,
    orders: Vec<Vec<usize>>,
    /// The class of each place (by index; `u32::MAX` not yet known), for pieces no network
    /// override touches.
    by_place: Vec<u32>,
    networks: usize,
    /// Per class, located IPv4 addresses per country (`None`: a place without one).
    countries: Vec<HashMap<Option<config::types::CountryCode>, u64>>,
}

/// A stretch of addresses with one location, as walked from the database.
#[derive(Debug, Clone, Copy)]
enum Stretch {
    /// The place at this index (`None`: a network without data, or no database).
    Place(Option<u32>),
    /// Aliased to the IPv4 data, the IPv4 address starting after this many bits.
    Alias(u32),
}

/// Where a database aliases IPv6 blocks to its IPv4 data: `::/96` holds the IPv4 data itself,
/// the others point at it.
const ALIASES: [&str; 4] = ["::/96", "::ffff:0:0/96", "2001::/32", "2002::/16"];

impl Compiler<'_> {
    fn family<A: Bits>(&mut self) -> Result<Table<A>, AtlasError> {
        let stretches = self.walk::<A>()?;
        let cuts = self.cuts::<A>();
        let mut runs: Vec<(A, Tag)> = Vec::with_capacity(stretches.len());
        // The place of each run, for the regions' census.
        let mut run_places: Vec<Option<u32>> = Vec::with_capacity(stretches.len());
        let mut cut = 0;
        for (i, &(start, stretch)) in stretches.iter().enumerate() {
            let end = stretches.get(i + 1).map(|(next, _)| next.before());
            // The pieces of this stretch between override boundaries.
            while cut < cuts.len() && cuts[cut] <= start {
                cut += 1;
            }
            let mut piece = start;
            loop {
                let tag = self.tag(piece, stretch)?;
                runs.push((piece, tag));
                run_places.push(match stretch {
                    Stretch::Place(place) => place,
                    Stretch::Alias(_) => None,
                });
                match cuts.get(cut) {
                    Some(&next) if end.is_none_or(|end| next <= end) => {
                        piece = next;
                        cut += 1;
                    }
                    _ => break,
                }
            }
        }
        if A::WIDTH == 32 {
            self.census(&runs, &run_places);
        }
        Ok(Table::new(runs))
    }

    /// Counts the located addresses of each IPv4 run by class and country.
    fn census<A: Bits>(&mut self, runs: &[(A, Tag)], places: &[Option<u32>]) {
        for (i, (&(start, tag), place)) in runs.iter().zip(places).enumerate() {
            let Some(place) = place else { continue };
            if tag.0 >= Tag::ALIAS {
                continue;
            }
            let end = runs.get(i + 1).map_or(A::MAX.wide() + 1, |(s, _)| s.wide());
            let class = tag.0 as usize;
            if self.countries.len() <= class {
                self.countries.resize_with(class + 1, HashMap::new);
            }
            let country = self.places[*place as usize].country;
            *self.countries[class].entry(country).or_default() += (end - start.wide()) as u64;
        }
    }

    /// Every class as a region, the largest first.
    fn regions(&self) -> Vec<Region> {
        let mut regions: Vec<Region> = self
            .orders
            .iter()
            .enumerate()
            .map(|(class, order)| {
                let mut countries: Vec<(String, u64)> = self
                    .countries
                    .get(class)
                    .into_iter()
                    .flatten()
                    .map(|(c, n)| {
                        (
                            c.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
                            *n,
                        )
                    })
                    .collect();
                countries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let ipv4_addresses = countries.iter().map(|(_, n)| n).sum();
                countries.truncate(REGION_COUNTRIES);
                Region {
                    order: order.clone(),
                    ipv4_addresses,
                    countries,
                }
            })
            .collect();
        regions.sort_by_key(|r| std::cmp::Reverse(r.ipv4_addresses));
        regions
    }

    /// Every address where a network override starts or ends (one past its last address).
    fn cuts<A: Bits>(&self) -> Vec<A> {
        let mut cuts: Vec<A> = self
            .steering
            .override_networks()
            .filter_map(A::of)
            .flat_map(|(first, last)| [Some(first), last.next()])
            .flatten()
            .filter(|a| *a != A::ZERO)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    /// The tag of a piece of `stretch` starting at `first`: every address of the piece is in
    /// the same override networks, so ranking its first address ranks them all.
    fn tag<A: Bits>(&mut self, first: A, stretch: Stretch) -> Result<Tag, AtlasError> {
        let place = match stretch {
            Stretch::Alias(at) => return Ok(Tag(Tag::ALIAS + at)),
            Stretch::Place(place) => place,
        };
        let ip = first.ip();
        let overridden = self.steering.override_networks().any(|n| n.contains(&ip));
        // Slot 0 is "no location", then one per place.
        let slot = place.map_or(0, |p| p as usize + 1);
        if !overridden
            && let Some(&class) = self.by_place.get(slot)
            && class != u32::MAX
        {
            return Ok(Tag(class));
        }
        let location = place.map(|p| self.places[p as usize].clone());
        let order = self.steering.rank(ip, location.as_ref()).order;
        let class = match self.classes.get(&order) {
            Some(&class) => class,
            None => {
                let class = self.orders.len() as u32;
                if class >= Tag::ALIAS {
                    return Err(AtlasError::TooManyClasses { path: self.path() });
                }
                self.orders.push(order.clone());
                self.classes.insert(order, class);
                class
            }
        };
        if !overridden {
            if self.by_place.len() <= slot {
                self.by_place.resize(slot + 1, u32::MAX);
            }
            self.by_place[slot] = class;
        }
        Ok(Tag(class))
    }

    fn path(&self) -> String {
        self.geo
            .map_or_else(|| "(none)".to_owned(), |g| g.path.display().to_string())
    }

    /// The family's address space as stretches in order, the first at zero: the database's
    /// networks, the gaps it does not cover, and its IPv4 aliases.
    fn walk<A: Bits>(&mut self) -> Result<Vec<(A, Stretch)>, AtlasError> {
        let unknown = Stretch::Place(None);
        let Some(geo) = self.geo else {
            return Ok(vec![(A::ZERO, unknown)]);
        };
        let reader = geo.reader();
        let v6_db = reader.metadata().ip_version == 6;
        let whole = A::ZERO.net(0);
        let Ok(whole) = ipnetwork::IpNetwork::new(whole.addr(), 0) else {
            return Ok(vec![(A::ZERO, unknown)]);
        };
        let options = WithinOptions::default().include_networks_without_data();
        let items = match reader.within(whole, options) {
            Ok(items) => items,
            // An IPv4-only database and an IPv6 client: nothing is known.
            Err(_) if A::WIDTH == 128 && !v6_db => return Ok(vec![(A::ZERO, unknown)]),
            Err(cause) => {
                return Err(AtlasError::Walk {
                    path: self.path(),
                    at: whole.to_string(),
                    cause,
                });
            }
        };
        let aliases: Vec<(A, A, u32)> = if A::WIDTH == 128 && v6_db {
            ALIASES
                .iter()
                .filter_map(|a| a.parse::<IpNet>().ok())
                .filter_map(|n| A::of(&n).map(|(f, l)| (f, l, u32::from(n.prefix_len()))))
                .collect()
        } else {
            Vec::new()
        };
        let mut stretches: Vec<(A, Stretch)> = Vec::new();
        // The first address not yet covered, `None` past the end.
        let mut expected = Some(A::ZERO);
        for item in items {
            let found = item.map_err(|cause| AtlasError::Walk {
                path: self.path(),
                at: expected.map_or_else(String::new, |a| a.ip().to_string()),
                cause,
            })?;
            let Ok(net) = found.network() else { continue };
            let Ok(net) = IpNet::new(net.network(), net.prefix()) else {
                continue;
            };
            let Some((first, last)) = A::of(&net) else {
                continue;
            };
            // The IPv4 data itself (`::/96`, the first alias), walked again as IPv6: steered
            // through the IPv4 table. The other aliases the walk skips by itself.
            if aliases
                .first()
                .is_some_and(|(f, l, _)| first >= *f && last <= *l)
            {
                continue;
            }
            // A well-formed tree yields networks in address order without overlap; anything
            // else (a damaged file) is skipped, so the runs stay sorted and cover the space.
            if expected.is_none_or(|e| first < e) {
                continue;
            }
            self.networks += 1;
            if let Some(gap) = expected
                && gap < first
            {
                gaps(&mut stretches, gap, first.before(), &aliases);
            }
            let place = match found.offset() {
                None => None,
                Some(offset) => Some(match self.records.get(&offset) {
                    Some(&p) => p,
                    None => {
                        let p = self.places.len() as u32;
                        let location = geo.locate_result(&found, net).unwrap_or(Location {
                            network: net,
                            country: None,
                            continent: None,
                            coordinates: None,
                        });
                        self.places.push(location);
                        self.records.insert(offset, p);
                        p
                    }
                }),
            };
            stretches.push((first, Stretch::Place(place)));
            expected = last.next();
        }
        if let Some(gap) = expected {
            gaps(&mut stretches, gap, A::MAX, &aliases);
        }
        Ok(stretches)
    }
}

/// The stretches for `first..=last`, which the walk skipped: the aliases of the IPv4 data in
/// it, and unknown between them.
fn gaps<A: Bits>(stretches: &mut Vec<(A, Stretch)>, first: A, last: A, aliases: &[(A, A, u32)]) {
    let mut inside: Vec<&(A, A, u32)> = aliases
        .iter()
        .filter(|(f, l, _)| *f >= first && *l <= last)
        .collect();
    inside.sort_by_key(|(f, _, _)| *f);
    let mut at = Some(first);
    for (f, l, prefix) in inside {
        if let Some(from) = at
            && from < *f
        {
            stretches.push((from, Stretch::Place(None)));
        }
        stretches.push((*f, Stretch::Alias(*prefix)));
        at = l.next();
    }
    if let Some(from) = at
        && from <= last
    {
        stretches.push((from, Stretch::Place(None)));
    }
}

#[cfg(test)]
mod tests {
    //! The atlas against the rule it compiles: over generated databases and overrides, every
    //! client's order is `Steering::rank` of its own location, and its scope is the widest
    //! block around it in which every address ranks the same, found by brute force.

    use super::*;
    use crate::geo::{Place, synthetic_db};
    use config::Deployment;
    use testkit::fuzz::Rng;

    const EXAMPLE: &str = include_str!("../../config/examples/three-sites.toml");
    const SITES: [&str; 3] = ["ams", "fra", "lon"];
    /// (country, continent, latitude, longitude)
    const CITIES: [(&str, &str, f64, f64); 8] = [
        ("NL", "EU", 52.37, 4.90),
        ("DE", "EU", 50.11, 8.68),
        ("GB", "EU", 51.51, -0.13),
        ("FR", "EU", 48.86, 2.35),
        ("US", "NA", 40.71, -74.01),
        ("JP", "AS", 35.68, 139.69),
        ("BR", "SA", -23.55, -46.63),
        ("ES", "EU", 40.42, -3.70),
    ];
    /// First octets and IPv6 /16s the generated networks live in (public space).
    const V4_FIRST: [u8; 4] = [2, 81, 151, 185];
    const V6_FIRST: [u16; 3] = [0x2a00, 0x2a01, 0x2a02];

    fn deployment(overrides: &str) -> Deployment {
        Deployment::parse(
            &format!("{EXAMPLE}{overrides}"),
            std::path::Path::new("three-sites.toml"),
        )
        .unwrap()
    }

    fn v4_net(rng: &mut Rng, shortest: usize, longest: usize) -> IpNet {
        let prefix = (shortest + rng.below(longest - shortest + 1)) as u8;
        let first = u32::from(V4_FIRST[rng.below(V4_FIRST.len())]) << 24;
        let bits = first | (rng.next_u64() as u32 & 0x00FF_FFFF);
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from_bits(bits), prefix)
                .unwrap()
                .trunc(),
        )
    }

    fn v6_net(rng: &mut Rng, shortest: usize, longest: usize) -> IpNet {
        let prefix = (shortest + rng.below(longest - shortest + 1)) as u8;
        let first = u128::from(V6_FIRST[rng.below(V6_FIRST.len())]) << 112;
        let bits = first | (u128::from(rng.next_u64()) << 48 & !(0xFFFF << 112));
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from_bits(bits), prefix)
                .unwrap()
                .trunc(),
        )
    }

    /// A database of `count` networks per family (later ones may cut into earlier ones).
    fn database(rng: &mut Rng, count: usize) -> GeoDb {
        let mut places = Vec::new();
        for i in 0..count * 2 {
            let (country, continent, latitude, longitude) = CITIES[rng.below(CITIES.len())];
            let network = if i % 2 == 0 {
                v4_net(rng, 10, 28)
            } else {
                v6_net(rng, 24, 64)
            };
            places.push(Place {
                network,
                country,
                continent,
                latitude,
                longitude,
            });
        }
        GeoDb::from_bytes(synthetic_db(&places).unwrap()).unwrap()
    }

    /// Zero to three override rules naming networks, countries and continents.
    fn overrides(rng: &mut Rng) -> String {
        let mut text = String::new();
        for _ in 0..rng.below(4) {
            let mut networks = Vec::new();
            for _ in 0..rng.below(3) {
                networks.push(if rng.chance(2) {
                    v4_net(rng, 12, 30)
                } else {
                    v6_net(rng, 28, 72)
                });
            }
            let countries: Vec<&str> = (0..rng.below(2))
                .map(|_| CITIES[rng.below(CITIES.len())].0)
                .collect();
            let continents: Vec<&str> = (0..rng.below(2))
                .map(|_| CITIES[rng.below(CITIES.len())].1)
                .collect();
            if networks.is_empty() && countries.is_empty() && continents.is_empty() {
                networks.push(v4_net(rng, 12, 30));
            }
            let mut sites = SITES.to_vec();
            sites.rotate_left(rng.below(3));
            sites.truncate(1 + rng.below(3));
            let quoted = |v: Vec<String>| v.join(", ");
            text += &format!(
                "\n[[dns.overrides]]\nnetworks = [{}]\ncountries = [{}]\ncontinents = [{}]\nsites = [{}]\n",
                quoted(networks.iter().map(|n| format!("\"{n}\"")).collect()),
                quoted(countries.iter().map(|c| format!("\"{c}\"")).collect()),
                quoted(continents.iter().map(|c| format!("\"{c}\"")).collect()),
                quoted(sites.iter().map(|s| format!("\"{s}\"")).collect()),
            );
        }
        text
    }

    /// The IPv4 address an address in an alias block stands for.
    fn embedded(ip: IpAddr) -> IpAddr {
        let IpAddr::V6(v6) = ip.to_canonical() else {
            return ip;
        };
        let bits = v6.to_bits();
        for alias in ALIASES {
            let net: Ipv6Net = alias.parse().unwrap();
            if net.contains(&v6) {
                let at = u32::from(net.prefix_len());
                return IpAddr::V4(Ipv4Addr::from_bits((bits >> (128 - at - 32)) as u32));
            }
        }
        ip
    }

    /// The order the rule gives `ip`, straight from the database.
    fn reference_order(steering: &Steering, geo: &GeoDb, ip: IpAddr) -> Vec<usize> {
        let ip = embedded(ip);
        steering.rank(ip, geo.locate(ip).as_ref()).order
    }

    /// Addresses where the order can change inside `block`: its first, every database
    /// network's first, every override network's first and one past its last.
    fn boundaries(steering: &Steering, geo: &GeoDb, block: IpNet) -> Vec<IpAddr> {
        let mut points = vec![block.network()];
        let cidr = ipnetwork::IpNetwork::new(block.network(), block.prefix_len()).unwrap();
        let options = WithinOptions::default().include_networks_without_data();
        for item in geo.reader().within(cidr, options).unwrap() {
            let net = item.unwrap().network().unwrap();
            points.push(net.network());
        }
        for o in steering.override_networks() {
            points.push(o.network());
            let after = match o.broadcast() {
                IpAddr::V4(a) => a
                    .to_bits()
                    .checked_add(1)
                    .map(|b| IpAddr::from(Ipv4Addr::from_bits(b))),
                IpAddr::V6(a) => a
                    .to_bits()
                    .checked_add(1)
                    .map(|b| IpAddr::from(Ipv6Addr::from_bits(b))),
            };
            points.extend(after);
        }
        points.retain(|p| block.contains(p));
        points
    }

    /// The widest block around `ip` (outside the alias blocks) in which every address ranks
    /// as `ip` does, by bisection over prefix lengths (a block inside a uniform one is uniform).
    fn reference_scope(steering: &Steering, geo: &GeoDb, ip: IpAddr) -> u8 {
        let order = reference_order(steering, geo, ip);
        let uniform = |p: u8| {
            let block = IpNet::new(ip, p).unwrap().trunc();
            boundaries(steering, geo, block)
                .into_iter()
                .all(|point| reference_order(steering, geo, point) == order)
        };
        let (mut wide, mut narrow) = (0u8, if ip.is_ipv4() { 32 } else { 128 });
        if uniform(wide) {
            return 0;
        }
        // `wide` is not uniform, `narrow` (the address alone) is.
        while narrow - wide > 1 {
            let mid = wide + (narrow - wide) / 2;
            if uniform(mid) {
                narrow = mid;
            } else {
                wide = mid;
            }
        }
        narrow
    }

    fn client(rng: &mut Rng, v4: bool) -> IpAddr {
        if v4 {
            let net = v4_net(rng, 8, 8);
            let IpAddr::V4(base) = net.network() else {
                unreachable!()
            };
            if rng.chance(8) {
                return IpAddr::V4(Ipv4Addr::from_bits(rng.next_u64() as u32));
            }
            IpAddr::V4(Ipv4Addr::from_bits(
                base.to_bits() | (rng.next_u64() as u32 & 0x00FF_FFFF),
            ))
        } else {
            let net = v6_net(rng, 16, 16);
            let IpAddr::V6(base) = net.network() else {
                unreachable!()
            };
            let low = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            IpAddr::V6(Ipv6Addr::from_bits(base.to_bits() | (low >> 16)))
        }
    }

    #[test]
    fn the_atlas_ranks_every_client_as_the_rule_does_over_generated_databases() {
        let mut rng = Rng::new(0x5EED_A71A5);
        for round in 0..12 {
            let d = deployment(&overrides(&mut rng));
            let steering = Steering::new(&d);
            let geo = database(&mut rng, 60);
            let atlas = Atlas::compile(&steering, Some(&geo)).unwrap();
            for i in 0..120 {
                let ip = client(&mut rng, i % 2 == 0);
                let placed = atlas.place(ip);
                let context =
                    || format!("round {round}, client {ip}, overrides:{}", overrides_of(&d));
                assert_eq!(
                    placed.order,
                    reference_order(&steering, &geo, ip),
                    "{}",
                    context()
                );
                // The scope is checked on a share of the clients: the brute force is slow.
                if i % 4 < 2 {
                    assert_eq!(
                        placed.scope,
                        reference_scope(&steering, &geo, ip),
                        "{}",
                        context()
                    );
                }
            }
        }
    }

    fn overrides_of(d: &Deployment) -> String {
        format!("{:?}", d.dns.as_ref().map(|dns| &dns.overrides))
    }

    #[test]
    fn ipv6_addresses_embedding_ipv4_are_steered_as_that_address() {
        let mut rng = Rng::new(7);
        let d = deployment(
            "\n[[dns.overrides]]\nnetworks = [\"198.51.100.128/25\"]\nsites = [\"fra\"]\n",
        );
        let steering = Steering::new(&d);
        let mut places = vec![Place {
            network: "198.51.100.0/24".parse().unwrap(),
            country: "GB",
            continent: "EU",
            latitude: 51.51,
            longitude: -0.13,
        }];
        places.extend((0..40).map(|_| Place {
            network: v4_net(&mut rng, 12, 24),
            country: "JP",
            continent: "AS",
            latitude: 35.68,
            longitude: 139.69,
        }));
        let geo = GeoDb::from_bytes(synthetic_db(&places).unwrap()).unwrap();
        let atlas = Atlas::compile(&steering, Some(&geo)).unwrap();
        let name = |order: &[usize]| d.sites[order[0]].name.clone();
        for (v6, v4) in [
            ("::ffff:198.51.100.1", "198.51.100.1"),
            ("2002:c633:6401::1", "198.51.100.1"),
            ("2002:c633:64c8::1", "198.51.100.200"),
            ("::198.51.100.200", "198.51.100.200"),
        ] {
            let (v6, v4): (IpAddr, IpAddr) = (v6.parse().unwrap(), v4.parse().unwrap());
            assert_eq!(atlas.place(v6).order, atlas.place(v4).order, "{v6}");
            assert_eq!(
                geo.locate(v6).map(|l| l.coordinates),
                geo.locate(v4).map(|l| l.coordinates),
                "the database aliases {v6} to {v4}"
            );
        }
        assert_eq!(
            name(atlas.place("198.51.100.1".parse().unwrap()).order),
            "lon"
        );
        assert_eq!(
            name(atlas.place("2002:c633:64c8::1".parse().unwrap()).order),
            "fra"
        );
        // 6to4: the IPv4 block's scope (/25, cut by the override) after the alias's /16.
        assert_eq!(
            atlas.place("2002:c633:64c8::1".parse().unwrap()).scope,
            16 + 25
        );
    }

    #[test]
    fn without_a_database_every_client_gets_the_default_order_for_all_addresses() {
        let d = deployment("\n[[dns.overrides]]\nnetworks = [\"2a00::/12\"]\nsites = [\"lon\"]\n");
        let steering = Steering::new(&d);
        let atlas = Atlas::compile(&steering, None).unwrap();
        let v4 = atlas.place("192.0.2.1".parse().unwrap());
        assert_eq!(v4.scope, 0);
        assert_eq!(
            v4.order,
            steering.rank("192.0.2.1".parse().unwrap(), None).order
        );
        let inside = atlas.place("2a01::1".parse().unwrap());
        assert_eq!(
            (d.sites[inside.order[0]].name.as_str(), inside.scope),
            ("lon", 12)
        );
        // Beside the override: the widest block that does not reach into it.
        assert_eq!(atlas.place("2b00::1".parse().unwrap()).scope, 8);
        assert_eq!(atlas.stats.classes, 2);
    }

    #[test]
    fn scopes_are_the_widest_aligned_block_inside_the_run() {
        // 10.0.0.0 ..= 10.0.2.255: /23 for the first two /24s, /24 for the third.
        let (start, end) = (0x0A00_0000u32, 0x0A00_02FF);
        assert_eq!(scope(0x0A00_0001, start, end), 23);
        assert_eq!(scope(0x0A00_01FF, start, end), 23);
        assert_eq!(scope(0x0A00_0280, start, end), 24);
        assert_eq!(scope(5u32, 0, u32::MAX), 0);
        assert_eq!(scope(5u32, 5, 5), 32);
        assert_eq!(scope(u128::MAX, 0, u128::MAX), 0);
    }
}
