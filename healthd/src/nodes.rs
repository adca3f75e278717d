//! What the site knows of each of its nodes: its configuration and the latest its probe, its
//! status document and its status stream said, in configuration order, found by name.
//!
//! A node is up when either side says it is not: its probes (after rise/fall and damping)
//! and its status stream (gone, or ingest lost). The stream takes a node out at once; once it
//! said the node was gone, the node counts again only after a probe has passed since the
//! stream came back, so a node that restarted is played before viewers are sent to it.

use config::Node;
use config::site::Site;

use crate::node::Health;
use crate::report::NodeReport;
use crate::watch::Watched;

/// One node of the site.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub node: Node,
    /// After rise/fall and damping; `None` until the node's first probe result.
    pub health: Option<Health>,
    /// The node's own account (load, draining), when it publishes one.
    pub report: NodeReport,
    /// Why its probes took it down (the failure that did, as the log said it); empty while
    /// its probes pass.
    pub detail: String,
    /// What the node's status stream says.
    pub watched: Watched,
    /// The stream said the node was gone, and no probe has passed since it came back.
    awaiting_probe: bool,
}

impl NodeEntry {
    fn new(node: Node) -> Self {
        Self {
            node,
            health: None,
            report: NodeReport::default(),
            detail: String::new(),
            watched: Watched::Unknown,
            awaiting_probe: false,
        }
    }

    /// Up: its probes say so and its status stream does not say otherwise.
    pub fn up(&self) -> bool {
        self.health == Some(Health::Up) && self.stream_veto().is_none()
    }

    /// Draining itself: as its stream said last while it flows, else as its status document.
    pub fn draining(&self) -> bool {
        match &self.watched {
            Watched::Alive { draining, .. } => *draining,
            _ => self.report.draining,
        }
    }

    /// Counts for the site: up, and not draining itself (its viewers keep playing, but it
    /// takes no more).
    pub fn counts_up(&self) -> bool {
        self.up() && !self.draining()
    }

    /// Why the status stream takes the node out, if it does.
    pub fn stream_veto(&self) -> Option<String> {
        match &self.watched {
            Watched::Gone(why) => Some(format!("status stream: {why}")),
            Watched::Alive { ingest_lost, .. } if !ingest_lost.is_empty() => {
                Some(format!("ingest lost on {}", ingest_lost.join(", ")))
            }
            _ if self.awaiting_probe => {
                Some("status stream back, waiting for a probe to pass".to_owned())
            }
            _ => None,
        }
    }

    /// Why the node is not up, for the feed: its status stream's veto, else its probes'
    /// failure; `None` while it is up. Stable while the cause lasts, so the feed is not
    /// republished for a changing detail.
    pub fn reason(&self) -> Option<String> {
        if self.up() {
            return None;
        }
        self.stream_veto().or_else(|| match self.health {
            None => Some("not probed yet".to_owned()),
            Some(Health::Down) if self.detail.is_empty() => Some("probes failing".to_owned()),
            Some(Health::Down) => Some(self.detail.clone()),
            Some(Health::Up) => None,
        })
    }

    /// What the site's decision reads of the node.
    fn counted(&self) -> (bool, bool, bool) {
        (self.up(), self.draining(), self.health.is_some())
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
        ok: bool,
        report: NodeReport,
        detail: String,
    ) -> Option<bool> {
        self.change(name, |entry| {
            entry.health = Some(health);
            entry.report = report;
            entry.detail = detail;
            if ok && !matches!(entry.watched, Watched::Gone(_)) {
                entry.awaiting_probe = false;
            }
        })
    }

    /// Takes the node as a replaced healthd left it: its probes' verdict, its report and
    /// what its status stream said, at once; as [`NodeTable::update`].
    pub fn resume(
        &mut self,
        name: &str,
        health: Health,
        report: NodeReport,
        watched: Watched,
    ) -> Option<bool> {
        self.change(name, |entry| {
            entry.health = Some(health);
            entry.report = report;
            entry.watched = watched;
        })
    }

    /// Records what the node's status stream says now; as [`NodeTable::update`].
    pub fn watched(&mut self, name: &str, watched: Watched) -> Option<bool> {
        self.change(name, |entry| {
            if matches!(watched, Watched::Gone(_)) {
                entry.awaiting_probe = true;
            }
            entry.watched = watched;
        })
    }

    fn change(&mut self, name: &str, apply: impl FnOnce(&mut NodeEntry)) -> Option<bool> {
        let entry = self.entries.iter_mut().find(|e| e.node.name == name)?;
        let before = entry.counted();
        apply(entry);
        Some(entry.counted() != before)
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
            table.update(&first, Health::Up, true, up, String::new()),
            Some(true)
        );
        assert_eq!(
            table.update(&first, Health::Up, true, up, String::new()),
            Some(false)
        );
        assert_eq!(
            table.update("nobody", Health::Up, true, up, String::new()),
            None
        );
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

    #[test]
    fn the_stream_takes_a_node_out_at_once_and_a_probe_lets_it_back() {
        let text = include_str!("../../config/examples/three-sites.toml");
        let d = config::Deployment::parse(text, std::path::Path::new("three-sites.toml")).unwrap();
        let site = d.site("ams").unwrap();
        let mut table = NodeTable::new(site);
        let name = site.nodes[0].name.clone();
        let up = NodeReport::default();
        let node = |t: &NodeTable| t.iter().find(|e| e.node.name == name).unwrap().clone();
        table.update(&name, Health::Up, true, up, String::new());
        let alive = Watched::Alive {
            draining: false,
            ingest_lost: Vec::new(),
        };
        assert_eq!(table.watched(&name, alive.clone()), Some(false));
        assert!(node(&table).counts_up());

        // Gone: out at once, whatever the probes say.
        let gone = Watched::Gone("the node closed its status stream".into());
        assert_eq!(table.watched(&name, gone), Some(true));
        assert!(!node(&table).up());
        assert!(node(&table).stream_veto().unwrap().contains("closed"));
        // A probe that passes while the stream is still gone changes nothing.
        table.update(&name, Health::Up, true, up, String::new());
        assert!(!node(&table).up());
        // Back, but not played yet: still out.
        assert_eq!(table.watched(&name, alive.clone()), Some(false));
        assert!(
            node(&table)
                .stream_veto()
                .unwrap()
                .contains("waiting for a probe")
        );
        assert_eq!(
            table.update(&name, Health::Up, true, up, String::new()),
            Some(true)
        );
        assert!(node(&table).counts_up());

        // Ingest lost: out at once, back as soon as the node says it flows.
        let lost = Watched::Alive {
            draining: false,
            ingest_lost: vec!["news".into()],
        };
        assert_eq!(table.watched(&name, lost), Some(true));
        assert!(!node(&table).up());
        assert_eq!(table.watched(&name, alive), Some(true));
        assert!(node(&table).up());

        // A drain pushed on the stream wins over an older status document.
        let draining = Watched::Alive {
            draining: true,
            ingest_lost: Vec::new(),
        };
        assert_eq!(table.watched(&name, draining), Some(true));
        table.update(&name, Health::Up, true, up, String::new());
        assert!(node(&table).draining() && !node(&table).counts_up());

        // Unknown (a node without a stream) leaves it to the probes.
        table.watched(&name, Watched::Unknown);
        assert!(node(&table).counts_up());
    }
}
