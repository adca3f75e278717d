//! Faults in the streams themselves: a packager that freezes while HTTP keeps answering, and
//! the ingest of every node of a site lost (the encoders or their network failed).

use std::time::Duration;

use anyhow::Result;

use super::super::checks::Run;
use super::super::{Check, World};
use super::{Fault, admin_post, first, stream_nodes};
use crate::timeline::Timeline;

/// One node's stream frozen (fault injection on its admin API): the playlist stops
/// advancing while every request is still answered 200.
pub struct NodeFreeze {
    node: String,
}

impl NodeFreeze {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        Ok(Self {
            node: first(stream_nodes(world, site), site, "streamnode")?,
        })
    }
}

impl Fault for NodeFreeze {
    fn describe(&self) -> String {
        format!("freeze the stream of {}", self.node)
    }

    fn target(&self) -> String {
        self.node.clone()
    }

    fn inject(&self, world: &World<'_>, _: &Timeline, _: Duration) -> Result<()> {
        admin_post(world, &self.node, "/freeze")
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        admin_post(world, &self.node, "/unfreeze")
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        let mut checks = run.stays_announced();
        // A freeze shows after 1.5 target durations without a new segment, then fall.
        checks.extend(run.dropped_from_dns(
            std::slice::from_ref(&self.node),
            Duration::from_millis(5000),
        ));
        checks.push(run.never_empty());
        // A frozen node still answers 200: its viewers leave only when their player finds the
        // playlist stuck (3.5 target durations), which a 3-segment buffer nearly covers.
        checks.extend(run.viewers_unharmed(Duration::from_secs(2)));
        Ok(checks)
    }
}

/// Every stream node of the site loses its ingest (fault injection on its admin API): each
/// node finds out after its `stall_timeout` and says so on its status stream, so the site is
/// withdrawn before any playlist is seen to stall.
pub struct IngestLoss {
    nodes: Vec<String>,
}

impl IngestLoss {
    pub fn new(world: &World<'_>, site: &str) -> Result<Self> {
        let nodes = stream_nodes(world, site);
        first(nodes.clone(), site, "streamnode")?;
        Ok(Self { nodes })
    }
}

impl Fault for IngestLoss {
    fn describe(&self) -> String {
        format!("cut the ingest of {}", self.nodes.join(", "))
    }

    fn target(&self) -> String {
        self.nodes.join(", ")
    }

    fn inject(&self, world: &World<'_>, _: &Timeline, _: Duration) -> Result<()> {
        for node in &self.nodes {
            admin_post(world, node, "/cut-ingest")?;
        }
        Ok(())
    }

    fn restore(&self, world: &World<'_>) -> Result<()> {
        for node in &self.nodes {
            admin_post(world, node, "/restore-ingest")?;
        }
        Ok(())
    }

    fn checks(&self, run: &Run<'_>) -> Result<Vec<Check>> {
        // The stall timeout (500 ms by default), then the push, the decision and BGP.
        let bound = Duration::from_secs(1);
        let mut checks = run.withdrawn_within(bound, "ingest lost on every node", None, &[]);
        checks.extend(run.answers_move(bound, None));
        checks.push(run.never_empty());
        // The site's viewers hold a few segments; their playlist stops only for as long as
        // the withdraw and the answers take.
        checks.extend(run.viewers_unharmed(Duration::from_secs(2)));
        Ok(checks)
    }
}
