//! Authoritative geo-DNS: answers service hostnames with the nearest healthy site's nodes
//! (EDNS Client Subnet, else the source address, located in a MaxMind DB) and serves static
//! zone data for everything else.
//!
//! ```text
//!   udp (workers, batched I/O) ─┐
//!                               ├─▶ query: hot (fast path, memo) │ slow (hickory-proto) ─▶ answer
//!   tcp (a task per connection) ┘                                                  │
//!   feeds ──▶ state (configuration, atlas, health; swapped whole) ◀── steering ─┘
//!                    ▲ atlas: database + steering rules, compiled off the serving threads
//! ```

mod admin_state;
mod answer;
mod atlas;
pub mod canary;
mod console;
pub mod content_steering;
mod cookie;
pub mod explain;
mod feeds;
pub mod fuzzing;
pub mod geo;
mod health;
mod memo;
mod metrics;
mod prepared;
pub mod query;
mod rrl;
pub mod server;
mod state;
mod steering;
pub mod takeover;
mod tcp;
mod udp;
mod zone;

pub use state::Shared;
