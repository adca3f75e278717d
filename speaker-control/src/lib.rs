//! The bgp-speaker's control API, as a protocol of its own: what may be asked ([`Op`]), what
//! comes back ([`Reply`]), the attributes of an announcement ([`RouteAttrs`]) and a
//! [`Client`] with deadlines. healthd, the operator CLI and the lab use it; nobody outside the
//! speaker needs its sessions or its table.
//!
//! One JSON object per line in each direction, over a unix socket (protected by its file mode)
//! or a loopback TCP port (protected by a token):
//!
//! ```text
//! → {"op":"announce","prefixes":["198.51.100.0/24"],"service":"live","lease_ms":3000,
//!    "attrs":{"communities":["65000:100"],"prepend":1}}
//! ← {"changed":{"change":"added","routes":1}}
//! ```
//!
//! Route lists (our table, what a peer was sent or sent us) can be a full table: they come back
//! as one line per route and a closing line ([`Reply::Route`] or [`Reply::PeerRoute`], then
//! [`Reply::RoutesEnd`]), never as one document built whole.

mod attrs;
mod client;
mod protocol;

pub use attrs::{Origin, RouteAttrs};
pub use client::{Client, ControlError, DEFAULT_TIMEOUT};
pub use protocol::{
    Change, Envelope, MAX_LINE, Op, Reply, RouteEntry, ShownRoute, origin_name, read_request,
    write_reply,
};
