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
pub mod rdns;

/// Linux sources: AF_PACKET capture, netlink sock_diag, /proc process facts, capabilities.
#[cfg(target_os = "linux")]
pub mod linux;

/// Clock ticks per second of process CPU times (USER_HZ, the unit of `/proc/PID/stat`):
/// asked of the system on Linux, 100 elsewhere.
pub fn clock_ticks() -> u64 {
    #[cfg(target_os = "linux")]
    {
        linux::process::clock_ticks()
    }
    #[cfg(not(target_os = "linux"))]
    {
        100
    }
}

/// Parsers of OS tool output (lsof, netstat, nettop, ps, codesign, tasklist) and the tool
/// runner: plain code compiled on every platform, tested on recorded output.
pub mod tools;
/// The error and socket table of systems without a live source.
pub mod unsupported;

/// macOS: the socket table from lsof, netstat, ps and codesign. Compiled for Linux test builds
/// too: it only runs tools, and Linux has lsof and ps with the same output formats.
#[cfg(any(target_os = "macos", all(target_os = "linux", test)))]
pub mod macos;
/// Live capture through libpcap (feature `libpcap`): macOS, the BSDs, Windows (Npcap), Linux.
#[cfg(feature = "libpcap")]
pub mod pcap_source;
/// Windows: the socket table from the IP Helper API, process facts, Authenticode.
#[cfg(windows)]
pub mod windows;

/// This system's socket table (macOS: [`macos::MacSockets`]; Windows:
/// [`windows::WindowsSockets`]; elsewhere except Linux: [`unsupported::UnsupportedSockets`]).
#[cfg(target_os = "macos")]
pub use macos::MacSockets as NativeSockets;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub use unsupported::UnsupportedSockets as NativeSockets;
#[cfg(windows)]
pub use windows::WindowsSockets as NativeSockets;
