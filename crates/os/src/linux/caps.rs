//! Linux capabilities: what this process may do (capture, see other users' processes), and
//! dropping what it no longer needs once its sockets are open.

use std::fmt;

/// The capabilities netvigil cares about (bit numbers from linux/capability.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cap {
    /// Open AF_PACKET sockets: packet capture.
    NetRaw = 13,
    /// Promiscuous mode, and some netlink queries.
    NetAdmin = 12,
    /// Read other users' /proc/PID/fd: which process owns a socket.
    SysPtrace = 19,
    /// Read other users' /proc files regardless of permissions.
    DacReadSearch = 2,
}

impl Cap {
    pub const ALL: [Cap; 4] = [Cap::NetRaw, Cap::NetAdmin, Cap::SysPtrace, Cap::DacReadSearch];

    pub const fn name(self) -> &'static str {
        match self {
            Cap::NetRaw => "cap_net_raw",
            Cap::NetAdmin => "cap_net_admin",
            Cap::SysPtrace => "cap_sys_ptrace",
            Cap::DacReadSearch => "cap_dac_read_search",
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The effective capability set of this process, from /proc/self/status (`CapEff:` in hex).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    pub fn has(self, c: Cap) -> bool {
        self.0 & (1u64 << (c as u32)) != 0
    }
}

/// Parses the `CapEff:` line of a /proc/PID/status text.
pub fn parse_cap_eff(status: &str) -> Option<CapSet> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16)
        .ok()
        .map(CapSet)
}

/// This process's effective capabilities (empty when /proc is not readable).
pub fn effective() -> CapSet {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .unwrap_or_default()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Keeps only `keep` in the effective, permitted and inheritable sets of this thread (the
/// threads started afterwards inherit that). Call after the capture sockets are open: they
/// stay usable, and a compromised parser can no longer open new ones.
pub fn keep_only(keep: &[Cap]) -> std::io::Result<()> {
    let mut mask = 0u64;
    for c in keep {
        mask |= 1u64 << (*c as u32);
    }
    let current = effective().0;
    let wanted = current & mask;
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: wanted as u32,
            permitted: wanted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (wanted >> 32) as u32,
            permitted: (wanted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset(2) reads one header and two data structs (version 3 layout) that live for
    // the duration of the call; pid 0 means this thread. It changes only this thread's sets.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let s = "Name:\tnetvigil\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n";
        let c = parse_cap_eff(s).unwrap();
        assert!(c.has(Cap::NetRaw) && c.has(Cap::NetAdmin) && !c.has(Cap::SysPtrace));
        assert_eq!(parse_cap_eff("CapEff:\tzz"), None);
        assert_eq!(parse_cap_eff(""), None);
    }
}
