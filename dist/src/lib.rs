//! The Debian package of the control plane (`anycast-iptv`): this crate exists only to carry
//! the package's description for cargo-deb (`Cargo.toml`, `[package.metadata.deb]`). The
//! package holds the daemons of the other crates; `scripts/package.sh` builds it, and
//! `lab/tests/package.rs` installs it, starts its daemons as the units run them, and purges it.
