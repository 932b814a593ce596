//! The live pipeline: capture (AF_PACKET) and the socket table, into the engine, out as records.
//!
//! Threads: one capture thread per process (it owns the rings) feeding batches of frames through
//! a bounded channel; the main thread owns the engine, the connection tracker and the socket
//! table, and writes records. What a full channel drops is counted and reported.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use engine::connections::{ConnTracker, ConnectionRecord, Direction};
use engine::decode::L4;
use engine::flow::FlowConfig;
use engine::record::Endpoint;
use engine::sockets::{ProcessInfo, SockProto, SocketEntry, SocketSnapshot};
use engine::{Engine, EngineConfig, Frame, Record};

use crate::judging::Judging;
use crate::sinks::{LiveStore, SelfLimits, SelfSample, SelfWatch, Sinks, start_web};
use crate::web::metrics::Metrics;
use os::linux::afpacket::{AfPacket, CaptureOpenError, Interfaces, RingConfig, SynWatcher};
use os::linux::caps::{self, Cap};
use os::linux::process::ProcessScanner;
use os::linux::sock_diag::SockDiag;
use os::linux::sockets::LinuxSockets;
use wire::capture::LinkType;

/// `netvigil run` options (see `main.rs`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub events: Option<String>,
    pub interfaces: Vec<String>,
    pub filter: Option<String>,
    pub no_capture: bool,
    pub poll_ms: Option<u64>,
    pub duration: Option<f64>,
    pub max_flows: usize,
    pub data_dir: Option<PathBuf>,
    /// Look up PTR names of remote addresses (the "no reverse DNS" flag needs it).
    pub rdns: bool,
    /// `--config` (default: the usual place; a missing default file means defaults).
    pub config: Option<PathBuf>,
    pub no_web: bool,
    /// Do not keep history in the database.
    pub no_store: bool,
    /// Dashboard address (overrides the config's `web.listen`).
    pub listen: Option<std::net::SocketAddr>,
    /// `--gateway`: report the LAN's devices and their flows.
    pub gateway: bool,
    /// `--lan`: the LAN's prefixes (gateway mode).
    pub lan: Vec<engine::lan::Prefix>,
}

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

struct OwnedFrame {
    ts: i64,
    /// The interface the frame was captured on (0: unknown).
    ifindex: u32,
    link: LinkType,
    orig_len: u32,
    data: Vec<u8>,
}

/// Gives the engine the names of the capture's interfaces: those known when the capture
/// opened, and any other ifindex looked up once, when its first frame arrives (an interface
/// that appeared later, with a capture on all interfaces).
#[derive(Default)]
struct IfaceNames {
    looked_up: std::collections::HashSet<u32>,
    last: u32,
}

impl IfaceNames {
    fn ingest(&mut self, engine: &mut Engine, f: &OwnedFrame, out: &mut Vec<Record>) {
        if f.ifindex != self.last {
            self.last = f.ifindex;
            if f.ifindex != 0
                && self.looked_up.insert(f.ifindex)
                && engine.iface_name(f.ifindex).is_none()
                && let Some(name) = os::linux::afpacket::interface_name(f.ifindex)
            {
                engine.set_iface_name(f.ifindex, &name);
            }
        }
        engine.ingest_on(
            &Frame {
                ts: f.ts,
                link: f.link,
                orig_len: f.orig_len,
                data: &f.data,
            },
            f.ifindex,
            out,
        );
    }
}

/// What the capture thread hands over: frames, and the owners it found for connections this
/// machine opened, looked up the moment their first packet left (a process that lives 20 ms is
/// still there then; a poll of the socket table would miss it).
#[derive(Default)]
struct Batch {
    frames: Vec<OwnedFrame>,
    opened: Vec<Opened>,
}

/// Finds the owner of a connection from the packets this machine sends: for an outbound TCP
/// connection its SYN, for an inbound one the first packet after the SYN-ACK (the accepted
/// socket exists by then), for UDP the first datagram of a 4-tuple. The kernel's socket for that
/// exact 4-tuple comes from sock_diag, then the process holding it (newest processes first).
struct FirstPacketOwners {
    diag: Option<SockDiag>,
    procs: ProcessScanner,
    udp_seen: HashSet<(SocketAddr, SocketAddr)>,
    /// Inbound TCP connections whose SYN-ACK we sent: tries left to find the accepted socket.
    inbound: HashMap<(SocketAddr, SocketAddr), u8>,
    /// A SYN watcher thread handles outbound SYNs.
    syn_watcher: bool,
    /// The last owner found per (local address, remote endpoint), for connections that close
    /// before their socket can be read (hundreds a second from one client).
    recent: HashMap<(std::net::IpAddr, SocketAddr), (ProcessInfo, Instant)>,
    /// Inodes of netvigil's own sockets, and when /proc/self/fd was last read.
    own: HashSet<u64>,
    own_read: Option<Instant>,
}

type Opened = (i64, Direction, SocketEntry, Option<ProcessInfo>);

/// Most 4-tuples remembered as "owner already looked up" (UDP, ping) or "SYN-ACK sent, socket
/// not found yet" (inbound TCP); past it the set starts over (a few lookups are repeated).
/// Each set holds only recent first packets: 16,384 is a minute at 270 new flows a second,
/// and keeps the set under 2 MiB (65,536 cost up to 8 MiB at its largest).
const SEEN_MAX: usize = 16_384;

impl FirstPacketOwners {
    /// An echo request from a ping socket: its owner, from /proc/net/icmp (ping sockets are
    /// not in sock_diag), once per (local, remote, identifier).
    fn on_ping(
        &mut self,
        ts: i64,
        v6: bool,
        icmp_type: u8,
        id: u16,
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
    ) -> Option<Opened> {
        if icmp_type != if v6 { 128 } else { 8 } {
            return None;
        }
        let (local, remote) = (SocketAddr::new(src, id), SocketAddr::new(dst, id));
        if self.udp_seen.len() > SEEN_MAX {
            self.udp_seen.clear();
        }
        if !self.udp_seen.insert((local, remote)) {
            return None;
        }
        let Some(entry) = os::linux::sockets::find_ping_socket(v6, src, id) else {
            // Not a ping socket: a raw ICMP socket (ping run as root, or with CAP_NET_RAW,
            // where ping sockets are off).
            return self.on_raw(ts, v6, if v6 { 58 } else { 1 }, local, remote);
        };
        let pid = self.procs.find_inode(entry.inode);
        let process = pid.and_then(|p| self.procs.info(p));
        Some((
            ts,
            Direction::Outbound,
            SocketEntry {
                local,
                remote,
                connected: true,
                ..entry
            },
            process,
        ))
    }

    /// A packet of IP protocol `proto` that no TCP/UDP/ping socket sent: the raw socket of that
    /// protocol that sent it, from /proc/net/raw. Several processes with such a socket: no
    /// owner (counted as unattributed), never a guess.
    fn on_raw(
        &mut self,
        ts: i64,
        v6: bool,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<Opened> {
        let candidates = os::linux::sockets::find_raw_sockets(v6, proto, local.ip());
        let pid = self.only_holder(candidates.iter().map(|e| e.inode))?;
        let entry = candidates.into_iter().next()?;
        Some((
            ts,
            Direction::Outbound,
            SocketEntry {
                local,
                remote,
                connected: true,
                ..entry
            },
            self.procs.info(pid),
        ))
    }

    /// A frame that left this machine with no socket behind it: sent from an AF_PACKET socket
    /// (a DHCP client, a packet generator). When exactly one other process holds a packet
    /// socket, it is named as the owner, marked `inferred` (the kernel does not say which packet
    /// socket sent a frame).
    fn on_packet_socket(
        &mut self,
        ts: i64,
        proto: SockProto,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<Opened> {
        let socks = os::linux::sockets::packet_sockets();
        let pid = self.only_holder(socks.iter().map(|s| s.inode))?;
        let s = socks
            .iter()
            .find(|s| self.procs.find_inode(s.inode) == Some(pid))?;
        let process = self.procs.info(pid).map(|p| ProcessInfo { inferred: true, ..p });
        Some((
            ts,
            Direction::Outbound,
            SocketEntry {
                proto,
                local,
                remote,
                state: None,
                connected: true,
                uid: s.uid,
                inode: s.inode,
                rx_queue: 0,
                tx_queue: 0,
                tcp: None,
                interface: (s.ifindex != 0).then_some(s.ifindex),
            },
            process,
        ))
    }

    /// `Some(our pid)` when `inode` is one of netvigil's own sockets (webhook deliveries, the
    /// dashboard's accepted connections). Checked before the walk of every process's fds, which
    /// on a busy machine takes a few hundred milliseconds for an older process such as this one
    /// and would hold up the SYNs behind it (a short-lived client would be gone by its turn).
    /// /proc/self/fd is re-read at most every 20 ms.
    fn own_socket(&mut self, inode: u64) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        if !self.own.contains(&inode)
            && self
                .own_read
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(20))
        {
            self.own_read = Some(Instant::now());
            self.own.clear();
            if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                for fd in fds.flatten() {
                    if let Ok(t) = std::fs::read_link(fd.path())
                        && let Some(i) = t.to_str().and_then(os::linux::process::parse_socket_link)
                    {
                        self.own.insert(i);
                    }
                }
            }
        }
        self.own.contains(&inode).then(std::process::id)
    }

    /// The one process (other than netvigil) holding any of these sockets.
    fn only_holder(&mut self, inodes: impl Iterator<Item = u64>) -> Option<u32> {
        let me = std::process::id();
        let mut found = None;
        for inode in inodes {
            match self.procs.find_inode(inode) {
                Some(pid) if pid == me => {}
                Some(pid) if found.is_none_or(|f| f == pid) => found = Some(pid),
                Some(_) => return None,
                None => {}
            }
        }
        found
    }

    fn new() -> Self {
        let mut me = Self::empty();
        // Our own facts now: the first lookup of an unpackaged binary walks the package
        // database (a few hundred ms), and netvigil's own connections (webhook deliveries, the
        // dashboard's clients) would otherwise pay it in the middle of traffic, holding up the
        // packets queued behind it (a short-lived client is gone by its turn).
        let _ = me.procs.info(std::process::id());
        me
    }

    /// Without the warm-up (when there is no capture to serve).
    fn empty() -> Self {
        let procs = ProcessScanner::new();
        Self {
            diag: SockDiag::open().ok(),
            procs,
            udp_seen: HashSet::new(),
            inbound: HashMap::new(),
            syn_watcher: false,
            recent: HashMap::new(),
            own: HashSet::new(),
            own_read: None,
        }
    }

    fn on_outgoing(&mut self, ts: i64, link: LinkType, data: &[u8]) -> Option<Opened> {
        let d = engine::decode::decode(link, data);
        let net = d.net?;
        if let L4::Icmp {
            v6,
            icmp_type,
            echo_id: Some(id),
            ..
        } = net.l4
        {
            return self.on_ping(ts, v6, icmp_type, id, net.src, net.dst);
        }
        if let L4::Other { .. } = net.l4 {
            let proto = net.proto.0;
            let (local, remote) = (SocketAddr::new(net.src, 0), SocketAddr::new(net.dst, 0));
            if self.udp_seen.len() > SEEN_MAX {
                self.udp_seen.clear();
            }
            if !self.udp_seen.insert((local, remote)) {
                return None;
            }
            return self.on_raw(ts, engine::is_v6(&net.src), proto, local, remote);
        }
        let (proto, sport, dport, flags) = match net.l4 {
            // Outbound SYNs are the SYN watcher's (it sees them sooner).
            L4::Tcp { flags, .. } if self.syn_watcher && flags & 0x12 == 0x02 => return None,
            L4::Tcp {
                sport, dport, flags, ..
            } => (6u8, sport, dport, flags),
            L4::Udp { sport, dport, .. } => (17u8, sport, dport, 0),
            _ => return None,
        };
        let local = SocketAddr::new(net.src, sport);
        let remote = SocketAddr::new(net.dst, dport);
        let direction = if proto == 6 {
            match flags & 0x12 {
                0x02 => Direction::Outbound,
                0x12 => {
                    if self.inbound.len() > SEEN_MAX {
                        self.inbound.clear();
                    }
                    self.inbound.insert((local, remote), 8);
                    return None;
                }
                _ => {
                    let tries = self.inbound.get_mut(&(local, remote))?;
                    *tries -= 1;
                    if *tries == 0 {
                        self.inbound.remove(&(local, remote));
                    }
                    Direction::Inbound
                }
            }
        } else {
            if self.udp_seen.len() > SEEN_MAX {
                self.udp_seen.clear();
            }
            if !self.udp_seen.insert((local, remote)) {
                return None;
            }
            Direction::Outbound
        };
        let found = self.diag.as_mut()?.find(proto, local, remote).ok().flatten();
        let no_socket = found.is_none();
        let Some(entry) = found.filter(|e| e.inode != 0 || direction == Direction::Inbound) else {
            // Gone already (or TIME_WAIT): the process that just connected from here to there.
            if direction != Direction::Outbound {
                return None;
            }
            let recent = self
                .recent
                .get(&(local.ip(), remote))
                .filter(|(_, at)| at.elapsed() <= Duration::from_secs(2));
            if recent.is_none() && no_socket {
                // No socket had this 4-tuple at all: a frame built by a packet socket.
                let sp = if proto == 6 {
                    SockProto::Tcp
                } else {
                    SockProto::Udp
                };
                return self.on_packet_socket(ts, sp, local, remote);
            }
            let (p, at) = self.recent.get(&(local.ip(), remote))?;
            if at.elapsed() > Duration::from_secs(2) {
                return None;
            }
            let process = ProcessInfo {
                inferred: true,
                ..p.clone()
            };
            let entry = SocketEntry {
                proto: if proto == 6 {
                    SockProto::Tcp
                } else {
                    SockProto::Udp
                },
                local,
                remote,
                state: None,
                connected: true,
                uid: process.uid.unwrap_or(0),
                inode: 0,
                rx_queue: 0,
                tx_queue: 0,
                tcp: None,
                interface: None,
            };
            return Some((ts, direction, entry, Some(process)));
        };
        if proto == 17 && !entry.connected && entry.remote.port() == 0 {
            // An unconnected UDP socket (a server answering): not a connection it opened.
            return None;
        }
        if direction == Direction::Inbound {
            if entry.inode == 0 {
                return None; // not accepted yet: try again on the next packet
            }
            self.inbound.remove(&(local, remote));
        }
        let pid = self
            .own_socket(entry.inode)
            .or_else(|| self.procs.find_inode(entry.inode));
        let mut process = pid.and_then(|p| self.procs.info(p));
        if process.is_none() && direction == Direction::Outbound {
            // The socket closed between the two lookups: infer, as above.
            process = self
                .recent
                .get(&(local.ip(), remote))
                .filter(|(_, at)| at.elapsed() <= Duration::from_secs(2))
                .map(|(p, _)| ProcessInfo {
                    inferred: true,
                    ..p.clone()
                });
        }
        if let (Some(p), Direction::Outbound) = (process.as_ref().filter(|p| !p.inferred), direction) {
            if self.recent.len() > 4096 {
                self.recent.clear();
            }
            self.recent
                .insert((local.ip(), remote), (p.clone(), Instant::now()));
        }
        let entry = SocketEntry { remote, ..entry };
        Some((ts, direction, entry, process))
    }
}

/// Everything the socket table says, taken now.
pub struct SocketSource {
    sockets: LinuxSockets,
    procs: ProcessScanner,
}

impl SocketSource {
    pub fn new() -> Self {
        Self {
            sockets: LinuxSockets::new(),
            procs: ProcessScanner::new(),
        }
    }

    pub fn snapshot(&mut self) -> Result<SocketSnapshot> {
        let taken_at = now_nanos();
        let listing = self.sockets.list().context("listing sockets")?;
        let inodes: Vec<u64> = listing
            .sockets
            .iter()
            .map(|s| s.inode)
            .filter(|&i| i != 0)
            .collect();
        let owners = self.procs.owners(&inodes);
        let owned: HashSet<u64> = owners.found.iter().map(|(i, _)| *i).collect();
        let unattributed = listing
            .sockets
            .iter()
            .filter(|s| s.inode != 0 && !owned.contains(&s.inode))
            .count();
        let pids: HashSet<u32> = owners.found.iter().map(|(_, p)| *p).collect();
        let mut pids: Vec<u32> = pids.into_iter().collect();
        pids.sort_unstable();
        let processes: Vec<ProcessInfo> = pids.into_iter().filter_map(|p| self.procs.info(p)).collect();
        Ok(SocketSnapshot {
            taken_at,
            sockets: listing.sockets,
            owners: owners.found,
            processes,
            unattributed,
        })
    }
}

/// Which process holds the local end of a flow: looked up when the flow starts, kept until its
/// record is written.
#[derive(Default)]
struct Attribution {
    by_flow: HashMap<(u8, Endpoint, Endpoint), ProcessInfo>,
    unattributed: u64,
}

fn sock_proto(l4: u8) -> Option<SockProto> {
    match l4 {
        6 => Some(SockProto::Tcp),
        17 => Some(SockProto::Udp),
        132 => Some(SockProto::Sctp),
        _ => None,
    }
}

impl Attribution {
    fn lookup(&self, tracker: &ConnTracker, proto: u8, a: Endpoint, b: Endpoint) -> Option<ProcessInfo> {
        let p = sock_proto(proto)?;
        tracker
            .owner(p, SocketAddr::new(a.ip, a.port))
            .or_else(|| tracker.owner(p, SocketAddr::new(b.ip, b.port)))
            .cloned()
    }
}

pub fn run(flags: &RunOptions) -> Result<ExitCode> {
    // The config file, then the command line on top of it.
    let (mut conf, _) = match crate::config::Config::load(flags.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netvigil: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    crate::logging::set_config_level(conf.log.level);
    conf.apply_overrides(&crate::config::Overrides {
        interfaces: flags.interfaces.clone(),
        filter: flags.filter.clone(),
        no_capture: flags.no_capture,
        poll_ms: flags.poll_ms,
        data_dir: flags.data_dir.clone(),
        no_web: flags.no_web,
        listen: flags.listen,
        gateway: flags.gateway,
        lan: flags.lan.clone(),
        ..Default::default()
    });
    let opts = &RunOptions {
        interfaces: conf.capture.interfaces.clone(),
        filter: conf.capture.filter.clone(),
        no_capture: !conf.capture.enabled,
        poll_ms: conf.capture.poll_ms,
        data_dir: conf.store.data_dir.clone(),
        ..flags.clone()
    };
    let stop = os::linux::signals::stop_flag().context("installing signal handlers")?;
    let deadline = opts.duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
    // The owner lookups of the capture and SYN-watcher threads, built before their sockets open
    // (each warms up netvigil's own process facts, see FirstPacketOwners::new): no packet waits
    // for that, and "capturing" below is said when the threads are ready.
    let (syn_owners, cap_owners) = if opts.no_capture {
        (FirstPacketOwners::empty(), FirstPacketOwners::empty())
    } else {
        (FirstPacketOwners::new(), FirstPacketOwners::new())
    };
    // Open the capture first, then drop the privileges it needed.
    let capture = if opts.no_capture {
        None
    } else {
        let ifaces = if opts.interfaces.is_empty() {
            Interfaces::All
        } else {
            Interfaces::Named(opts.interfaces.clone())
        };
        let filter = match &opts.filter {
            Some(f) => Some(
                os::linux::afpacket::compile_filter(f).with_context(|| format!("capture filter {f:?}"))?,
            ),
            None => None,
        };
        // Frames reach the engine within a few milliseconds (the ring hands over a block when
        // it fills or after this timeout). 4 MiB of ring (16 blocks of 256 KiB, each larger
        // than the largest GRO frame): the kernel's ring pages are all resident, and the
        // capture thread only copies frames out, so 8 MiB was 4 MiB of memory for nothing at
        // a workstation's rates (4 MiB is 33 ms of a saturated 1 Gbit/s link).
        let ring = RingConfig {
            block_timeout_ms: 2,
            // Gateway mode on a mirror port: the frames are addressed to other machines.
            promiscuous: conf.capture.gateway,
            block_size: 256 << 10,
            block_count: 16,
            ..RingConfig::default()
        };
        match AfPacket::open(&ifaces, &ring, filter.as_deref()) {
            Ok(c) => Some(c),
            Err(e @ CaptureOpenError::NeedsPrivilege { .. }) => {
                tracing::warn!("{e}");
                None
            }
            Err(e) => return Err(e).context("opening packet capture"),
        }
    };
    // The SYN watcher is a second packet socket: open it before the privilege goes.
    let watcher = if capture.is_some() {
        SynWatcher::open().ok()
    } else {
        None
    };
    if let Err(e) = caps::keep_only(&[Cap::SysPtrace, Cap::DacReadSearch]) {
        tracing::warn!(error = %e, "could not drop capabilities");
    }
    let poll_ms = opts
        .poll_ms
        .unwrap_or(if capture.is_some() { 5000 } else { 2000 });
    match &capture {
        Some(c) => {
            let names: Vec<String> = c.interfaces().into_iter().map(|(n, _, _)| n).collect();
            let on = if names.is_empty() {
                "all interfaces".to_string()
            } else {
                names.join(", ")
            };
            tracing::info!(
                interfaces = %on,
                poll_ms,
                "capturing packets on {on} and reading the socket table every {poll_ms} ms"
            );
        }
        None => tracing::info!(
            poll_ms,
            "socket-table mode: no packet capture, so connections and their bytes come from the socket table every {} ms{} (run `netvigil doctor` to see how to enable capture)",
            poll_ms,
            if opts.poll_ms.is_none() {
                format!(", up to {} ms while nothing changes", poll_ms * 2)
            } else {
                String::new()
            }
        ),
    }
    let capture_is_off = capture.is_none();

    let stdout = io::stdout();
    let mut out: Box<dyn Write> = match opts.events.as_deref() {
        Some("-") => Box::new(BufWriter::new(stdout.lock())),
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating the events file {path}"))?,
        )),
        None => Box::new(io::sink()),
    };

    let dropped_batches = Arc::new(AtomicU64::new(0));
    let (tx, rx) = sync_channel::<Batch>(256);
    let syn_thread = match (&capture, watcher) {
        (Some(_), Some(w)) => {
            let (tx, dropped) = (tx.clone(), Arc::clone(&dropped_batches));
            Some(
                std::thread::Builder::new()
                    .name("syn-owners".into())
                    .spawn(move || syn_loop(w, syn_owners, tx, stop, dropped))
                    .expect("spawn the SYN watcher thread"),
            )
        }
        _ => None,
    };
    let has_watcher = syn_thread.is_some();
    let capture_ifaces: Vec<(String, u32)> = capture
        .as_ref()
        .map(|c| c.interfaces().into_iter().map(|(n, i, _)| (n, i)).collect())
        .unwrap_or_default();
    let kernel_drops = Arc::new(AtomicU64::new(0));
    let capture_thread = capture.map(|cap| {
        let dropped = Arc::clone(&dropped_batches);
        let drops = Arc::clone(&kernel_drops);
        let mut owners = cap_owners;
        owners.syn_watcher = has_watcher;
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(cap, owners, tx, stop, dropped, drops))
            .expect("spawn the capture thread")
    });

    let cfg = EngineConfig {
        flows: FlowConfig {
            max_flows: opts.max_flows,
            ..FlowConfig::default()
        },
        report_new_flows: true,
        // Samples are kept only when they go to the store (taken with each flow record).
        sample_bytes: if flags.no_store || !conf.store.enabled {
            0
        } else {
            conf.store.payload_sample_bytes as usize
        },
        lan: conf
            .capture
            .gateway
            .then(|| crate::gateway::lan_config(&conf.capture.lan)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg);
    for (name, ifindex) in &capture_ifaces {
        engine.set_iface_name(*ifindex, name);
    }
    let mut iface_names = IfaceNames::default();
    let resolver = if opts.rdns {
        match os::rdns::Resolver::new(os::rdns::RdnsConfig::default()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "reverse DNS is off");
                None
            }
        }
    } else {
        None
    };
    let mut judging = Judging::new(conf.judge.clone(), resolver);
    let metrics = Arc::new(Metrics::default());
    metrics
        .started_s
        .store((now_nanos() / 1_000_000_000).max(0) as u64, Ordering::Relaxed);
    let mut self_watch = SelfWatch::new(SelfLimits {
        cpu_percent: f64::from(conf.alerts.self_cpu_percent),
        rss_bytes: u64::from(conf.alerts.self_rss_mb) * 1_000_000,
        commit_lag: conf.alerts.self_commit_lag,
        ..SelfLimits::default()
    });
    let mut sinks = Sinks {
        every_connection: conf.alerts.every_connection,
        metrics: Arc::clone(&metrics),
        ..Sinks::default()
    };
    if conf.store.enabled && !flags.no_store {
        let dir = opts
            .data_dir
            .clone()
            .context("no data directory: HOME is not set; pass --data-dir DIR or --no-store")?;
        sinks.store = Some(LiveStore::open(
            &dir,
            conf.store.retention(),
            conf.store.payload_sample_bytes > 0,
            &mut judging.judge.alerter,
        )?);
    }
    // Noise control: the config file, the dashboard's saved settings on top, and every save
    // from the dashboard while running (alert delivery and the judge's safe lists follow it).
    let live_noise = Arc::new(crate::notify::LiveNoise::new(
        crate::notify::Dispatcher::noise_settings(&conf),
    ));
    if let Some(path) = crate::web::settings::config_dir().map(|d| d.join("settings.json")) {
        match crate::web::settings::Settings::load(&path) {
            Ok(s) => live_noise.set_dashboard(&s),
            Err(e) => tracing::warn!(error = %e, "the dashboard's settings are not applied"),
        }
    }
    let mut noise_seen = 0u64;
    if conf.web.enabled {
        let db = sinks.store.as_ref().map(|s| s.path.clone());
        let ln = Arc::clone(&live_noise);
        let on_save = crate::web::settings::OnSave(Arc::new(move |s| ln.set_dashboard(s)));
        let (view, server) = start_web(
            conf.web.listen,
            db,
            &judging.judge.config,
            Arc::clone(&metrics),
            Some(on_save),
        )?;
        sinks.view = Some(view);
        sinks.server = Some(server);
    }
    match crate::notify::Dispatcher::from_config_live(&conf, Arc::clone(&live_noise)) {
        Ok((d, _off)) => sinks.notify = Some(d),
        Err(e) => tracing::warn!(error = %e, "alerts are not delivered"),
    }
    // Fleet mode: enrolled with `netvigil agent enroll`, this machine streams its records up.
    if let Some(dir) = &opts.data_dir
        && crate::fleet::agent::agent_dir(dir).join("server").exists()
    {
        match crate::fleet::agent::Uplink::start(crate::fleet::agent::UplinkConfig::new(dir)) {
            Ok(u) => {
                tracing::info!("fleet agent: records go to the enrolled server");
                sinks.uplink = Some(u);
            }
            Err(e) => tracing::warn!(error = format_args!("{e:#}"), "fleet uplink off"),
        }
    }
    let mut tracker = ConnTracker::new();
    let mut source = SocketSource::new();
    let mut attribution = Attribution::default();
    let mut records: Vec<Record> = Vec::new();
    let mut conns: Vec<ConnectionRecord> = Vec::new();
    let mut line = String::with_capacity(1024);
    let base_poll = Duration::from_millis(poll_ms.max(10));
    // Socket-table mode with the default interval: while nothing changes, the interval grows
    // to twice the base (each read of the table walks the kernel's whole TCP hash); any
    // change brings it back.
    let max_poll = if opts.poll_ms.is_none() && capture_is_off {
        base_poll * 2
    } else {
        base_poll
    };
    let mut poll = base_poll;
    let mut last_poll = Instant::now() - poll;
    let mut last_tick = Instant::now();
    let mut last_hour = 0i64;
    let mut last_refresh = Instant::now() - poll;
    loop {
        let done = stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d);
        if last_poll.elapsed() >= poll || done {
            last_poll = Instant::now();
            match source.snapshot() {
                Ok(snap) => {
                    tracker.update(&snap, &mut conns);
                    judging.judge.snapshot(&snap);
                    sinks.snapshot(&snap);
                }
                Err(e) => tracing::warn!(error = format_args!("{e:#}"), "reading the socket table"),
            }
            poll = if conns.is_empty() {
                (poll * 5 / 4).min(max_poll)
            } else {
                base_poll
            };
            for c in conns.drain(..) {
                records.push(Record::Connection(Box::new(c)));
            }
        }
        if done {
            // Tell the capture thread too (a --duration end is not a signal).
            stop.store(true, Ordering::SeqCst);
            break;
        }
        // Sleep until frames arrive or the next poll or tick is due (an idle monitor wakes a
        // few times a second, not fifty).
        let next_poll = poll.saturating_sub(last_poll.elapsed());
        let next_tick = Duration::from_secs(1).saturating_sub(last_tick.elapsed());
        let wait = next_poll
            .min(next_tick)
            .clamp(Duration::from_millis(5), Duration::from_millis(250));
        match rx.recv_timeout(wait) {
            Ok(batch) => {
                for (ts, direction, entry, process) in batch.opened {
                    if let Some(p) = &process {
                        let local = Endpoint {
                            ip: entry.local.ip(),
                            port: entry.local.port(),
                        };
                        let remote = Endpoint {
                            ip: entry.remote.ip(),
                            port: entry.remote.port(),
                        };
                        let proto = match entry.proto {
                            SockProto::Udp => 17,
                            SockProto::Icmp => 1,
                            SockProto::Icmpv6 => 58,
                            SockProto::Raw(n) => n,
                            _ => 6,
                        };
                        // The flow's client is the local end for outbound, the remote for inbound.
                        let key = match direction {
                            Direction::Outbound => (proto, local, remote),
                            Direction::Inbound => (proto, remote, local),
                        };
                        attribution.by_flow.insert(key, p.clone());
                    }
                    if let Some(rec) = tracker.observe_opened(ts, direction, entry, process) {
                        records.push(Record::Connection(Box::new(rec)));
                    }
                }
                for f in &batch.frames {
                    iface_names.ingest(&mut engine, f, &mut records);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if stop.load(Ordering::SeqCst) {
                    continue;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // New flows: find their owner now, while the socket (and the process) still exists.
        let new = engine.take_new_flows();
        if !new.is_empty() {
            let mut missing = new.iter().any(|n| {
                attribution
                    .lookup(&tracker, n.proto, n.client, n.server)
                    .is_none()
            });
            // Without a SYN watcher, a fresh snapshot is the only way to name a new flow's
            // owner (at most 4 a second: each one walks the kernel's whole TCP hash).
            if missing && !has_watcher && last_refresh.elapsed() >= Duration::from_millis(250) {
                last_refresh = Instant::now();
                if let Ok(snap) = source.snapshot() {
                    tracker.update(&snap, &mut conns);
                    for c in conns.drain(..) {
                        records.push(Record::Connection(Box::new(c)));
                    }
                }
                missing = false;
            }
            let _ = missing;
            for n in &new {
                // A connection accepted by one of our listeners: inbound, owned by the listener's
                // process (the accepted socket may close before any poll sees it).
                let server = SocketAddr::new(n.server.ip, n.server.port);
                if n.proto == 6 && tracker.is_listening(SockProto::Tcp, server) {
                    let entry = SocketEntry {
                        proto: SockProto::Tcp,
                        local: server,
                        remote: SocketAddr::new(n.client.ip, n.client.port),
                        state: Some(engine::sockets::TcpState::SynRecv),
                        connected: true,
                        uid: 0,
                        inode: 0,
                        rx_queue: 0,
                        tx_queue: 0,
                        tcp: None,
                        interface: None,
                    };
                    let owner = tracker.owner(SockProto::Tcp, server).cloned();
                    if let Some(rec) = tracker.observe_opened(n.ts, Direction::Inbound, entry, owner) {
                        records.push(Record::Connection(Box::new(rec)));
                    }
                }
            }
            for n in new {
                let key = (n.proto, n.client, n.server);
                if attribution.by_flow.contains_key(&key)
                    || attribution.by_flow.contains_key(&(n.proto, n.server, n.client))
                {
                    continue;
                }
                match attribution.lookup(&tracker, n.proto, n.client, n.server) {
                    Some(p) => {
                        attribution.by_flow.insert(key, p);
                    }
                    None => attribution.unattributed += 1,
                }
            }
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            engine.tick(now_nanos(), &mut records);
            judging.tick(now_nanos());
            if let Some(n) = live_noise.newer(&mut noise_seen) {
                let c = &mut judging.judge.config;
                (c.safe_apps, c.safe_hosts, c.safe_ports) = (n.safe.apps, n.safe.hosts, n.safe.ports);
            }
            // At each full hour: one sentence about the hour that ended (dashboard, alert
            // channels, log), and the per-app totals start over (each app's distinct remote
            // addresses of the last day are kept, for "many distinct remotes").
            let hour = now_nanos() / 3_600_000_000_000;
            if hour != last_hour {
                if last_hour != 0 && judging.judge.apps.is_active() {
                    let facts = judging
                        .judge
                        .apps
                        .digest_facts(engine::judge::Period::Hour, &judging.judge.config);
                    let text = engine::judge::digest(&facts);
                    tracing::info!(period = "hour", "{text}");
                    sinks.digest("hour", text, now_nanos());
                }
                if last_hour != 0 {
                    judging.judge.apps.start_period(now_nanos(), 86_400_000_000_000);
                }
                // At midnight (UTC): the day's digest, from the history.
                let day = hour / 24;
                if last_hour != 0
                    && day != last_hour / 24
                    && let Some(text) = sinks.day_digest(now_nanos())
                {
                    tracing::info!(period = "day", "{text}");
                    sinks.digest("day", text, now_nanos());
                }
                last_hour = hour;
            }
            // Watching itself: counters for /metrics, and alerts past the limits.
            let store_stats = sinks.update_metrics();
            let drops = kernel_drops.load(Ordering::Relaxed);
            let me = SelfSample::read(drops, store_stats.as_ref());
            if let Some(c) = self_watch.observe(&me, now_nanos(), &mut judging.alerts) {
                metrics.set_cpu_percent(c);
            }
            metrics.rss_bytes.store(me.rss_bytes, Ordering::Relaxed);
            metrics.kernel_drops.store(drops, Ordering::Relaxed);
            metrics.packets.store(engine.stats().frames, Ordering::Relaxed);
            metrics
                .flows_created
                .store(engine.flow_counters().created, Ordering::Relaxed);
            metrics
                .batches_lost
                .store(dropped_batches.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        write_records(
            &mut out,
            &mut records,
            &mut attribution,
            &mut judging,
            &mut sinks,
            &mut engine,
            &mut line,
        )?;
    }
    // What the threads handed over before stopping still counts; then close the channel so a
    // thread blocked on a full channel wakes up and ends.
    while let Ok(batch) = rx.try_recv() {
        for f in &batch.frames {
            iface_names.ingest(&mut engine, f, &mut records);
        }
    }
    drop(rx);
    let final_drops = capture_thread.and_then(|t| t.join().ok()).unwrap_or(0);
    if let Some(t) = syn_thread {
        let _ = t.join();
    }
    engine.finish(&mut records);
    write_records(
        &mut out,
        &mut records,
        &mut attribution,
        &mut judging,
        &mut sinks,
        &mut engine,
        &mut line,
    )?;
    out.flush().context("writing events")?;
    sinks.close(&judging.judge.alerter);
    let s = engine.stats();
    let c = engine.flow_counters();
    let lost = dropped_batches.load(Ordering::Relaxed);
    tracing::info!(
        packets = s.frames,
        kernel_drops = final_drops,
        flows = c.created,
        connections = tracker.stats.opened,
        unowned = attribution.unattributed,
        lost_batches = lost,
        "stopped: {} packets ({} dropped by the kernel), {} flows, {} connections opened, {} flows without a known owner, {} batches lost at shutdown",
        s.frames,
        final_drops,
        c.created,
        tracker.stats.opened,
        attribution.unattributed,
        lost
    );
    Ok(ExitCode::SUCCESS)
}

fn write_records(
    out: &mut dyn Write,
    records: &mut Vec<Record>,
    attr: &mut Attribution,
    judging: &mut Judging,
    sinks: &mut Sinks,
    engine: &mut Engine,
    line: &mut String,
) -> Result<()> {
    let write = |out: &mut dyn Write, line: &str| -> Result<()> {
        if let Err(e) = out.write_all(line.as_bytes()) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                bail!("the events reader went away");
            }
            return Err(e).context("writing events");
        }
        Ok(())
    };
    for mut r in records.drain(..) {
        if let Record::Flow(f) = &mut r {
            let key = (f.proto, f.client, f.server);
            let alt = (f.proto, f.server, f.client);
            if let Some(p) = attr.by_flow.remove(&key).or_else(|| attr.by_flow.remove(&alt)) {
                f.process = Some(Box::new(p));
            }
        }
        line.clear();
        let now = now_nanos();
        let a = judging.judge_into(&r, Some(now), line);
        line.push('\n');
        write(out, line)?;
        sinks.line(line);
        sinks.record(r, a.as_ref(), engine, now);
    }
    for a in judging.alerts.drain(..) {
        line.clear();
        a.write_json(line);
        line.push('\n');
        write(out, line)?;
        sinks.line(line);
        sinks.alert(&a);
    }
    sinks.flush();
    out.flush().context("writing events")?;
    Ok(())
}

/// Looks up the owner of every outbound connection the moment its SYN leaves.
fn syn_loop(
    mut watcher: SynWatcher,
    mut owners: FirstPacketOwners,
    tx: SyncSender<Batch>,
    stop: &AtomicBool,
    dropped: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::SeqCst) {
        let found = match watcher.next_syn() {
            Ok(Some(f)) if f.outgoing => owners.on_outgoing(now_nanos(), LinkType::ETHERNET, f.data),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "the SYN watcher stopped");
                break;
            }
        };
        if let Some(o) = found
            && tx
                .send(Batch {
                    frames: Vec::new(),
                    opened: vec![o],
                })
                .is_err()
        {
            dropped.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
}

/// Reads the rings until `stop`; every second the kernel's drop total goes to `kernel_drops`.
/// Returns the final total.
fn capture_loop(
    mut cap: AfPacket,
    mut owners: FirstPacketOwners,
    tx: SyncSender<Batch>,
    stop: &AtomicBool,
    dropped: Arc<AtomicU64>,
    kernel_drops: Arc<AtomicU64>,
) -> u64 {
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            if let Ok(st) = cap.stats() {
                kernel_drops.store(st.total_drops, Ordering::Relaxed);
            }
        }
        let mut batch = Batch::default();
        let r = cap.next_batch(Duration::from_millis(250), |f| {
            if f.outgoing
                && let Some(o) = owners.on_outgoing(f.ts_nanos, f.link, f.data)
            {
                batch.opened.push(o);
            }
            // Loopback shows every frame twice: keep the received copy, as libpcap does.
            if f.loopback && f.outgoing {
                return;
            }
            batch.frames.push(OwnedFrame {
                ts: f.ts_nanos,
                ifindex: f.ifindex,
                link: f.link,
                orig_len: f.orig_len,
                data: f.data.to_vec(),
            });
        });
        if let Err(e) = r {
            tracing::error!(error = %e, "capture stopped");
            break;
        }
        // Blocking: while the engine is behind, frames wait in the kernel's ring, whose drops
        // the kernel counts; nothing is lost silently here.
        if (!batch.frames.is_empty() || !batch.opened.is_empty()) && tx.send(batch).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    let total = cap
        .stats()
        .map(|st| st.total_drops)
        .unwrap_or_else(|_| kernel_drops.load(Ordering::Relaxed));
    kernel_drops.store(total, Ordering::Relaxed);
    total
}
