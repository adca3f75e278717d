//! The lab: topologies in containerlab's format, a runner that builds them from network
//! namespaces, and the one-command demo.

pub mod browsing;
pub mod chaos;
pub mod collector;
pub mod demo;
pub mod dnsquery;
pub mod netns;
pub mod prepare;
pub mod report;
pub mod timeline;
pub mod topology;
pub mod viewer;
