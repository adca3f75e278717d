//! `lab demo`: the whole system on one machine, without root, from an embedded deployment.

use config::Deployment;

/// The deployment the demo runs: three sites on loopback addresses.
pub const EMBEDDED_DEPLOYMENT: &str = include_str!("../../config/examples/three-sites.toml");

/// Parses the embedded deployment (a broken one is a build defect, caught by the tests).
pub fn embedded() -> Result<Deployment, config::Diagnostics> {
    Deployment::parse(
        EMBEDDED_DEPLOYMENT,
        std::path::Path::new("<embedded three-sites.toml>"),
    )
}

/// A table of what the deployment contains, aligned like `birdc show` output.
pub fn topology_table(d: &Deployment) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<6} {:<8} {:>9} {:>10}  {:<28} {}\n",
        "SITE", "COUNTRY", "LAT", "LON", "UPSTREAMS", "STREAM NODES"
    ));
    for site in &d.sites {
        let peers: Vec<String> = site
            .peers
            .iter()
            .map(|p| format!("{}(AS{})", p.name, p.remote_asn))
            .collect();
        let nodes: Vec<String> = site
            .nodes
            .iter()
            .map(|n| format!("{}@{}", n.name, n.listen))
            .collect();
        out.push_str(&format!(
            "{:<6} {:<8} {:>9.2} {:>10.2}  {:<28} {}\n",
            site.name,
            site.country,
            site.latitude,
            site.longitude,
            peers.join(" "),
            nodes.join(" ")
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<8} {:<24} {:<20} {}\n",
        "SERVICE", "HOSTNAMES", "PREFIXES", "ANSWER"
    ));
    for svc in &d.services {
        let prefixes: Vec<String> = svc.prefixes.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "{:<8} {:<24} {:<20} {:?}\n",
            svc.name,
            svc.hostnames.join(","),
            prefixes.join(","),
            svc.answer
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_deployment_is_valid() {
        let d = embedded().unwrap_or_else(|e| panic!("{e}"));
        let table = topology_table(&d);
        for site in ["ams", "fra", "lon"] {
            assert!(table.contains(site), "{table}");
        }
    }
}
