//! Authoritative geo-DNS: answers service hostnames with the nearest healthy site's nodes
//! (EDNS Client Subnet, else the source address, located in a MaxMind DB) and serves static
//! zone data for everything else.

pub mod admin_state;
pub mod answer;
pub mod feeds;
pub mod geo;
pub mod handler;
pub mod health;
pub mod memo;
pub mod metrics;
pub mod scope;
pub mod server;
pub mod state;
pub mod steering;
pub mod udp;
pub mod zone;
