//! Faults in the streams themselves: an encoder that freezes while HTTP keeps answering.

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
