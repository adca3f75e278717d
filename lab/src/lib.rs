//! Multi-site lab: topologies, a network-namespace runner, fault injection and the demo.

pub mod demo;
