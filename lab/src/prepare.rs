//! Files a topology needs that are generated rather than committed: the location database
//! geodns reads, built from the viewer nodes' labels so that each viewer's network is placed
//! in its city.
//!
//! A viewer node says where it is with labels: `lab.network` (its network, as the location
//! database should know it), `lab.country`, `lab.latitude`, `lab.longitude` and optionally
//! `lab.continent` (`EU` when absent).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use geodns::geo::{Place, synthetic_db};

use crate::topology::Topology;

/// The location database's file name in the lab directory.
pub const GEO_DB: &str = "geo.mmdb";

/// Writes the generated files into `dir`; returns the paths written.
pub fn write(topology: &Topology, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let places = places(topology)?;
    let db = synthetic_db(
        &places
            .iter()
            .map(|p| Place {
                network: p.network,
                country: &p.country,
                continent: &p.continent,
                latitude: p.latitude,
                longitude: p.longitude,
            })
            .collect::<Vec<_>>(),
    )
    .context("cannot build the location database")?;
    let path = dir.join(GEO_DB);
    std::fs::write(&path, db).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(vec![path])
}

/// Where a viewer node is.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerPlace {
    pub node: String,
    pub city: String,
    pub network: ipnet::IpNet,
    pub country: String,
    pub continent: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// The places of the topology's viewer nodes (`lab.role: viewer`).
pub fn places(topology: &Topology) -> Result<Vec<ViewerPlace>> {
    topology
        .nodes_labelled("lab.role", "viewer")
        .map(|node| {
            let label = |key: &str| {
                node.label(key).ok_or_else(|| {
                    anyhow!(
                        "{}: topology.nodes.{}.labels: expected `{key}` on a viewer node",
                        topology.path.display(),
                        node.name
                    )
                })
            };
            let number = |key: &str| -> Result<f64> {
                let text = label(key)?;
                text.parse().map_err(|_| {
                    anyhow!(
                        "{}: topology.nodes.{}.labels.{key}: expected a number, found {text:?}",
                        topology.path.display(),
                        node.name
                    )
                })
            };
            let network = label("lab.network")?;
            Ok(ViewerPlace {
                node: node.name.clone(),
                city: node.label("lab.city").unwrap_or(&node.name).to_string(),
                network: network.parse().map_err(|_| {
                    anyhow!(
                        "{}: topology.nodes.{}.labels.lab.network: expected a network, found {network:?}",
                        topology.path.display(),
                        node.name
                    )
                })?,
                country: label("lab.country")?.to_string(),
                continent: node.label("lab.continent").unwrap_or("EU").to_string(),
                latitude: number("lab.latitude")?,
                longitude: number("lab.longitude")?,
            })
        })
        .collect()
}
