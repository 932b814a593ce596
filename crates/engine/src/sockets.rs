//! What the operating system says about sockets and processes, as plain data. The `os` crate
//! fills these (netlink sock_diag, /proc, lsof, GetExtendedTcpTable ...); the engine joins them
//! with packets and turns changes into `connection` records.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Transport of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SockProto {
    Tcp,
    Udp,
    UdpLite,
    /// Raw IP socket with its protocol number (ICMP ping sockets show up as Icmp).
    Raw(u8),
    /// ICMP "ping" datagram sockets (net.ipv4.ping_group_range).
    Icmp,
    Icmpv6,
    Sctp,
    /// AF_PACKET socket (sends or captures whole frames).
    Packet,
}

impl SockProto {
    pub fn name(self) -> String {
        match self {
            SockProto::Tcp => "tcp".into(),
            SockProto::Udp => "udp".into(),
            SockProto::UdpLite => "udplite".into(),
            SockProto::Raw(p) => format!("raw/{p}"),
            SockProto::Icmp => "icmp".into(),
            SockProto::Icmpv6 => "icmpv6".into(),
            SockProto::Sctp => "sctp".into(),
            SockProto::Packet => "packet".into(),
        }
    }
}

/// TCP states as the Linux kernel numbers them (include/net/tcp_states.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

impl TcpState {
    pub fn from_kernel(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            12 => Self::NewSynRecv,
            _ => return None,
        })
    }
    /// "ESTABLISHED", "LISTEN" ... as `ss` and netstat print them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

/// The parts of Linux `struct tcp_info` a monitor shows (other systems fill what they can).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Smoothed round-trip time and its variance, microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Retransmissions of the current segment, and in total over the connection's life.
    pub retransmits: u8,
    pub total_retrans: u32,
    pub lost: u32,
    /// Bytes the peer acknowledged (sent by us), and bytes received.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub snd_cwnd: u32,
    /// Delivery rate estimate in bytes per second (0 when the kernel does not report it).
    pub delivery_rate: u64,
}

/// One socket as the OS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub proto: SockProto,
    pub local: SocketAddr,
    /// Unspecified (0.0.0.0:0 / [::]:0) for listening and unconnected sockets.
    pub remote: SocketAddr,
    /// TCP state; `None` for connectionless sockets (UDP "ESTABLISHED" means connected: see
    /// `connected`).
    pub state: Option<TcpState>,
    /// A UDP/raw socket with a fixed peer (connect()ed).
    pub connected: bool,
    pub uid: u32,
    /// Socket inode: joins the socket to the process holding it (0 when unknown, e.g. TIME_WAIT).
    pub inode: u64,
    pub rx_queue: u32,
    pub tx_queue: u32,
    pub tcp: Option<TcpInfo>,
    /// The interface a socket is bound to (SO_BINDTODEVICE), if any.
    pub interface: Option<u32>,
}

impl SocketEntry {
    /// Listening TCP socket, or an unconnected UDP socket bound to a port.
    pub fn is_listening(&self) -> bool {
        match self.proto {
            SockProto::Tcp => self.state == Some(TcpState::Listen),
            SockProto::Udp | SockProto::UdpLite | SockProto::Sctp => {
                !self.connected && self.remote.port() == 0 && self.local.port() != 0
            }
            _ => false,
        }
    }
    /// Bound to every interface (0.0.0.0 or ::).
    pub fn on_all_interfaces(&self) -> bool {
        self.local.ip().is_unspecified()
    }
}

/// One process, as much as the OS lets us see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    /// Short name (comm on Linux).
    pub name: String,
    pub exe: Option<PathBuf>,
    pub cmdline: Vec<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_time: Option<i64>,
    /// Container id (docker, podman, containerd ...) from the cgroup path.
    pub container: Option<String>,
    /// systemd unit ("nginx.service") from the cgroup path.
    pub unit: Option<String>,
    /// The executable was deleted after the process started.
    pub exe_deleted: bool,
    /// The executable lives in a temporary or cache directory (/tmp, /dev/shm, /var/tmp, ~/.cache).
    pub exe_in_temp: bool,
    /// The installed package that owns the executable (dpkg/rpm on Linux, the code signature
    /// on macOS), `None` when no package owns it, and not looked up when `package_checked` is false.
    pub package: Option<String>,
    pub package_checked: bool,
    /// Not read from this connection's socket (it closed before it could be looked up) but
    /// inferred: the same process had just opened a connection from the same address to the
    /// same remote endpoint.
    pub inferred: bool,
}

/// All sockets at one moment, with their owners where known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketSnapshot {
    /// Nanoseconds since the Unix epoch.
    pub taken_at: i64,
    pub sockets: Vec<SocketEntry>,
    /// Socket inode -> pid of a process holding it (the first found; a socket shared by a
    /// forking server belongs to all of them, the lowest pid is kept).
    pub owners: Vec<(u64, u32)>,
    pub processes: Vec<ProcessInfo>,
    /// Sockets whose inode no visible process holds (other users' processes without
    /// privilege, kernel sockets, TIME_WAIT).
    pub unattributed: usize,
}

/// A source of socket snapshots (netlink sock_diag or /proc on Linux; lsof/netstat elsewhere).
pub trait SocketTable {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Every socket now, with owners. `now` stamps the snapshot.
    fn snapshot(&mut self, now: i64) -> Result<SocketSnapshot, Self::Error>;
}
