//! What the site knows of each of its nodes: its configuration and the latest its probe and
//! status document said, in configuration order, found by name.

use config::Node;
use config::site::Site;

use crate::node::Health;
use crate::report::NodeReport;

/// One node of the site.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub node: Node,
    /// After rise/fall and damping; `None` until the node's first probe result.
    pub health: Option<Health>,
    /// The node's own account (load, draining), when it publishes one.
    pub report: NodeReport,
    /// Why the last probe failed; empty when it passed.
    pub detail: String,
}

impl NodeEntry {
    fn new(node: Node) -> Self {
        Self {
            node,
            health: None,
            report: NodeReport::default(),
            detail: String::new(),
        }
    }

    /// Counts for the site: up, and not draining itself (its viewers keep playing, but it
    /// takes no more).
    pub fn counts_up(&self) -> bool {
        self.health == Some(Health::Up) && !self.report.draining
    }
}

/// Every node of the site.
#[derive(Debug, Clone, Default)]
pub struct NodeTable {
    entries: Vec<NodeEntry>,
}

impl NodeTable {
    /// The site's nodes, unknown until their probes say.
    pub fn new(site: &Site) -> Self {
        Self {
            entries: site.nodes.iter().cloned().map(NodeEntry::new).collect(),
        }
    }

    /// Takes a reloaded site's nodes: those it keeps (by name) keep their state, new ones
    /// start down, removed ones go.
    pub fn reconfigure(&mut self, site: &Site) {
        let mut old = std::mem::take(&mut self.entries);
        self.entries = site
            .nodes
            .iter()
            .map(
                |node| match old.iter().position(|e| e.node.name == node.name) {
                    Some(i) => NodeEntry {
                        node: node.clone(),
                        ..old.swap_remove(i)
                    },
                    None => NodeEntry::new(node.clone()),
                },
            )
            .collect();
    }

    /// Records a probe's result for the node named `name`. `None` for a node a reload just
    /// removed; else whether what counts for the site changed.
    pub fn update(
        &mut self,
        name: &str,
        health: Health,
        report: NodeReport,
        detail: String,
    ) -> Option<bool> {
        let entry = self.entries.iter_mut().find(|e| e.node.name == name)?;
        let changed = entry.health != Some(health) || entry.report.draining != report.draining;
        entry.health = Some(health);
        entry.report = report;
        entry.detail = detail;
        Some(changed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &NodeEntry> {
        self.entries.iter()
    }

    /// Every node has had a probe result (a site whose state is being learnt is not decided).
    pub fn all_known(&self) -> bool {
        self.entries.iter().all(|e| e.health.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_each_nodes_state_by_name() {
        let text = include_str!("../../config/examples/three-sites.toml");
        let d = config::Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap();
        let mut site = d.site("ams").unwrap().clone();
        let mut table = NodeTable::new(&site);
        let first = site.nodes[0].name.clone();
        let up = NodeReport::default();
        assert_eq!(
            table.update(&first, Health::Up, up, String::new()),
            Some(true)
        );
        assert_eq!(
            table.update(&first, Health::Up, up, String::new()),
            Some(false)
        );
        assert_eq!(table.update("nobody", Health::Up, up, String::new()), None);
        // The first node moves to the end and a new node joins.
        site.nodes.rotate_left(1);
        let mut added = site.nodes[0].clone();
        added.name = "ams-9".into();
        site.nodes.push(added);
        table.reconfigure(&site);
        let names: Vec<&str> = table.iter().map(|e| e.node.name.as_str()).collect();
        assert_eq!(names.last(), Some(&"ams-9"));
        let kept = table.iter().find(|e| e.node.name == first).unwrap();
        assert!(kept.counts_up(), "kept its state");
        assert!(
            !table.iter().last().unwrap().counts_up(),
            "new nodes start down"
        );
    }
}
