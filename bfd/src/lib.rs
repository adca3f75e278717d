//! Bidirectional Forwarding Detection (RFC 5880), single hop over UDP (RFC 5881): finds a dead
//! link or router in a fraction of a second, where BGP's hold timer takes seconds.
//!
//! [`packet`] is the control packet and the checks every received one passes; [`session`] is
//! one session's state machine and timers, free of I/O so every rule is tested with a clock
//! of our own; [`driver`] runs sessions on UDP.

pub mod driver;
pub mod fuzzing;
pub mod packet;
pub mod session;

pub use driver::{Bfd, Peer, Status};
pub use packet::{Diag, Packet, State};
pub use session::{Change, Config, Session};
