//! BGP sessions: the state machine, the transport, and the task that drives them.

pub mod fsm;
pub mod peer;
pub mod status;
pub mod task;
pub mod transport;
pub mod writer;
