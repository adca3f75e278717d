//! A BGP-4 speaker that announces a site's anycast prefixes to its upstream routers and takes
//! them away the moment healthd says so.
//!
//! Wire encoding and decoding use `zettabgp`; sessions (the RFC 4271 FSM), timers, policy, the
//! route table with leases and serving the control API are ours. The control protocol and its
//! client are the `speaker-control` crate.
//!
//! ```text
//!   control API ──▶ SpeakerHandle ──table ops──▶ table task (Rib, leases, drains)
//!                        │                              │ watch<Snapshot>
//!                        └──peer questions (deadline)──▶ peer tasks ──▶ writer tasks ──▶ TCP
//! ```

mod adj_rib_in;
pub mod cli;
pub mod control;
mod export;
pub mod fuzzing;
pub mod metrics;
pub mod packet;
mod receive;
mod rib;
mod route;
mod session;
pub mod speaker;

pub use session::fsm::State;
pub use session::status::PeerStatus;
