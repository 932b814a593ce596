//! Netlink `NETLINK_SOCK_DIAG`: the kernel's socket table as binary dumps, readable without
//! privilege (what `ss` uses).
//!
//! One request per (family, protocol): `SOCK_DIAG_BY_FAMILY` with `NLM_F_DUMP` and an
//! `inet_diag_req_v2` asking for every state (and `INET_DIAG_INFO`, i.e. `struct tcp_info`, for
//! TCP). The reply is a series of datagrams holding `inet_diag_msg` messages, ended by
//! `NLMSG_DONE` (or `NLMSG_ERROR`).
//!
//! Everything that reads reply bytes is a plain, bounds-checked function over `&[u8]`
//! ([`parse_datagram`], [`parse_inet_diag_msg`], [`parse_tcp_info`]); only
//! [`SockDiag::open`] / [`SockDiag::dump`] make system calls.

use engine::sockets::{SockProto, SocketEntry, TcpInfo, TcpState};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// ---- Constants from the kernel's UAPI headers -------------------------------------------

/// linux/netlink.h
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// linux/sock_diag.h
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// linux/netlink.h: message types and flags.
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// The dump was interrupted by a change of the table; its contents may be inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// linux/inet_diag.h: attribute types in a reply.
pub const INET_DIAG_INFO: u16 = 2;
/// linux/inet_diag.h: request attribute carrying a protocol number above 255 (MPTCP); not
/// needed for the protocols asked here (TCP, UDP, UDP-Lite, raw are all < 256).
pub const INET_DIAG_REQ_PROTOCOL: u16 = 3;

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct inet_diag_req_v2`.
pub const INET_DIAG_REQ_V2_LEN: usize = 56;
/// Size of `struct inet_diag_msg`.
pub const INET_DIAG_MSG_LEN: usize = 72;
/// Size of `struct nlmsgerr`'s leading `int error` (followed by the offending header).
const NLMSGERR_ERROR_LEN: usize = 4;
/// Size of `struct rtattr` / `struct nlattr` header.
const RTA_HDRLEN: usize = 4;

/// Every TCP state bit (1 << state), as `ss -a` asks.
const ALL_STATES: u32 = 0xFFFF_FFFF;

// Offsets in `struct inet_diag_msg` (linux/inet_diag.h). `id` (struct inet_diag_sockid) starts
// at 4: sport@4 dport@6 (big-endian), src[16]@8, dst[16]@24, if@40, cookie[2]@44.
const MSG_FAMILY: usize = 0;
const MSG_STATE: usize = 1;
const MSG_TIMER: usize = 2;
const MSG_RETRANS: usize = 3;
const MSG_SPORT: usize = 4;
const MSG_DPORT: usize = 6;
const MSG_SRC: usize = 8;
const MSG_DST: usize = 24;
const MSG_IF: usize = 40;
const MSG_COOKIE: usize = 44;
const MSG_EXPIRES: usize = 52;
const MSG_RQUEUE: usize = 56;
const MSG_WQUEUE: usize = 60;
const MSG_UID: usize = 64;
const MSG_INODE: usize = 68;

// Offsets in `struct tcp_info` (linux/tcp.h, checked with offsetof against the installed
// header). The struct only grows at its end; older kernels send a shorter attribute, so a
// field is read only when it lies wholly inside the attribute.
//   u8  tcpi_state@0 ca_state@1 retransmits@2 probes@3 backoff@4 options@5 wscale@6 flags@7
//   u32 rto@8 ato@12 snd_mss@16 rcv_mss@20 unacked@24 sacked@28 lost@32 retrans@36
//       fackets@40 last_data_sent@44 last_ack_sent@48 last_data_recv@52 last_ack_recv@56
//       pmtu@60 rcv_ssthresh@64 rtt@68 rttvar@72 snd_ssthresh@76 snd_cwnd@80 advmss@84
//       reordering@88 rcv_rtt@92 rcv_space@96 total_retrans@100
//   u64 pacing_rate@104 max_pacing_rate@112 bytes_acked@120 bytes_received@128
//   u32 segs_out@136 segs_in@140 notsent_bytes@144 min_rtt@148 data_segs_in@152
//       data_segs_out@156
//   u64 delivery_rate@160 ...
pub const TCPI_RETRANSMITS: usize = 2;
pub const TCPI_LOST: usize = 32;
pub const TCPI_RTT: usize = 68;
pub const TCPI_RTTVAR: usize = 72;
pub const TCPI_SND_CWND: usize = 80;
pub const TCPI_TOTAL_RETRANS: usize = 100;
pub const TCPI_BYTES_ACKED: usize = 120;
pub const TCPI_BYTES_RECEIVED: usize = 128;
pub const TCPI_SEGS_OUT: usize = 136;
pub const TCPI_SEGS_IN: usize = 140;
pub const TCPI_DELIVERY_RATE: usize = 160;

/// A dump datagram not arriving within this time fails the dump (EAGAIN) instead of hanging.
const RECV_TIMEOUT_SECS: libc::time_t = 5;

/// Initial receive buffer. The kernel sizes dump datagrams after the reader's buffer, capped
/// near 32 KiB; a larger datagram makes the buffer grow (seen with MSG_PEEK | MSG_TRUNC).
pub const RECV_BUF_INITIAL: usize = 64 * 1024;

// ---- Plain parsing ---------------------------------------------------------------------------

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_ne(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// One `inet_diag_msg` with its attributes, as the kernel sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagMsg {
    pub family: u8,
    pub state: u8,
    pub timer: u8,
    pub retrans: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Bound interface index (0: none).
    pub ifindex: u32,
    pub cookie: u64,
    pub expires: u32,
    pub rqueue: u32,
    pub wqueue: u32,
    pub uid: u32,
    pub inode: u32,
    /// From the `INET_DIAG_INFO` attribute (TCP only).
    pub tcp_info: Option<TcpInfo>,
}

/// Reads the leading fields of a `struct tcp_info` attribute payload. Fields beyond the end of
/// `b` (an older kernel's shorter struct) stay 0.
pub fn parse_tcp_info(b: &[u8]) -> TcpInfo {
    let u32_at = |at| u32_ne(b, at).unwrap_or(0);
    let u64_at = |at| u64_ne(b, at).unwrap_or(0);
    TcpInfo {
        rtt_us: u32_at(TCPI_RTT),
        rttvar_us: u32_at(TCPI_RTTVAR),
        retransmits: b.get(TCPI_RETRANSMITS).copied().unwrap_or(0),
        total_retrans: u32_at(TCPI_TOTAL_RETRANS),
        lost: u32_at(TCPI_LOST),
        bytes_acked: u64_at(TCPI_BYTES_ACKED),
        bytes_received: u64_at(TCPI_BYTES_RECEIVED),
        segs_out: u32_at(TCPI_SEGS_OUT),
        segs_in: u32_at(TCPI_SEGS_IN),
        snd_cwnd: u32_at(TCPI_SND_CWND),
        delivery_rate: u64_at(TCPI_DELIVERY_RATE),
    }
}

/// Parses the payload of a `SOCK_DIAG_BY_FAMILY` reply message (after the `nlmsghdr`): the
/// fixed `inet_diag_msg`, then rtattrs. `None` when the fixed part is short or the family is
/// not AF_INET/AF_INET6. A truncated attribute ends the attribute walk (what came before is
/// kept).
pub fn parse_inet_diag_msg(p: &[u8]) -> Option<DiagMsg> {
    if p.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let family = p[MSG_FAMILY];
    let sport = u16_be(p, MSG_SPORT)?;
    let dport = u16_be(p, MSG_DPORT)?;
    let (src, dst) = match i32::from(family) {
        libc::AF_INET => {
            let s: [u8; 4] = p.get(MSG_SRC..MSG_SRC + 4)?.try_into().ok()?;
            let d: [u8; 4] = p.get(MSG_DST..MSG_DST + 4)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
        }
        libc::AF_INET6 => {
            let s: [u8; 16] = p.get(MSG_SRC..MSG_SRC + 16)?.try_into().ok()?;
            let d: [u8; 16] = p.get(MSG_DST..MSG_DST + 16)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
        }
        _ => return None,
    };
    let cookie_lo = u32_ne(p, MSG_COOKIE)?;
    let cookie_hi = u32_ne(p, MSG_COOKIE + 4)?;
    let mut msg = DiagMsg {
        family,
        state: p[MSG_STATE],
        timer: p[MSG_TIMER],
        retrans: p[MSG_RETRANS],
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        ifindex: u32_ne(p, MSG_IF)?,
        cookie: u64::from(cookie_lo) | (u64::from(cookie_hi) << 32),
        expires: u32_ne(p, MSG_EXPIRES)?,
        rqueue: u32_ne(p, MSG_RQUEUE)?,
        wqueue: u32_ne(p, MSG_WQUEUE)?,
        uid: u32_ne(p, MSG_UID)?,
        inode: u32_ne(p, MSG_INODE)?,
        tcp_info: None,
    };
    // rtattrs: { u16 len (header included), u16 type }, payload, padded to 4.
    let mut at = align4(INET_DIAG_MSG_LEN);
    while at + RTA_HDRLEN <= p.len() {
        let Some(len) = u16_ne(p, at).map(usize::from) else {
            break;
        };
        let Some(kind) = u16_ne(p, at + 2) else { break };
        if len < RTA_HDRLEN || at + len > p.len() {
            break;
        }
        if kind & 0x3FFF == INET_DIAG_INFO {
            msg.tcp_info = Some(parse_tcp_info(&p[at + RTA_HDRLEN..at + len]));
        }
        at += align4(len);
    }
    Some(msg)
}

/// What one received datagram held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    pub messages: Vec<DiagMsg>,
    /// `NLMSG_DONE` seen: the dump is complete.
    pub done: bool,
    /// Error from `NLMSG_ERROR`, or from a negative `NLMSG_DONE` payload (the kernel reports a
    /// failing dump that way): a positive errno.
    pub errno: Option<i32>,
    /// Messages of this sequence that could not be read (short, unknown family).
    pub malformed: usize,
    /// The kernel flagged the dump as interrupted (NLM_F_DUMP_INTR): the table changed while
    /// being dumped.
    pub interrupted: bool,
}

/// Splits one datagram into netlink messages and parses those of sequence `seq` (others, e.g.
/// left over from an earlier aborted dump, are ignored). A truncated or bogus message header
/// ends the walk and counts as malformed.
pub fn parse_datagram(buf: &[u8], seq: u32) -> Datagram {
    let mut out = Datagram::default();
    let mut at = 0usize;
    while at + NLMSG_HDRLEN <= buf.len() {
        let (Some(len), Some(kind), Some(flags), Some(mseq)) = (
            u32_ne(buf, at).map(|l| l as usize),
            u16_ne(buf, at + 4),
            u16_ne(buf, at + 6),
            u32_ne(buf, at + 8),
        ) else {
            break;
        };
        if len < NLMSG_HDRLEN || len > buf.len() - at {
            out.malformed += 1;
            break;
        }
        let payload = &buf[at + NLMSG_HDRLEN..at + len];
        at += align4(len);
        if mseq != seq {
            continue;
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match kind {
            NLMSG_NOOP => {}
            NLMSG_DONE => {
                out.done = true;
                if let Some(e) = payload.get(..4).and_then(|b| b.try_into().ok()) {
                    let e = i32::from_ne_bytes(e);
                    if e < 0 {
                        out.errno = Some(e.saturating_neg());
                    }
                }
                break;
            }
            NLMSG_ERROR => {
                // struct nlmsgerr { int error; struct nlmsghdr msg; }: 0 is an ACK.
                match payload.get(..NLMSGERR_ERROR_LEN).and_then(|b| b.try_into().ok()) {
                    Some(e) => {
                        let e = i32::from_ne_bytes(e);
                        if e != 0 {
                            out.errno = Some(e.saturating_neg());
                        }
                    }
                    None => out.errno = Some(libc::EPROTO),
                }
                out.done = true;
                break;
            }
            SOCK_DIAG_BY_FAMILY => match parse_inet_diag_msg(payload) {
                Some(m) => out.messages.push(m),
                None => out.malformed += 1,
            },
            _ => out.malformed += 1,
        }
    }
    out
}

/// Builds the `SOCK_DIAG_BY_FAMILY` dump request for `family` × `protocol`: every state, and
/// `tcp_info` when `tcp_info` is set.
pub fn build_request(family: u8, protocol: u8, tcp_info: bool, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;
    let mut b = Vec::with_capacity(len);
    // struct nlmsghdr
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills in ours
    // struct inet_diag_req_v2
    b.push(family);
    b.push(protocol);
    b.push(if tcp_info { 1 << (INET_DIAG_INFO - 1) } else { 0 }); // idiag_ext
    // pad, which raw_diag reads as sdiag_raw_protocol: it only filters single-socket lookups,
    // a dump returns every raw socket of the family whatever its protocol.
    b.push(if i32::from(protocol) == libc::IPPROTO_RAW {
        libc::IPPROTO_RAW as u8
    } else {
        0
    });
    b.extend_from_slice(&ALL_STATES.to_ne_bytes());
    b.extend_from_slice(&[0u8; 48]); // struct inet_diag_sockid: no filter
    debug_assert_eq!(b.len(), len);
    b
}

/// Builds a `SOCK_DIAG_BY_FAMILY` request for the one socket with this exact 4-tuple (no
/// dump: the kernel looks it up directly, which is fast whatever the table size).
pub fn build_find_request(
    protocol: u8,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    seq: u32,
) -> Vec<u8> {
    let len = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    let family = if local.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    };
    b.push(family);
    b.push(protocol);
    b.push(if i32::from(protocol) == libc::IPPROTO_TCP {
        1 << (INET_DIAG_INFO - 1)
    } else {
        0
    });
    b.push(0);
    b.extend_from_slice(&ALL_STATES.to_ne_bytes());
    // struct inet_diag_sockid: ports and addresses in network order, no interface, no cookie.
    b.extend_from_slice(&local.port().to_be_bytes());
    b.extend_from_slice(&remote.port().to_be_bytes());
    for a in [local.ip(), remote.ip()] {
        let mut words = [0u8; 16];
        match a {
            std::net::IpAddr::V4(v) => words[..4].copy_from_slice(&v.octets()),
            std::net::IpAddr::V6(v) => words.copy_from_slice(&v.octets()),
        }
        b.extend_from_slice(&words);
    }
    b.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if
    b.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    debug_assert_eq!(b.len(), len);
    b
}

/// Turns a diag message of a `protocol` dump into a socket entry.
///
/// Raw sockets: the source "port" is the socket's IP protocol (`SockProto::Raw(n)`), both
/// ports of the entry are 0 (as [`crate::procnet::parse_inet`] does).
pub fn to_socket_entry(m: &DiagMsg, protocol: u8) -> Option<SocketEntry> {
    let (proto, local, remote) = match i32::from(protocol) {
        libc::IPPROTO_TCP => (SockProto::Tcp, m.src, m.dst),
        libc::IPPROTO_UDP => (SockProto::Udp, m.src, m.dst),
        libc::IPPROTO_UDPLITE => (SockProto::UdpLite, m.src, m.dst),
        libc::IPPROTO_RAW => (
            SockProto::Raw(u8::try_from(m.src.port()).ok()?),
            SocketAddr::new(m.src.ip(), 0),
            SocketAddr::new(m.dst.ip(), 0),
        ),
        _ => return None,
    };
    let is_tcp = proto == SockProto::Tcp;
    Some(SocketEntry {
        proto,
        local,
        remote,
        state: if is_tcp {
            TcpState::from_kernel(m.state)
        } else {
            None
        },
        connected: if is_tcp { remote.port() != 0 } else { m.state == 1 },
        uid: m.uid,
        inode: u64::from(m.inode),
        rx_queue: m.rqueue,
        tx_queue: m.wqueue,
        tcp: if is_tcp { m.tcp_info } else { None },
        interface: (m.ifindex != 0).then_some(m.ifindex),
    })
}

// ---- The socket --------------------------------------------------------------------------

/// Why a dump failed. Each names the table and says what the user can do.
#[derive(Debug)]
pub enum DiagError {
    /// socket(AF_NETLINK, NETLINK_SOCK_DIAG) failed (a sandbox or container without netlink).
    Open(io::Error),
    Send {
        table: &'static str,
        source: io::Error,
    },
    Recv {
        table: &'static str,
        source: io::Error,
    },
    /// The kernel answered with an error (errno, positive).
    Kernel {
        table: &'static str,
        errno: i32,
    },
    /// The reply ended (or was unreadable) before NLMSG_DONE.
    Protocol {
        table: &'static str,
        what: &'static str,
    },
}

impl DiagError {
    /// The kernel does not offer this dump (diag module missing: ENOENT, EOPNOTSUPP,
    /// EPROTONOSUPPORT, EINVAL on old kernels). The caller should fall back to /proc/net.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            DiagError::Kernel { errno, .. }
                if [libc::ENOENT, libc::EOPNOTSUPP, libc::EPROTONOSUPPORT, libc::EINVAL,
                    libc::EAFNOSUPPORT].contains(errno)
        )
    }
}

impl fmt::Display for DiagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiagError::Open(e) => write!(
                f,
                "cannot open a netlink sock_diag socket ({e}); this sandbox or container may \
                 forbid netlink sockets: allow AF_NETLINK, or rely on /proc/net"
            ),
            DiagError::Send { table, source } => {
                write!(f, "sock_diag: sending the {table} dump request failed ({source})")
            }
            DiagError::Recv { table, source } if source.kind() == io::ErrorKind::WouldBlock => {
                write!(
                    f,
                    "sock_diag: the {table} dump stalled (nothing for {RECV_TIMEOUT_SECS} s); \
                     try again, the kernel may be under heavy load"
                )
            }
            DiagError::Recv { table, source } => {
                write!(
                    f,
                    "sock_diag: reading the {table} dump failed ({source}); try again"
                )
            }
            DiagError::Kernel { table, errno } => write!(
                f,
                "sock_diag: the kernel refused the {table} dump ({}); if the diag module is \
                 missing, load it (modprobe inet_diag tcp_diag udp_diag raw_diag) or rely \
                 on /proc/net",
                io::Error::from_raw_os_error(*errno)
            ),
            DiagError::Protocol { table, what } => write!(
                f,
                "sock_diag: the {table} dump {what}; this is a kernel/netvigil mismatch, \
                 please report it"
            ),
        }
    }
}

impl std::error::Error for DiagError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiagError::Open(e) | DiagError::Send { source: e, .. } => Some(e),
            DiagError::Recv { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// An open `NETLINK_SOCK_DIAG` socket, reused across dumps.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    pub fn open() -> Result<Self, DiagError> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(DiagError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A dump that stalls (it should not) must end in an error, not hang the monitor.
        let timeout = libc::timeval {
            tv_sec: RECV_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval and its size is passed; the fd is open.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(DiagError::Open(io::Error::last_os_error()));
        }
        Ok(SockDiag {
            fd,
            buf: vec![0; RECV_BUF_INITIAL],
            seq: 0,
        })
    }

    /// Dumps every socket of `family` (AF_INET / AF_INET6) × `protocol` (IPPROTO_TCP, _UDP,
    /// _UDPLITE, _RAW) into `out`. `table` names the dump in errors ("tcp6" ...). Returns the
    /// number of malformed messages skipped. On error nothing is added to `out`.
    ///
    /// After a `Send`, `Recv` or `Protocol` error the socket may still hold the rest of the
    /// failed dump (and the kernel refuses a new dump while one runs): drop this `SockDiag`
    /// and open a new one. After a `Kernel` error it can be reused.
    pub fn dump(
        &mut self,
        family: u8,
        protocol: u8,
        table: &'static str,
        out: &mut Vec<SocketEntry>,
    ) -> Result<usize, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = build_request(family, protocol, i32::from(protocol) == libc::IPPROTO_TCP, seq);
        self.send(&req)
            .map_err(|source| DiagError::Send { table, source })?;
        let start = out.len();
        let mut malformed = 0;
        loop {
            let n = self.recv().map_err(|source| DiagError::Recv { table, source })?;
            if n == 0 {
                out.truncate(start);
                return Err(DiagError::Protocol {
                    table,
                    what: "ended without NLMSG_DONE",
                });
            }
            let d = parse_datagram(&self.buf[..n], seq);
            malformed += d.malformed;
            out.extend(d.messages.iter().filter_map(|m| to_socket_entry(m, protocol)));
            if let Some(errno) = d.errno {
                out.truncate(start);
                return Err(DiagError::Kernel { table, errno });
            }
            if d.done {
                return Ok(malformed);
            }
        }
    }

    /// The socket with this exact 4-tuple (TCP or UDP), as the kernel finds it directly:
    /// `Ok(None)` when there is none (ENOENT). Used when a connection's first packet is seen,
    /// to name its owner while it still exists.
    pub fn find(
        &mut self,
        protocol: u8,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> Result<Option<SocketEntry>, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        // udp_dump_one looks the socket up as a received packet would find it: the request's
        // "source" is the remote end (net/ipv4/udp_diag.c); tcp_diag takes the local end.
        let req = if i32::from(protocol) == libc::IPPROTO_UDP {
            build_find_request(protocol, remote, local, seq)
        } else {
            build_find_request(protocol, local, remote, seq)
        };
        let table = "find";
        self.send(&req)
            .map_err(|source| DiagError::Send { table, source })?;
        let n = self.recv().map_err(|source| DiagError::Recv { table, source })?;
        let d = parse_datagram(&self.buf[..n], seq);
        if let Some(errno) = d.errno {
            if errno == libc::ENOENT {
                return Ok(None);
            }
            return Err(DiagError::Kernel { table, errno });
        }
        Ok(d.messages.iter().find_map(|m| to_socket_entry(m, protocol)))
    }

    fn send(&self, req: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t; // nl_pid 0: the kernel
        loop {
            // SAFETY: `req` is a live buffer of `req.len()` bytes; `addr` is a valid
            // sockaddr_nl and its size is passed; the fd is open for the life of `self`.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    req.as_ptr().cast(),
                    req.len(),
                    0,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `self.buf`, growing it first if the datagram is larger
    /// (MSG_PEEK | MSG_TRUNC reports the real length without consuming it).
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            let n = self.recv_raw(libc::MSG_PEEK | libc::MSG_TRUNC)?;
            if n > self.buf.len() {
                self.buf.resize(n.next_multiple_of(4096), 0);
                continue;
            }
            // The peek filled the buffer already; now consume the datagram.
            let m = self.recv_raw(libc::MSG_TRUNC)?;
            if m != n {
                // Cannot happen with one reader on the socket.
                return Err(io::Error::other(format!(
                    "netlink datagram changed size between peek ({n}) and read ({m})"
                )));
            }
            return Ok(n);
        }
    }

    fn recv_raw(&mut self, flags: i32) -> io::Result<usize> {
        loop {
            // SAFETY: `self.buf` is a live, writable buffer of `self.buf.len()` bytes; the fd
            // is open for the life of `self`.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    flags,
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(payload);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    #[allow(clippy::too_many_arguments)]
    fn diag_msg(
        family: u8,
        state: u8,
        sport: u16,
        dport: u16,
        src: &[u8],
        dst: &[u8],
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; INET_DIAG_MSG_LEN];
        b[0] = family;
        b[1] = state;
        b[2] = 1; // timer
        b[3] = 2; // retrans
        b[4..6].copy_from_slice(&sport.to_be_bytes());
        b[6..8].copy_from_slice(&dport.to_be_bytes());
        b[8..8 + src.len()].copy_from_slice(src);
        b[24..24 + dst.len()].copy_from_slice(dst);
        b[40..44].copy_from_slice(&3u32.to_ne_bytes());
        b[44..48].copy_from_slice(&0xdead_beefu32.to_ne_bytes());
        b[48..52].copy_from_slice(&0x1u32.to_ne_bytes());
        b[56..60].copy_from_slice(&7u32.to_ne_bytes());
        b[60..64].copy_from_slice(&9u32.to_ne_bytes());
        b[64..68].copy_from_slice(&uid.to_ne_bytes());
        b[68..72].copy_from_slice(&inode.to_ne_bytes());
        b
    }

    fn rtattr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((RTA_HDRLEN + payload.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(payload);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn tcp_info_bytes(len: usize) -> Vec<u8> {
        let mut t = vec![0u8; len];
        let mut put32 = |at: usize, v: u32| {
            if at + 4 <= t.len() {
                t[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            }
        };
        put32(TCPI_RTT, 1234);
        put32(TCPI_RTTVAR, 56);
        put32(TCPI_LOST, 3);
        put32(TCPI_SND_CWND, 10);
        put32(TCPI_TOTAL_RETRANS, 4);
        put32(TCPI_SEGS_OUT, 100);
        put32(TCPI_SEGS_IN, 90);
        let mut put64 = |at: usize, v: u64| {
            if at + 8 <= t.len() {
                t[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            }
        };
        put64(TCPI_BYTES_ACKED, 5000);
        put64(TCPI_BYTES_RECEIVED, 6000);
        put64(TCPI_DELIVERY_RATE, 1 << 33);
        if t.len() > TCPI_RETRANSMITS {
            t[TCPI_RETRANSMITS] = 2;
        }
        t
    }

    #[test]
    fn request_layout() {
        let r = build_request(libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8, true, 77);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_ne(&r, 0), Some(72));
        assert_eq!(u16_ne(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_ne(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_ne(&r, 8), Some(77));
        assert_eq!(&r[16..20], &[10, 6, 2, 0]);
        assert_eq!(u32_ne(&r, 20), Some(u32::MAX));
        let r = build_request(libc::AF_INET as u8, libc::IPPROTO_RAW as u8, false, 1);
        assert_eq!(&r[16..20], &[2, 255, 0, 255]);
    }

    #[test]
    fn tcp_v4_with_info() {
        let mut p = diag_msg(2, 1, 8080, 41652, &[127, 0, 0, 1], &[127, 0, 0, 2], 1000, 4242);
        p.extend(rtattr(7, &[1, 2, 3])); // an attribute we skip (shutdown), odd length
        p.extend(rtattr(INET_DIAG_INFO, &tcp_info_bytes(232)));
        let d = parse_datagram(&nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 5, &p), 5);
        assert_eq!((d.messages.len(), d.malformed, d.done), (1, 0, false));
        let m = &d.messages[0];
        assert_eq!(m.src, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(m.dst, "127.0.0.2:41652".parse().unwrap());
        assert_eq!(
            (m.timer, m.retrans, m.ifindex, m.cookie),
            (1, 2, 3, 0x1_dead_beef)
        );
        assert_eq!((m.rqueue, m.wqueue, m.uid, m.inode), (7, 9, 1000, 4242));
        let e = to_socket_entry(m, libc::IPPROTO_TCP as u8).unwrap();
        assert_eq!(e.state, Some(TcpState::Established));
        assert_eq!(e.interface, Some(3));
        assert_eq!(
            e.tcp,
            Some(TcpInfo {
                rtt_us: 1234,
                rttvar_us: 56,
                retransmits: 2,
                total_retrans: 4,
                lost: 3,
                bytes_acked: 5000,
                bytes_received: 6000,
                segs_out: 100,
                segs_in: 90,
                snd_cwnd: 10,
                delivery_rate: 1 << 33,
            })
        );
    }

    #[test]
    fn short_tcp_info_from_old_kernel() {
        // A 104-byte tcp_info (pre-4.1 kernels): fields from bytes_acked on are absent.
        let t = parse_tcp_info(&tcp_info_bytes(104));
        assert_eq!((t.rtt_us, t.total_retrans, t.snd_cwnd), (1234, 4, 10));
        assert_eq!((t.bytes_acked, t.segs_in, t.delivery_rate), (0, 0, 0));
        // A field cut in the middle is not read.
        let t = parse_tcp_info(&tcp_info_bytes(TCPI_RTT + 2));
        assert_eq!(t.rtt_us, 0);
        assert_eq!(parse_tcp_info(&[]), TcpInfo::default());
    }

    #[test]
    fn udp_v6_and_raw() {
        let mut one = [0u8; 16];
        one[15] = 1;
        let p = diag_msg(10, 1, 5353, 53, &one, &one, 0, 99);
        let m = parse_inet_diag_msg(&p).unwrap();
        let e = to_socket_entry(&m, libc::IPPROTO_UDP as u8).unwrap();
        assert_eq!(e.local, "[::1]:5353".parse().unwrap());
        assert!(e.connected);
        assert_eq!(e.state, None);
        let p = diag_msg(2, 7, 1, 0, &[0; 4], &[0; 4], 0, 5);
        let m = parse_inet_diag_msg(&p).unwrap();
        let e = to_socket_entry(&m, libc::IPPROTO_RAW as u8).unwrap();
        assert_eq!(e.proto, SockProto::Raw(1));
        assert_eq!(e.local, "0.0.0.0:0".parse().unwrap());
        assert!(!e.connected);
        // Unknown family, short message.
        assert!(parse_inet_diag_msg(&diag_msg(1, 1, 0, 0, &[], &[], 0, 0)).is_none());
        assert!(parse_inet_diag_msg(&p[..71]).is_none());
    }

    #[test]
    fn multipart_done_and_errors() {
        let a = diag_msg(2, 10, 80, 0, &[0; 4], &[0; 4], 0, 1);
        let b = diag_msg(2, 1, 80, 999, &[1, 2, 3, 4], &[5, 6, 7, 8], 0, 2);
        let mut dg = nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 9, &a);
        dg.extend(nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 8, &b)); // other sequence: ignored
        dg.extend(nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI | NLM_F_DUMP_INTR, 9, &b));
        let d = parse_datagram(&dg, 9);
        assert_eq!(d.messages.len(), 2);
        assert!(d.interrupted && !d.done);

        let d = parse_datagram(&nlmsg(NLMSG_DONE, NLM_F_MULTI, 9, &0i32.to_ne_bytes()), 9);
        assert!(d.done);
        assert_eq!(d.errno, None);
        // A dump that failed reports the errno in NLMSG_DONE.
        let d = parse_datagram(&nlmsg(NLMSG_DONE, NLM_F_MULTI, 9, &(-2i32).to_ne_bytes()), 9);
        assert_eq!(d.errno, Some(libc::ENOENT));
        // NLMSG_ERROR with the offending header after the errno.
        let mut err = (-libc::EACCES).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0u8; 16]);
        let d = parse_datagram(&nlmsg(NLMSG_ERROR, 0, 9, &err), 9);
        assert_eq!((d.done, d.errno), (true, Some(libc::EACCES)));
        let d = parse_datagram(&nlmsg(NLMSG_ERROR, 0, 9, &[1]), 9);
        assert_eq!(d.errno, Some(libc::EPROTO));
        // An ACK (error 0) is not an error.
        let d = parse_datagram(&nlmsg(NLMSG_ERROR, 0, 9, &0i32.to_ne_bytes()), 9);
        assert_eq!((d.done, d.errno), (true, None));
    }

    #[test]
    fn bogus_lengths() {
        let a = diag_msg(2, 10, 80, 0, &[0; 4], &[0; 4], 0, 1);
        let good = nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &a);
        // nlmsg_len beyond the datagram; below the header size; cut datagram.
        let mut long = good.clone();
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parse_datagram(&long, 1).malformed, 1);
        let mut tiny = good.clone();
        tiny[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_datagram(&tiny, 1).malformed, 1);
        assert_eq!(parse_datagram(&good[..50], 1).malformed, 1);
        assert_eq!(parse_datagram(&good[..10], 1), Datagram::default());
        // An rtattr running past the message ends the walk, keeps the message.
        let mut p = a.clone();
        p.extend_from_slice(&200u16.to_ne_bytes());
        p.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        p.extend_from_slice(&[0; 8]);
        let m = parse_inet_diag_msg(&p).unwrap();
        assert_eq!(m.tcp_info, None);
        // A zero-length rtattr does not loop forever.
        let mut p = a.clone();
        p.extend_from_slice(&[0; 8]);
        assert!(parse_inet_diag_msg(&p).is_some());
    }

    /// Deterministic byte fuzz: no input panics the datagram parser.
    #[test]
    fn fuzz_datagram() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut base = diag_msg(2, 1, 1, 2, &[1, 2, 3, 4], &[4, 3, 2, 1], 0, 7);
        base.extend(rtattr(INET_DIAG_INFO, &tcp_info_bytes(232)));
        let base = nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, &base);
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 6 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let cut = (next() as usize) % (b.len() + 1);
            parse_datagram(&b[..cut], 1);
            parse_datagram(&b, (next() % 2) as u32);
        }
    }

    /// The dump works against this machine's kernel (no privilege needed).
    #[test]
    fn live_dump_tcp4() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut d = match SockDiag::open() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
        let mut out = Vec::new();
        d.dump(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, "tcp", &mut out)
            .unwrap();
        assert!(
            out.iter()
                .any(|e| e.local.port() == port && e.state == Some(TcpState::Listen))
        );
        // A tiny receive buffer grows to the datagram's size (MSG_PEEK | MSG_TRUNC).
        d.buf = vec![0; 64];
        let mut small = Vec::new();
        d.dump(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, "tcp", &mut small)
            .unwrap();
        assert!(small.iter().any(|e| e.local.port() == port));
        assert!(d.buf.len() > 64);
        // The socket is reusable for a second dump.
        let mut again = Vec::new();
        d.dump(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, "tcp", &mut again)
            .unwrap();
        assert!(again.iter().any(|e| e.local.port() == port));
    }
}
