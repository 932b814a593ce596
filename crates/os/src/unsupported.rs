//! What netvigil says on an operating system it has no live source for.
//!
//! Compiled on every platform (so its message is tested); exported as `os::NativeSockets` on
//! systems other than Linux, macOS and Windows, where reading capture files still works.

use engine::sockets::{SocketSnapshot, SocketTable};
use std::fmt;

/// A live feature this operating system does not have in netvigil.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// What was asked for ("the live socket table").
    pub what: &'static str,
    /// The operating system (`std::env::consts::OS`).
    pub os: &'static str,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not available on {} in this version of netvigil (it is on Linux, macOS and \
             Windows); analyse a capture instead: record one with `tcpdump -w FILE.pcap` and run \
             `netvigil read FILE.pcap`",
            self.what, self.os
        )
    }
}

impl std::error::Error for Unsupported {}

/// The socket table of a system netvigil cannot read: every snapshot is an [`Unsupported`]
/// error.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnsupportedSockets;

impl UnsupportedSockets {
    pub fn new() -> Self {
        UnsupportedSockets
    }
}

impl SocketTable for UnsupportedSockets {
    type Error = Unsupported;
    fn snapshot(&mut self, _now: i64) -> Result<SocketSnapshot, Unsupported> {
        Err(Unsupported {
            what: "the live socket table",
            os: std::env::consts::OS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_to_do() {
        let e = UnsupportedSockets::new().snapshot(0).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("the live socket table is not available on"), "{msg}");
        assert!(msg.contains("netvigil read FILE.pcap"), "{msg}");
    }
}
