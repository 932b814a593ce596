//! Connections from the socket table: which process holds which connection, and the events a
//! person cares about — a connection opened (outbound, or inbound accepted by a listener), a
//! connection closed, a socket listening on every interface.
//!
//! Pure: the `os` crate takes snapshots ([`SocketSnapshot`]); [`ConnTracker::update`] compares
//! each with the previous one.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::json::Obj;
use crate::record::{SCHEMA_VERSION, write_json_str};
use crate::sockets::{ProcessInfo, SockProto, SocketEntry, SocketSnapshot, TcpInfo, TcpState};

/// Which side started a connection, as seen from this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This machine connected out.
    Outbound,
    /// A listener on this machine accepted it.
    Inbound,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnEvent {
    Opened,
    Closed,
    /// A socket started listening on every interface (0.0.0.0 or ::).
    ListeningOnAll,
}

impl ConnEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnEvent::Opened => "opened",
            ConnEvent::Closed => "closed",
            ConnEvent::ListeningOnAll => "listening",
        }
    }
}

/// A `connection` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub ts: i64,
    pub event: ConnEvent,
    pub proto: SockProto,
    /// `None` for listening events.
    pub direction: Option<Direction>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: Option<TcpState>,
    pub process: Option<ProcessInfo>,
    pub tcp: Option<TcpInfo>,
    pub uid: u32,
    pub inode: u64,
}

impl ConnectionRecord {
    pub fn write_json(&self, out: &mut String) {
        let mut o = Obj::new(out);
        o.str("type", "connection")
            .num("v", SCHEMA_VERSION)
            .time("ts", self.ts)
            .str("event", self.event.as_str())
            .str("l4", &self.proto.name())
            .opt_str("direction", self.direction.map(Direction::as_str))
            .raw("local", &addr_json(&self.local))
            .raw("remote", &addr_json(&self.remote))
            .opt_str("state", self.state.map(TcpState::name))
            .num("uid", self.uid)
            .num("inode", self.inode);
        match &self.process {
            Some(p) => {
                o.raw("process", &process_json(p));
            }
            None => {
                o.raw("process", "null");
            }
        }
        match &self.tcp {
            Some(t) => {
                o.num("bytes_sent", t.bytes_acked)
                    .num("bytes_received", t.bytes_received)
                    .num("rtt_us", t.rtt_us)
                    .num("retransmits", t.total_retrans);
            }
            None => {
                o.raw("bytes_sent", "null").raw("bytes_received", "null");
            }
        }
        o.end();
    }
}

fn addr_json(a: &SocketAddr) -> String {
    format!("{{\"ip\":\"{}\",\"port\":{}}}", a.ip(), a.port())
}

/// The `process` object of records.
pub fn process_json(p: &ProcessInfo) -> String {
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.num("pid", p.pid)
        .opt_num("ppid", p.ppid)
        .str("name", &p.name)
        .opt_str("exe", p.exe.as_ref().map(|e| e.to_string_lossy()).as_deref())
        .strs("cmdline", &p.cmdline)
        .opt_num("uid", p.uid)
        .opt_str("user", p.user.as_deref())
        .opt_str("container", p.container.as_deref())
        .opt_str("unit", p.unit.as_deref())
        .bool("exe_deleted", p.exe_deleted)
        .bool("exe_in_temp", p.exe_in_temp);
    if p.package_checked {
        o.opt_str("package", p.package.as_deref());
    } else {
        o.raw("package", "null");
    }
    if let Some(t) = p.start_time {
        o.time("start_time", t);
    }
    if p.inferred {
        o.bool("inferred", true);
    }
    o.end();
    let _ = write_json_str; // (the writer escapes through Obj)
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    proto: SockProto,
    local: SocketAddr,
    remote: SocketAddr,
}

#[derive(Clone, Debug)]
struct Known {
    direction: Direction,
    entry: SocketEntry,
    pid: Option<u32>,
}

/// Counters of what the tracker saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub snapshots: u64,
    pub opened: u64,
    pub closed: u64,
    /// Connections whose owner could not be found (other users' processes without privilege,
    /// kernel sockets, sockets gone before the lookup).
    pub unattributed: u64,
}

/// Turns socket snapshots into connection events and answers "which process owns this flow".
#[derive(Debug, Default)]
pub struct ConnTracker {
    known: HashMap<Key, Known>,
    listening_all: HashSet<(SockProto, SocketAddr)>,
    /// Every listening socket of the last snapshot: (proto, port, address).
    listeners: HashSet<(SockProto, u16, IpAddr)>,
    processes: HashMap<u32, ProcessInfo>,
    /// (proto, local address) -> pid, for flows seen on the wire.
    by_local: HashMap<(SockProto, SocketAddr), u32>,
    /// New connections a snapshot listed without an owner, held back one poll.
    pending: HashMap<Key, (Direction, SocketEntry)>,
    first: bool,
    pub stats: ConnStats,
}

fn is_connection(e: &SocketEntry) -> bool {
    match e.proto {
        SockProto::Tcp => matches!(
            e.state,
            Some(
                TcpState::Established
                    | TcpState::SynSent
                    | TcpState::SynRecv
                    | TcpState::FinWait1
                    | TcpState::FinWait2
                    | TcpState::CloseWait
                    | TcpState::LastAck
                    | TcpState::Closing
            )
        ),
        SockProto::Udp | SockProto::UdpLite | SockProto::Sctp | SockProto::Icmp | SockProto::Icmpv6 => {
            e.connected && e.remote.port() != 0
        }
        SockProto::Raw(_) | SockProto::Packet => false,
    }
}

impl ConnTracker {
    pub fn new() -> Self {
        Self {
            first: true,
            ..Self::default()
        }
    }

    /// The process that owns the local end `local` of a `proto` flow, if a snapshot saw it.
    pub fn owner(&self, proto: SockProto, local: SocketAddr) -> Option<&ProcessInfo> {
        let pid = self.by_local.get(&(proto, local)).or_else(|| {
            let any = if local.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            };
            self.by_local.get(&(proto, SocketAddr::new(any, local.port())))
        })?;
        self.processes.get(pid)
    }

    /// Does a listening socket of the last snapshot accept connections to `local`?
    pub fn is_listening(&self, proto: SockProto, local: SocketAddr) -> bool {
        let any = if local.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        };
        self.listeners.contains(&(proto, local.port(), local.ip()))
            || self.listeners.contains(&(proto, local.port(), any))
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&pid)
    }

    /// Compares `snap` with the previous snapshot; events go to `out`. The first snapshot
    /// reports every current connection as opened (what is open when netvigil starts).
    pub fn update(&mut self, snap: &SocketSnapshot, out: &mut Vec<ConnectionRecord>) {
        self.stats.snapshots += 1;
        let owners: HashMap<u64, u32> = snap.owners.iter().copied().collect();
        for p in &snap.processes {
            self.processes.insert(p.pid, p.clone());
        }
        // Listeners: a connection whose local port a listener holds was accepted.
        let mut listeners: HashSet<(SockProto, u16, IpAddr)> = HashSet::new();
        let mut listening_all = HashSet::new();
        self.by_local.clear();
        for e in &snap.sockets {
            let pid = owners.get(&e.inode).copied();
            if let Some(pid) = pid {
                self.by_local.insert((e.proto, e.local), pid);
            }
            if e.is_listening() {
                listeners.insert((e.proto, e.local.port(), e.local.ip()));
                if e.on_all_interfaces() {
                    listening_all.insert((e.proto, e.local));
                    if !self.listening_all.contains(&(e.proto, e.local)) && !self.first {
                        out.push(self.record(snap.taken_at, ConnEvent::ListeningOnAll, None, e, pid));
                    }
                }
            }
        }
        self.listening_all = listening_all;
        self.listeners = listeners.clone();
        let mut seen = HashSet::new();
        for e in snap.sockets.iter().filter(|e| is_connection(e)) {
            let key = Key {
                proto: e.proto,
                local: e.local,
                remote: e.remote,
            };
            seen.insert(key);
            let pid = owners.get(&e.inode).copied();
            if let Some(k) = self.known.get_mut(&key) {
                k.entry = e.clone();
                if k.pid.is_none() {
                    k.pid = pid;
                }
                continue;
            }
            let unspecified = |ip: IpAddr| {
                if ip.is_ipv4() {
                    IpAddr::from([0, 0, 0, 0])
                } else {
                    IpAddr::from([0u16; 8])
                }
            };
            let accepted = e.state != Some(TcpState::SynSent)
                && (listeners.contains(&(e.proto, e.local.port(), e.local.ip()))
                    || listeners.contains(&(e.proto, e.local.port(), unspecified(e.local.ip()))));
            let direction = if accepted {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            // An accepted connection whose socket closed before its owner was read belongs to
            // the process that listens for it.
            let pid = pid.or_else(|| {
                if accepted {
                    self.owner(e.proto, e.local).map(|p| p.pid)
                } else {
                    None
                }
            });
            if pid.is_none() && !self.first && self.pending.insert(key, (direction, e.clone())).is_none() {
                // No owner yet: give the packet path (which looks owners up at the SYN) one poll
                // to name it before reporting it without one.
                continue;
            }
            self.pending.remove(&key);
            self.report_opened(snap.taken_at, key, direction, e.clone(), pid, out);
        }
        // Held back last time and gone now: report them as they were, opened and closed.
        let expired: Vec<Key> = self
            .pending
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in expired {
            if let Some((direction, e)) = self.pending.remove(&k) {
                self.report_opened(snap.taken_at, k, direction, e, None, out);
            }
        }
        // Ping sockets are not connected, so no snapshot lists them as connections: one that
        // the packet path reported stays open while its socket (same identifier) exists.
        let pinging: HashSet<(SockProto, u16)> = snap
            .sockets
            .iter()
            .filter(|e| matches!(e.proto, SockProto::Icmp | SockProto::Icmpv6))
            .map(|e| (e.proto, e.local.port()))
            .collect();
        let gone: Vec<Key> = self
            .known
            .keys()
            .filter(|k| !seen.contains(k) && !pinging.contains(&(k.proto, k.local.port())))
            .copied()
            .collect();
        for k in gone {
            if let Some(old) = self.known.remove(&k) {
                self.stats.closed += 1;
                out.push(self.record(
                    snap.taken_at,
                    ConnEvent::Closed,
                    Some(old.direction),
                    &old.entry,
                    old.pid,
                ));
            }
        }
        self.first = false;
    }

    fn record(
        &self,
        ts: i64,
        event: ConnEvent,
        direction: Option<Direction>,
        e: &SocketEntry,
        pid: Option<u32>,
    ) -> ConnectionRecord {
        ConnectionRecord {
            ts,
            event,
            proto: e.proto,
            direction,
            local: e.local,
            remote: e.remote,
            state: e.state,
            process: pid.and_then(|p| self.processes.get(&p).cloned()),
            tcp: e.tcp,
            uid: e.uid,
            inode: e.inode,
        }
    }

    fn report_opened(
        &mut self,
        ts: i64,
        key: Key,
        direction: Direction,
        e: SocketEntry,
        pid: Option<u32>,
        out: &mut Vec<ConnectionRecord>,
    ) {
        if pid.is_none() {
            self.stats.unattributed += 1;
        }
        self.stats.opened += 1;
        out.push(self.record(ts, ConnEvent::Opened, Some(direction), &e, pid));
        self.known.insert(
            key,
            Known {
                direction,
                entry: e,
                pid,
            },
        );
    }

    /// A connection seen opening on the wire (from the packets this machine sent), with the
    /// owner found at that moment. Returns the `opened` record unless a snapshot already
    /// reported it. The next snapshot that no longer lists it reports it `closed`, so short
    /// connections that no poll ever saw still get both events.
    pub fn observe_opened(
        &mut self,
        ts: i64,
        direction: Direction,
        entry: SocketEntry,
        process: Option<ProcessInfo>,
    ) -> Option<ConnectionRecord> {
        let key = Key {
            proto: entry.proto,
            local: entry.local,
            remote: entry.remote,
        };
        let pid = process.as_ref().map(|p| p.pid);
        if let Some(k) = self.known.get_mut(&key) {
            // Already reported: keep the owner for its `closed` record if it had none.
            if k.pid.is_none() && pid.is_some() {
                k.pid = pid;
                if let Some(p) = process {
                    self.by_local.insert((entry.proto, entry.local), p.pid);
                    self.processes.insert(p.pid, p);
                }
            }
            return None;
        }
        // A snapshot listed it first, without an owner: this report names it.
        let (direction, entry) = match self.pending.remove(&key) {
            Some((d, e)) => (
                d,
                SocketEntry {
                    tcp: e.tcp.or(entry.tcp),
                    ..entry
                },
            ),
            None => (direction, entry),
        };
        if let Some(p) = process {
            self.by_local.insert((entry.proto, entry.local), p.pid);
            self.processes.insert(p.pid, p);
        } else {
            self.stats.unattributed += 1;
        }
        self.stats.opened += 1;
        let rec = self.record(ts, ConnEvent::Opened, Some(direction), &entry, pid);
        self.known.insert(
            key,
            Known {
                direction,
                entry,
                pid,
            },
        );
        Some(rec)
    }

    /// Open connections now, for `netvigil connections`.
    pub fn open(&self) -> impl Iterator<Item = (Direction, &SocketEntry, Option<&ProcessInfo>)> {
        self.known
            .values()
            .map(|k| (k.direction, &k.entry, k.pid.and_then(|p| self.processes.get(&p))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(proto: SockProto, local: &str, remote: &str, state: Option<TcpState>, inode: u64) -> SocketEntry {
        SocketEntry {
            proto,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            connected: state.is_none() && !remote.ends_with(":0"),
            uid: 1000,
            inode,
            rx_queue: 0,
            tx_queue: 0,
            tcp: None,
            interface: None,
        }
    }

    fn proc_(pid: u32, name: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: name.into(),
            ..ProcessInfo::default()
        }
    }

    #[test]
    fn opened_inbound_outbound_closed_and_listening() {
        let mut t = ConnTracker::new();
        let mut out = Vec::new();
        let listen = sock(
            SockProto::Tcp,
            "0.0.0.0:22",
            "0.0.0.0:0",
            Some(TcpState::Listen),
            10,
        );
        let snap1 = SocketSnapshot {
            taken_at: 1,
            sockets: vec![listen.clone()],
            owners: vec![(10, 100)],
            processes: vec![proc_(100, "sshd")],
            unattributed: 0,
        };
        t.update(&snap1, &mut out);
        assert!(out.is_empty(), "the first snapshot's listeners are not news");
        let inbound = sock(
            SockProto::Tcp,
            "10.0.0.5:22",
            "203.0.113.7:51000",
            Some(TcpState::Established),
            11,
        );
        let outbound = sock(
            SockProto::Tcp,
            "10.0.0.5:40000",
            "198.51.100.1:443",
            Some(TcpState::Established),
            12,
        );
        let udp = sock(SockProto::Udp, "10.0.0.5:5353", "0.0.0.0:0", None, 13);
        let web = sock(SockProto::Tcp, "[::]:8080", "[::]:0", Some(TcpState::Listen), 14);
        let snap2 = SocketSnapshot {
            taken_at: 2,
            sockets: vec![listen.clone(), inbound.clone(), outbound.clone(), udp, web],
            owners: vec![(10, 100), (11, 101), (12, 200), (14, 300)],
            processes: vec![proc_(101, "sshd"), proc_(200, "curl"), proc_(300, "python3")],
            unattributed: 0,
        };
        t.update(&snap2, &mut out);
        let ev: Vec<_> = out
            .iter()
            .map(|r| (r.event, r.direction, r.process.as_ref().map(|p| p.name.clone())))
            .collect();
        assert!(
            ev.contains(&(ConnEvent::Opened, Some(Direction::Inbound), Some("sshd".into()))),
            "{ev:?}"
        );
        assert!(
            ev.contains(&(ConnEvent::Opened, Some(Direction::Outbound), Some("curl".into()))),
            "{ev:?}"
        );
        assert!(
            ev.contains(&(ConnEvent::ListeningOnAll, None, Some("python3".into()))),
            "{ev:?}"
        );
        assert_eq!(out.len(), 3, "an unconnected UDP socket is not a connection");
        assert_eq!(
            t.owner(SockProto::Tcp, "10.0.0.5:40000".parse().unwrap())
                .unwrap()
                .name,
            "curl"
        );
        assert_eq!(
            t.owner(SockProto::Tcp, "10.0.0.9:22".parse().unwrap())
                .unwrap()
                .name,
            "sshd",
            "wildcard listener"
        );
        out.clear();
        let snap3 = SocketSnapshot {
            taken_at: 3,
            sockets: vec![listen, inbound],
            ..snap2.clone()
        };
        t.update(&snap3, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].event, out[0].direction),
            (ConnEvent::Closed, Some(Direction::Outbound))
        );
        assert_eq!(
            out[0].process.as_ref().unwrap().name,
            "curl",
            "the closed record keeps its owner"
        );
        let mut s = String::new();
        out[0].write_json(&mut s);
        assert!(
            s.starts_with("{\"type\":\"connection\",\"v\":1,") && s.contains("\"event\":\"closed\""),
            "{s}"
        );
    }

    #[test]
    fn an_ownerless_connection_waits_one_poll_for_the_packet_path() {
        let mut t = ConnTracker::new();
        let mut out = Vec::new();
        let empty = SocketSnapshot {
            taken_at: 1,
            ..SocketSnapshot::default()
        };
        t.update(&empty, &mut out);
        let c = sock(
            SockProto::Tcp,
            "10.0.0.5:40000",
            "198.51.100.1:443",
            Some(TcpState::Established),
            0,
        );
        let snap = SocketSnapshot {
            taken_at: 2,
            sockets: vec![c.clone()],
            ..SocketSnapshot::default()
        };
        t.update(&snap, &mut out);
        assert!(out.is_empty(), "held back: no owner yet");
        let rec = t
            .observe_opened(3, Direction::Outbound, c.clone(), Some(proc_(77, "curl")))
            .expect("named now");
        assert_eq!(rec.process.unwrap().name, "curl");
        t.update(&empty, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].event, out[0].process.as_ref().map(|p| p.pid)),
            (ConnEvent::Closed, Some(77))
        );
        // Never named: reported without an owner one poll later, opened and then closed.
        out.clear();
        let d = sock(
            SockProto::Tcp,
            "10.0.0.5:40001",
            "198.51.100.1:443",
            Some(TcpState::Established),
            0,
        );
        t.update(
            &SocketSnapshot {
                taken_at: 4,
                sockets: vec![d],
                ..SocketSnapshot::default()
            },
            &mut out,
        );
        assert!(out.is_empty());
        t.update(
            &SocketSnapshot {
                taken_at: 5,
                ..SocketSnapshot::default()
            },
            &mut out,
        );
        let ev: Vec<_> = out.iter().map(|r| r.event).collect();
        assert_eq!(ev, [ConnEvent::Opened, ConnEvent::Closed]);
    }
}
