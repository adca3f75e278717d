//! Stream-aware health checks that drive the BGP speaker and publish the site feed.
//!
//! The decision logic is kept free of I/O so every rule is unit-tested: [`node`] turns probe
//! results into a node state (rise/fall counts and flap damping), [`verdict`] turns node states
//! into the per-service site verdict and the announcement the degrade policy calls for;
//! [`peers`] follows the other sites' feeds so a site can fail open when every site is down.

pub mod daemon;
pub mod fuzzing;
pub mod node;
pub mod peers;
pub mod probe;
pub mod report;
pub mod verdict;
