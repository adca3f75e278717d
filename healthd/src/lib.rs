//! Stream-aware health checks that drive the BGP speaker and publish the site feed.
//!
//! The decision logic is free of I/O so every rule is unit-tested: `node` turns probe
//! results into a node state (rise/fall counts and flap damping), `verdict` turns node states
//! into the per-service site verdict and the announcement the degrade policy calls for, and
//! `decide` adds what the site as a whole decides (settling, fail open, the feed document);
//! `other_sites` follows the other sites' feeds so a site can fail open when every site is down.
//! The rest performs: `schedule` probes the nodes and `watch` follows their status streams,
//! `site` runs the decision each round and drives the speaker (`speaker`) and the feed,
//! `daemon` wires it all together.

mod admin;
pub mod daemon;
mod decide;
pub mod fuzzing;
mod metrics;
mod node;
mod nodes;
mod other_sites;
pub mod probe;
mod report;
mod schedule;
mod site;
mod speaker;
mod verdict;
mod watch;
