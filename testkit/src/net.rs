//! Loopback addresses for tests: each call gets its own 127.A.B.0/24 block, so tests running in
//! parallel (and peers they start) never collide on address and port.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};

static NEXT: AtomicU8 = AtomicU8::new(1);

/// A block of loopback addresses private to one test.
#[derive(Debug, Clone, Copy)]
pub struct Loopback {
    a: u8,
    b: u8,
}

impl Loopback {
    /// A fresh block. The second octet comes from the process id, so test binaries that
    /// overlap (or leftovers of a crashed run) use different blocks too.
    pub fn fresh() -> Self {
        let a = 64 + (std::process::id() % 128) as u8;
        let b = NEXT.fetch_add(1, Ordering::Relaxed);
        Self { a, b }
    }

    /// Host `n` (1..=254) of the block.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, n)
    }
}
