//! The site-health rule: whether a site can serve a service, and why, from its nodes. One pure
//! function, used by healthd for the verdict it publishes and announces, and by geodns for
//! steering and `explain`, so that the two never disagree on what "healthy" means.
//!
//! A site is usable for a service when at least `min_healthy_nodes` of its nodes carrying the
//! service are up and their load (egress over capacity, weighted by capacity) is under
//! `spill_load`. An operator may force it up (usable while any node is up), down, or drain it.

use std::fmt;

/// What one node contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeHealth {
    pub up: bool,
    /// Egress over capacity, 0..1.
    pub load: f64,
    pub capacity_mbps: u32,
}

/// The service's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub min_healthy_nodes: u32,
    /// Load at or above which the site takes no more viewers.
    pub spill_load: f64,
}

/// An operator's word on the site, which wins over its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operator {
    #[default]
    None,
    /// Usable while any node is up, whatever the thresholds.
    ForcedUp,
    ForcedDown,
    /// Taken out on purpose (healthd's drain).
    Drained,
}

/// Why the site is (or is not) usable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    Healthy {
        up: u32,
        total: u32,
        load: f64,
    },
    ForcedUp,
    ForcedDown,
    Drained,
    /// No node carries the service.
    NoNodes,
    TooFewUp {
        up: u32,
        total: u32,
        needed: u32,
    },
    Overloaded {
        load: f64,
        spill_load: f64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Healthy { up, total, load } => write!(
                f,
                "{up} of {total} nodes healthy, load {:.0}%",
                load * 100.0
            ),
            Self::ForcedUp => f.write_str("forced up by an operator"),
            Self::ForcedDown => f.write_str("forced down by an operator"),
            Self::Drained => f.write_str("site drained by an operator"),
            Self::NoNodes => f.write_str("no node carries the service"),
            Self::TooFewUp { up, total, needed } => {
                write!(f, "{up} of {total} nodes healthy, {needed} needed")
            }
            Self::Overloaded { load, spill_load } => write!(
                f,
                "load {:.0}% at or above the spill threshold {:.0}%",
                load * 100.0,
                spill_load * 100.0
            ),
        }
    }
}

/// The rule's answer for one site and service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteHealth {
    pub usable: bool,
    /// Nodes carrying the service, and how many of them are up.
    pub total: u32,
    pub up: u32,
    /// Load of the nodes up, weighted by capacity (1 when none is up).
    pub load: f64,
    pub reason: Reason,
}

/// Decides one site for one service from the nodes that carry it.
pub fn site_health(
    nodes: impl IntoIterator<Item = NodeHealth>,
    thresholds: Thresholds,
    operator: Operator,
) -> SiteHealth {
    let (mut total, mut up) = (0u32, 0u32);
    let (mut capacity, mut used) = (0.0, 0.0);
    for node in nodes {
        total += 1;
        if node.up {
            up += 1;
            capacity += f64::from(node.capacity_mbps);
            used += node.load.clamp(0.0, 1.0) * f64::from(node.capacity_mbps);
        }
    }
    let load = if capacity > 0.0 { used / capacity } else { 1.0 };
    let (usable, reason) = match operator {
        Operator::ForcedDown => (false, Reason::ForcedDown),
        Operator::Drained => (false, Reason::Drained),
        _ if total == 0 => (false, Reason::NoNodes),
        Operator::ForcedUp if up > 0 => (true, Reason::ForcedUp),
        // Forced up with no node up is judged like any other site: never usable.
        _ if up < thresholds.min_healthy_nodes => (
            false,
            Reason::TooFewUp {
                up,
                total,
                needed: thresholds.min_healthy_nodes,
            },
        ),
        _ if load >= thresholds.spill_load => (
            false,
            Reason::Overloaded {
                load,
                spill_load: thresholds.spill_load,
            },
        ),
        _ => (true, Reason::Healthy { up, total, load }),
    };
    SiteHealth {
        usable,
        total,
        up,
        load,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Thresholds = Thresholds {
        min_healthy_nodes: 2,
        spill_load: 0.8,
    };

    fn nodes(up: usize, total: usize, load: f64) -> Vec<NodeHealth> {
        (0..total)
            .map(|i| NodeHealth {
                up: i < up,
                load,
                capacity_mbps: 1000,
            })
            .collect()
    }

    #[test]
    fn the_rule_by_table() {
        use Operator::*;
        // (up, total, load, operator) → (usable, reason)
        let table: [(usize, usize, f64, Operator, bool, &str); 10] = [
            (2, 3, 0.5, None, true, "2 of 3 nodes healthy, load 50%"),
            (3, 3, 0.0, None, true, "3 of 3 nodes healthy, load 0%"),
            (1, 3, 0.1, None, false, "1 of 3 nodes healthy, 2 needed"),
            (0, 0, 0.0, None, false, "no node carries the service"),
            (
                3,
                3,
                0.8,
                None,
                false,
                "load 80% at or above the spill threshold 80%",
            ),
            (3, 3, 0.9, ForcedDown, false, "forced down by an operator"),
            (1, 3, 0.9, ForcedUp, true, "forced up by an operator"),
            (0, 3, 0.0, ForcedUp, false, "0 of 3 nodes healthy, 2 needed"),
            (3, 3, 0.1, Drained, false, "site drained by an operator"),
            (0, 0, 0.0, Drained, false, "site drained by an operator"),
        ];
        for (up, total, load, operator, usable, why) in table {
            let h = site_health(nodes(up, total, load), LIVE, operator);
            assert_eq!(
                (h.usable, h.reason.to_string().as_str()),
                (usable, why),
                "{up}/{total} at {load} with {operator:?}"
            );
        }
    }

    #[test]
    fn load_is_weighted_by_capacity_over_the_nodes_up() {
        let nodes = [
            NodeHealth {
                up: true,
                load: 0.9,
                capacity_mbps: 1000,
            },
            NodeHealth {
                up: true,
                load: 0.0,
                capacity_mbps: 3000,
            },
            NodeHealth {
                up: false,
                load: 1.0,
                capacity_mbps: 10_000,
            },
        ];
        let h = site_health(nodes, LIVE, Operator::None);
        assert!((h.load - 0.225).abs() < 1e-9, "{}", h.load);
        assert!(h.usable);
    }
}
