//! # os: the ONLY crate that touches the operating system
//!
//! Everything that needs the OS lives here: opening and memory-mapping capture files, reading
//! standard input, (later) live packet sources and socket tables. This is the only crate with
//! `unsafe`, `libc` and `cfg(target_os)`; the other crates are pure and testable without a
//! machine under them.
//!
//! Rules for this crate:
//! - every `unsafe` block carries a `// SAFETY:` comment saying why it is sound (clippy's
//!   `undocumented_unsafe_blocks` is denied in the workspace);
//! - errors name the file or resource and say what the user can do about it.

pub mod capture_file;

pub use capture_file::{OpenError, ReadSummary, read_capture};
pub mod procnet;

/// Linux sources: AF_PACKET capture, netlink sock_diag, /proc process facts, capabilities.
#[cfg(target_os = "linux")]
pub mod linux;
