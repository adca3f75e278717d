//! A BGP-4 speaker that announces a site's anycast prefixes to its upstream routers and takes
//! them away the moment healthd says so.
//!
//! Wire encoding and decoding use `zettabgp`; sessions (the RFC 4271 FSM), timers, policy, the
//! route table with leases and the control API are ours.

pub mod adj_rib_in;
pub mod cli;
pub mod control;
pub mod export;
pub mod metrics;
pub mod packet;
pub mod receive;
pub mod rib;
pub mod route;
pub mod session;
pub mod speaker;
