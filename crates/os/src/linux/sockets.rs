//! The Linux socket table, readable without root.
//!
//! TCP, UDP, UDP-Lite and raw sockets (IPv4 and IPv6) come from netlink sock_diag
//! ([`super::sock_diag`]): one dump per table, TCP with `tcp_info`. ICMP ping sockets,
//! AF_PACKET sockets and SCTP have no (unprivileged, universally available) dump and come from
//! `/proc/net` ([`crate::procnet`]); so does everything when netlink is not available (a
//! restricted container) or a dump is not supported by the kernel.
//!
//! A listing costs one netlink dump or one `/proc/net` file read per table, never a system
//! call per socket.

use super::sock_diag::{DiagError, SockDiag};
use crate::procnet::{self, PacketSocket, Parsed};
use engine::sockets::{SockProto, SocketEntry, TcpState};
use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where a table was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Netlink NETLINK_SOCK_DIAG dump.
    SockDiag,
    /// Text table under /proc/net.
    ProcNet,
}

/// All sockets at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketListing {
    pub sockets: Vec<SocketEntry>,
    /// Where the TCP table came from: `SockDiag` normally, `ProcNet` when netlink failed (see
    /// `tables` for every table).
    pub source: Source,
    /// Every table read ("tcp", "tcp6", "udp", ..., "icmp6", "packet", "sctp/eps",
    /// "sctp/assocs") and where it came from. Tables the kernel does not have (no SCTP, IPv6
    /// disabled) are listed as `ProcNet` with nothing in them.
    pub tables: Vec<(&'static str, Source)>,
    pub packet_sockets: Vec<PacketSocket>,
    /// Malformed /proc/net lines (and malformed sock_diag messages) that were skipped.
    pub skipped_lines: usize,
    /// Why sock_diag was not used where it normally is, for a verbose log. A table the kernel
    /// cannot dump (raw without the raw_diag module) is reported on the first listing only;
    /// `tables` says `ProcNet` for it every time.
    pub fallbacks: Vec<String>,
}

/// Why the socket table could not be read.
#[derive(Debug)]
pub enum SocketError {
    /// A /proc/net table could not be read (and, if it is one sock_diag normally serves,
    /// sock_diag failed too: `netlink`).
    ProcNet {
        path: PathBuf,
        source: io::Error,
        netlink: Option<DiagError>,
    },
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::ProcNet {
                path,
                source,
                netlink,
            } => {
                write!(f, "cannot read the socket table {} ({source})", path.display())?;
                if let Some(n) = netlink {
                    write!(f, ", and netlink failed too: {n}")?;
                }
                let hint = match source.kind() {
                    io::ErrorKind::NotFound => {
                        "is /proc mounted? Run netvigil where /proc (procfs) is mounted, or \
                         allow netlink sockets"
                    }
                    io::ErrorKind::PermissionDenied => {
                        "a security policy (hidepid, SELinux/AppArmor, a container profile) \
                         hides it: allow reading /proc/net or netlink sock_diag"
                    }
                    _ => "check that /proc is a working procfs mount",
                };
                write!(f, "; {hint}")
            }
        }
    }
}

impl std::error::Error for SocketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SocketError::ProcNet { source, .. } => Some(source),
        }
    }
}

/// A table sock_diag serves, with its /proc/net fallback.
struct DiagTable {
    name: &'static str,
    family: i32,
    protocol: i32,
    proto: SockProto,
    /// The /proc/net table is required to exist (IPv4 TCP/UDP): its absence means /proc is
    /// missing, not that the kernel lacks the protocol.
    required: bool,
}

const DIAG_TABLES: [DiagTable; 8] = [
    DiagTable {
        name: "tcp",
        family: libc::AF_INET,
        protocol: libc::IPPROTO_TCP,
        proto: SockProto::Tcp,
        required: true,
    },
    DiagTable {
        name: "tcp6",
        family: libc::AF_INET6,
        protocol: libc::IPPROTO_TCP,
        proto: SockProto::Tcp,
        required: false,
    },
    DiagTable {
        name: "udp",
        family: libc::AF_INET,
        protocol: libc::IPPROTO_UDP,
        proto: SockProto::Udp,
        required: true,
    },
    DiagTable {
        name: "udp6",
        family: libc::AF_INET6,
        protocol: libc::IPPROTO_UDP,
        proto: SockProto::Udp,
        required: false,
    },
    DiagTable {
        name: "udplite",
        family: libc::AF_INET,
        protocol: libc::IPPROTO_UDPLITE,
        proto: SockProto::UdpLite,
        required: false,
    },
    DiagTable {
        name: "udplite6",
        family: libc::AF_INET6,
        protocol: libc::IPPROTO_UDPLITE,
        proto: SockProto::UdpLite,
        required: false,
    },
    DiagTable {
        name: "raw",
        family: libc::AF_INET,
        protocol: libc::IPPROTO_RAW,
        proto: SockProto::Raw(0),
        required: false,
    },
    DiagTable {
        name: "raw6",
        family: libc::AF_INET6,
        protocol: libc::IPPROTO_RAW,
        proto: SockProto::Raw(0),
        required: false,
    },
];

/// Tables only /proc/net has (for an unprivileged reader).
const PROC_ONLY_INET: [(&str, SockProto, bool); 2] = [
    ("icmp", SockProto::Icmp, false),
    ("icmp6", SockProto::Icmpv6, true),
];

/// Reads the Linux socket table. Keeps its netlink socket open between listings.
#[derive(Debug)]
pub struct LinuxSockets {
    proc_net: PathBuf,
    diag: Option<SockDiag>,
    /// socket(AF_NETLINK) failed once: this environment forbids it, do not retry.
    diag_forbidden: bool,
    /// Tables whose dump the kernel does not support (by `DIAG_TABLES` index).
    diag_unsupported: [bool; DIAG_TABLES.len()],
    text: String,
}

impl Default for LinuxSockets {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxSockets {
    pub fn new() -> Self {
        LinuxSockets {
            proc_net: PathBuf::from("/proc/net"),
            diag: None,
            diag_forbidden: false,
            diag_unsupported: [false; DIAG_TABLES.len()],
            text: String::new(),
        }
    }

    /// Every socket now: sock_diag where it works, /proc/net elsewhere.
    pub fn list(&mut self) -> Result<SocketListing, SocketError> {
        self.list_with(true)
    }

    /// The same listing read only from /proc/net (what `list` falls back to; also for
    /// comparing the two sources).
    pub fn list_procnet(&mut self) -> Result<SocketListing, SocketError> {
        self.list_with(false)
    }

    fn list_with(&mut self, use_diag: bool) -> Result<SocketListing, SocketError> {
        let mut l = SocketListing {
            sockets: Vec::new(),
            source: Source::ProcNet,
            tables: Vec::with_capacity(DIAG_TABLES.len() + 5),
            packet_sockets: Vec::new(),
            skipped_lines: 0,
            fallbacks: Vec::new(),
        };
        for (i, t) in DIAG_TABLES.iter().enumerate() {
            let mut netlink_error = None;
            if use_diag && !self.diag_unsupported[i] {
                match self.dump(t, &mut l.sockets) {
                    Ok(Some(malformed)) => {
                        l.skipped_lines += malformed;
                        l.tables.push((t.name, Source::SockDiag));
                        if i == 0 {
                            l.source = Source::SockDiag;
                        }
                        continue;
                    }
                    Ok(None) => {} // netlink forbidden here, reported once below
                    Err(e) => {
                        if e.is_unsupported() {
                            self.diag_unsupported[i] = true;
                        }
                        l.fallbacks
                            .push(format!("{}: {e}; read /proc/net/{} instead", t.name, t.name));
                        netlink_error = Some(e);
                    }
                }
            }
            let parsed = match self.read_proc(t.name, t.required) {
                Ok(text) => procnet::parse_inet(text, t.proto, t.family == libc::AF_INET6),
                Err(mut e) => {
                    let SocketError::ProcNet { netlink, .. } = &mut e;
                    *netlink = netlink_error;
                    return Err(e);
                }
            };
            l.skipped_lines += parsed.skipped;
            l.sockets.extend(parsed.entries);
            l.tables.push((t.name, Source::ProcNet));
        }
        if use_diag && self.diag_forbidden && self.diag.is_none() {
            l.fallbacks.push(
                "netlink sock_diag is not available here (socket(AF_NETLINK) failed); every \
                 table was read from /proc/net"
                    .to_string(),
            );
        }

        for (name, proto, v6) in PROC_ONLY_INET {
            let parsed = procnet::parse_inet(self.read_proc(name, false)?, proto, v6);
            l.skipped_lines += parsed.skipped;
            l.sockets.extend(parsed.entries);
            l.tables.push((name, Source::ProcNet));
        }

        let packets = procnet::parse_packet(self.read_proc("packet", false)?);
        l.skipped_lines += packets.skipped;
        l.packet_sockets = packets.entries;
        l.tables.push(("packet", Source::ProcNet));

        let eps = procnet::parse_sctp_eps(self.read_proc("sctp/eps", false)?);
        let assocs = procnet::parse_sctp_assocs(self.read_proc("sctp/assocs", false)?);
        l.skipped_lines += eps.skipped + assocs.skipped;
        merge_sctp(eps, assocs, &mut l.sockets);
        l.tables.push(("sctp/eps", Source::ProcNet));
        l.tables.push(("sctp/assocs", Source::ProcNet));
        Ok(l)
    }

    /// One sock_diag dump into `out`. `Ok(None)`: netlink cannot be used in this environment.
    fn dump(&mut self, t: &DiagTable, out: &mut Vec<SocketEntry>) -> Result<Option<usize>, DiagError> {
        if self.diag_forbidden {
            return Ok(None);
        }
        if self.diag.is_none() {
            match SockDiag::open() {
                Ok(d) => self.diag = Some(d),
                Err(e) => {
                    // EPERM/EACCES (seccomp, LSM), EAFNOSUPPORT (no netlink): it stays so.
                    self.diag_forbidden = true;
                    return Err(e);
                }
            }
        }
        let Some(diag) = self.diag.as_mut() else {
            return Ok(None);
        };
        match diag.dump(t.family as u8, t.protocol as u8, t.name, out) {
            Ok(n) => Ok(Some(n)),
            Err(e) => {
                if !matches!(e, DiagError::Kernel { .. }) {
                    // The socket may hold the rest of the failed dump: start afresh next time.
                    self.diag = None;
                }
                Err(e)
            }
        }
    }

    /// Reads /proc/net/`name` into the reused buffer. A missing table the kernel may simply not
    /// have (no SCTP, IPv6 off) reads as empty.
    fn read_proc(&mut self, name: &str, required: bool) -> Result<&str, SocketError> {
        let path = self.proc_net.join(name);
        self.text.clear();
        match read_into(&path, &mut self.text) {
            Ok(()) => Ok(&self.text),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {
                self.text.clear();
                Ok(&self.text)
            }
            Err(source) => Err(SocketError::ProcNet {
                path,
                source,
                netlink: None,
            }),
        }
    }
}

fn read_into(path: &Path, buf: &mut String) -> io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    f.read_to_string(buf)?;
    Ok(())
}

/// SCTP: every association, and the endpoints that are listening or have no association (a
/// connected one-to-one socket's endpoint would only repeat its association).
fn merge_sctp(eps: Parsed<SocketEntry>, assocs: Parsed<SocketEntry>, out: &mut Vec<SocketEntry>) {
    let with_assoc: HashSet<u64> = assocs.entries.iter().map(|a| a.inode).collect();
    out.extend(
        eps.entries
            .into_iter()
            .filter(|e| e.state == Some(TcpState::Listen) || !with_assoc.contains(&e.inode)),
    );
    out.extend(assocs.entries);
}

/// The ICMP "ping" socket (SOCK_DGRAM, IPPROTO_ICMP or ICMPV6) whose echo identifier is
/// `ident` and that is bound to `local` or to the unspecified address, from /proc/net/icmp(6):
/// sock_diag does not list ping sockets.
pub fn find_ping_socket(
    v6: bool,
    local: std::net::IpAddr,
    ident: u16,
) -> Option<engine::sockets::SocketEntry> {
    let path = if v6 { "/proc/net/icmp6" } else { "/proc/net/icmp" };
    let text = std::fs::read_to_string(path).ok()?;
    let proto = if v6 {
        engine::sockets::SockProto::Icmpv6
    } else {
        engine::sockets::SockProto::Icmp
    };
    crate::procnet::parse_inet(&text, proto, v6)
        .entries
        .into_iter()
        .find(|e| e.local.port() == ident && (e.local.ip() == local || e.local.ip().is_unspecified()))
}

/// Raw IP sockets of IP protocol `proto` that could have sent a packet from `local`: bound to
/// that address or to none (from /proc/net/raw or raw6; raw sockets of ICMP are how `ping`
/// works as root when ping sockets are off).
pub fn find_raw_sockets(v6: bool, proto: u8, local: std::net::IpAddr) -> Vec<engine::sockets::SocketEntry> {
    let path = if v6 { "/proc/net/raw6" } else { "/proc/net/raw" };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    crate::procnet::parse_inet(&text, engine::sockets::SockProto::Raw(0), v6)
        .entries
        .into_iter()
        .filter(|e| {
            e.proto == engine::sockets::SockProto::Raw(proto)
                && (e.local.ip() == local || e.local.ip().is_unspecified())
        })
        .collect()
}

/// AF_PACKET sockets now (/proc/net/packet): programs that send or receive whole frames.
pub fn packet_sockets() -> Vec<PacketSocket> {
    std::fs::read_to_string("/proc/net/packet")
        .map(|t| procnet::parse_packet(&t).entries)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sctp_merge_drops_endpoint_of_connected_socket() {
        let eps = procnet::parse_sctp_eps(
            "ffff1 ffff2 2 10 1 5000 0 10 10.0.0.1\n\
             ffff3 ffff4 2 1 1 40000 0 11 10.0.0.1\n\
             ffff5 ffff6 2 7 1 40001 0 12 10.0.0.1\n",
        );
        let assocs = procnet::parse_sctp_assocs(
            "ffff7 ffff4 2 1 3 0 1 0 0 0 11 40000 5000 10.0.0.1 <-> *10.0.0.2 \t 1 1\n\
             ffff8 ffff2 2 10 3 0 2 0 0 0 10 5000 40000 10.0.0.2 <-> *10.0.0.1 \t 1 1\n",
        );
        let mut out = Vec::new();
        merge_sctp(eps, assocs, &mut out);
        let inodes: Vec<u64> = out.iter().map(|e| e.inode).collect();
        assert_eq!(inodes, vec![10, 12, 11, 10]);
    }

    #[test]
    fn netlink_forbidden_reads_everything_from_proc() {
        let mut s = LinuxSockets::new();
        s.diag_forbidden = true; // as after socket(AF_NETLINK) failed in a sandbox
        let l = s.list().unwrap();
        assert_eq!(l.source, Source::ProcNet);
        assert!(l.tables.iter().all(|(_, s)| *s == Source::ProcNet));
        assert!(
            l.fallbacks.iter().any(|m| m.contains("not available here")),
            "{l:?}"
        );
    }

    #[test]
    fn missing_proc_is_a_clear_error() {
        let mut s = LinuxSockets::new();
        s.proc_net = PathBuf::from("/nonexistent/proc/net");
        let e = s.list_procnet().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/proc/net/tcp"), "{msg}");
        assert!(msg.contains("is /proc mounted"), "{msg}");
    }

    #[test]
    fn listing_has_every_table() {
        let mut s = LinuxSockets::new();
        let l = s.list().unwrap();
        let names: Vec<&str> = l.tables.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "tcp",
                "tcp6",
                "udp",
                "udp6",
                "udplite",
                "udplite6",
                "raw",
                "raw6",
                "icmp",
                "icmp6",
                "packet",
                "sctp/eps",
                "sctp/assocs"
            ]
        );
        let p = s.list_procnet().unwrap();
        assert!(p.tables.iter().all(|(_, s)| *s == Source::ProcNet));
        assert_eq!(p.source, Source::ProcNet);
    }
}
