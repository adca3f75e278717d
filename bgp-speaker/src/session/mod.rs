//! BGP sessions: the state machine and the task that drives it over TCP.

pub mod fsm;
