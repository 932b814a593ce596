//! # wire: bytes to typed protocol views, and capture file formats
//!
//! Contract:
//! - Pure functions over byte slices and `io::Read`/`io::Write`. No OS calls, no clock (time is a
//!   parameter, see `clippy.toml`), no `unsafe`, no allocation on the per-packet decode path
//!   ([`layers`]); message parsers ([`dns`], [`tls`], [`http`], [`stun`], [`apps`], and
//!   `quic` behind the `quic` feature) allocate only what they return, bounded by their input.
//! - Every view is zero-copy: `View::new_checked(&[u8])` validates the lengths once and returns a
//!   typed [`Error`] naming the layer and what was missing; its accessors then never panic.
//! - Code points are open newtypes (`EtherType(pub u16)` with constants) so unknown and GREASE
//!   values survive.
//! - Decoding is lax where a monitor needs it (snaplen-truncated payloads are kept and the
//!   shortfall reported), strict about headers.
//! - [`capture`] reads and writes classic pcap and pcapng, detected by magic number.
//! - Every parser of network bytes has a fuzz target in `fuzz/` and never panics.
#![forbid(unsafe_code)]

pub mod apps;
pub mod capture;
pub mod cursor;
pub mod dns;
mod error;
pub mod http;
pub mod layers;
#[cfg(feature = "quic")]
pub mod quic;
pub mod stun;
pub mod synth;
pub mod tls;

pub use error::{Error, Layer};
