//! The lab: topologies in containerlab's format, a runner that builds them from network
//! namespaces, and the one-command demo.

pub mod demo;
pub mod netns;
pub mod prepare;
pub mod topology;
