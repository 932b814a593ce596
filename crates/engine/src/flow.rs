//! The flow table: bidirectional flows with TCP state, per-direction counters, idle timeouts per
//! protocol and state, and a cap on live flows with eviction of the longest-idle flow.
//!
//! Each flow sits in one of a few "timeout classes" (TCP handshake, established, closing,
//! closed; UDP; other), each an intrusive list ordered by last activity, so expiry looks only at
//! list heads and eviction compares a handful of heads: O(1) per packet.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use crate::Record;
use crate::dissect::Dissect;
use crate::record::{AppInfo, ClientBy, DirCounters, EndReason, Endpoint, FlowRecord, FlowState};

/// Nanoseconds.
pub type Nanos = i64;
const SEC: Nanos = 1_000_000_000;

/// Idle timeouts and the live-flow cap.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    pub max_flows: usize,
    pub tcp_handshake_timeout: Nanos,
    pub tcp_established_timeout: Nanos,
    pub tcp_closing_timeout: Nanos,
    pub tcp_closed_timeout: Nanos,
    pub udp_timeout: Nanos,
    pub other_timeout: Nanos,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            max_flows: 1_000_000,
            tcp_handshake_timeout: 60 * SEC,
            tcp_established_timeout: 15 * 60 * SEC,
            tcp_closing_timeout: 120 * SEC,
            tcp_closed_timeout: 10 * SEC,
            udp_timeout: 120 * SEC,
            other_timeout: 60 * SEC,
        }
    }
}

/// Counters that reconcile: `created == expired + evicted + flushed + live`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub created: u64,
    /// Ended by an idle timeout, or by a new connection reusing the 4-tuple after a close.
    pub expired: u64,
    /// Ended early because the table was full.
    pub evicted: u64,
    /// Ended by the end of the input.
    pub flushed: u64,
    pub live: u64,
    pub peak_live: u64,
}

/// Bidirectional flow key: the two endpoints in a canonical order, the protocol and VLAN ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: u8,
    pub vlan: [u16; 2],
    pub lo: Endpoint,
    pub hi: Endpoint,
}

impl FlowKey {
    /// The key for a packet from `src` to `dst`, and whether `src` is the key's `lo` side.
    pub fn new(proto: u8, vlan: [u16; 2], src: Endpoint, dst: Endpoint) -> (Self, bool) {
        if (src.ip, src.port) <= (dst.ip, dst.port) {
            (
                Self {
                    proto,
                    vlan,
                    lo: src,
                    hi: dst,
                },
                true,
            )
        } else {
            (
                Self {
                    proto,
                    vlan,
                    lo: dst,
                    hi: src,
                },
                false,
            )
        }
    }
}

/// What the flow table needs to know about one packet.
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta {
    pub ts: Nanos,
    pub proto: u8,
    pub vlan: [u16; 2],
    pub src: Endpoint,
    pub dst: Endpoint,
    /// Frames this packet stands for (more than one for a reassembled datagram).
    pub frames: u32,
    /// Original wire bytes of those frames.
    pub frame_bytes: u64,
    pub payload_bytes: u64,
    /// TCP flags, when TCP.
    pub tcp: Option<TcpMeta>,
}

#[derive(Clone, Copy, Debug)]
pub struct TcpMeta {
    pub flags: u8,
    pub seq: u32,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    TcpHandshake = 0,
    TcpEstablished = 1,
    TcpClosing = 2,
    TcpClosed = 3,
    Udp = 4,
    Other = 5,
}
const CLASSES: usize = 6;
const NIL: u32 = u32::MAX;

/// One live flow. The engine reads and updates the application fields through
/// [`FlowTable::flow_mut`].
#[derive(Debug)]
pub struct Flow {
    key: FlowKey,
    id: u64,
    /// Is the key's `lo` endpoint the client?
    client_lo: bool,
    client_by: ClientBy,
    state: FlowState,
    first: Nanos,
    last: Nanos,
    /// Counters by key side: [lo -> hi, hi -> lo].
    dirs: [DirCounters; 2],
    syn_seq: Option<u32>,
    fin: [bool; 2],
    /// Initial sequence numbers by key side, from SYN / SYN-ACK.
    isn: [Option<u32>; 2],
    class: Class,
    prev: u32,
    next: u32,
    /// Application protocol and name, filled by the dissectors.
    pub app: AppInfo,
    /// Dissector state while the flow is still being inspected.
    pub dissect: Option<Box<Dissect>>,
    /// Inspection is over: the flow is only counted from now on.
    pub inspected: bool,
    /// The network interface the flow was first seen on (an index named with
    /// [`FlowTable::set_iface_name`]); 0 = unknown.
    iface: u32,
}

impl Flow {
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn proto(&self) -> u8 {
        self.key.proto
    }
    pub fn client(&self) -> Endpoint {
        if self.client_lo { self.key.lo } else { self.key.hi }
    }
    pub fn server(&self) -> Endpoint {
        if self.client_lo { self.key.hi } else { self.key.lo }
    }
    pub fn client_by(&self) -> ClientBy {
        self.client_by
    }
    pub fn start(&self) -> Nanos {
        self.first
    }
    /// The interface index the flow was first seen on; 0 = unknown.
    pub fn iface(&self) -> u32 {
        self.iface
    }
    /// Sets the interface the flow was first seen on (see [`FlowTable::set_iface_name`]).
    pub fn set_iface(&mut self, index: u32) {
        self.iface = index;
    }
    /// The initial sequence number of the side that sends `from_client`'s direction.
    pub fn isn(&self, from_client: bool) -> Option<u32> {
        self.isn[usize::from(self.client_lo != from_client)]
    }
    /// A protocol message settled who the client is (a TLS ClientHello, an HTTP request):
    /// when the flow's client was not known from a SYN, the sender becomes the client.
    /// Returns true when the orientation flipped.
    pub fn settle_client(&mut self, sender_is_client: bool, by: ClientBy) -> bool {
        if sender_is_client || matches!(self.client_by, ClientBy::Syn | ClientBy::SynAck) {
            return false;
        }
        self.client_lo = !self.client_lo;
        self.client_by = by;
        true
    }
}

/// What [`FlowTable::packet`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touched {
    /// The flow's slot, for [`FlowTable::flow_mut`] (valid until the next call that may end flows).
    pub idx: u32,
    /// The packet went from the flow's client to its server.
    pub from_client: bool,
    /// The packet created the flow.
    pub created: bool,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

/// The flow table. `S` is the hasher (random per table by default, against hash flooding).
#[derive(Debug)]
pub struct FlowTable<S = foldhash::fast::RandomState> {
    cfg: FlowConfig,
    index: HashMap<FlowKey, u32, S>,
    slots: Vec<Flow>,
    free: Vec<u32>,
    lists: [List; CLASSES],
    next_id: u64,
    counters: FlowCounters,
    /// The latest timestamp seen: expiry runs on it, so time never goes backwards.
    now: Nanos,
    last_sweep: Nanos,
    /// Interface names by index, for the `iface` of flow records (a handful of entries).
    iface_names: HashMap<u32, Arc<str>>,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> Self {
        Self::with_hasher(cfg, foldhash::fast::RandomState::default())
    }
}

impl<S: BuildHasher> FlowTable<S> {
    pub fn with_hasher(cfg: FlowConfig, hasher: S) -> Self {
        // Grown as flows arrive: a table sized for 65,536 flows up front costs a monitor that
        // sees a few thousand about 6 MiB of resident memory (its buckets are touched at random).
        let cap = cfg.max_flows.min(1 << 12);
        Self {
            cfg,
            index: HashMap::with_capacity_and_hasher(cap, hasher),
            slots: Vec::with_capacity(cap),
            free: Vec::new(),
            lists: [List { head: NIL, tail: NIL }; CLASSES],
            next_id: 1,
            counters: FlowCounters::default(),
            now: i64::MIN,
            last_sweep: i64::MIN,
            iface_names: HashMap::default(),
        }
    }

    /// Names interface `index` (e.g. a Linux ifindex; not 0): the records of flows first seen
    /// on it carry `name` as their `iface`.
    pub fn set_iface_name(&mut self, index: u32, name: &str) {
        if index != 0 && self.iface_names.get(&index).is_none_or(|n| &**n != name) {
            self.iface_names.insert(index, Arc::from(name));
        }
    }

    /// The name given to interface `index`, if any.
    pub fn iface_name(&self, index: u32) -> Option<&Arc<str>> {
        self.iface_names.get(&index)
    }

    pub fn counters(&self) -> FlowCounters {
        self.counters
    }

    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// The live flow in slot `idx` (from [`Touched`]).
    pub fn flow_mut(&mut self, idx: u32) -> &mut Flow {
        &mut self.slots[idx as usize]
    }

    /// Accounts one packet; records of flows that ended (timeouts, eviction, reuse) go to `out`.
    pub fn packet(&mut self, p: &PacketMeta, out: &mut Vec<Record>) -> Touched {
        if p.ts > self.now {
            self.now = p.ts;
        }
        if self.now.saturating_sub(self.last_sweep) >= SEC {
            self.last_sweep = self.now;
            self.expire(self.now, out);
        }
        let (key, src_is_lo) = FlowKey::new(p.proto, p.vlan, p.src, p.dst);
        let dir = usize::from(!src_is_lo);
        let (idx, created) = match self.index.get(&key) {
            Some(&i) if self.starts_new_connection(i, p, dir) => {
                self.end(i, EndReason::Reused, out);
                (self.create(key, p, src_is_lo, out), true)
            }
            Some(&i) => (i, false),
            None => (self.create(key, p, src_is_lo, out), true),
        };
        self.update(idx, p, dir);
        let from_client = self.slots[idx as usize].client_lo == src_is_lo;
        Touched {
            idx,
            from_client,
            created,
        }
    }

    /// Ends flows idle past their timeout at `now`.
    pub fn expire(&mut self, now: Nanos, out: &mut Vec<Record>) {
        for c in 0..CLASSES {
            let timeout = self.timeout(c);
            loop {
                let h = self.lists[c].head;
                if h == NIL || self.slots[h as usize].last.saturating_add(timeout) > now {
                    break;
                }
                self.end(h, EndReason::IdleTimeout, out);
            }
        }
    }

    /// Ends every live flow (end of input or shutdown), oldest first.
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        let mut live: Vec<u32> = self.index.values().copied().collect();
        live.sort_by_key(|&i| (self.slots[i as usize].first, self.slots[i as usize].id));
        for i in live {
            self.end(i, EndReason::EndOfInput, out);
        }
    }

    fn timeout(&self, class: usize) -> Nanos {
        match class {
            0 => self.cfg.tcp_handshake_timeout,
            1 => self.cfg.tcp_established_timeout,
            2 => self.cfg.tcp_closing_timeout,
            3 => self.cfg.tcp_closed_timeout,
            4 => self.cfg.udp_timeout,
            _ => self.cfg.other_timeout,
        }
    }

    /// A pure SYN on a closed or closing flow, or one with a new initial sequence number on an
    /// established flow, is a new connection on the same 4-tuple.
    fn starts_new_connection(&self, idx: u32, p: &PacketMeta, dir: usize) -> bool {
        let Some(t) = p.tcp else { return false };
        if t.flags & (SYN | ACK | RST) != SYN {
            return false;
        }
        let f = &self.slots[idx as usize];
        match f.state {
            FlowState::Closing | FlowState::Closed => true,
            FlowState::Established => match f.syn_seq {
                Some(seq) => seq != t.seq || f.client_lo != (dir == 0),
                None => false,
            },
            _ => false,
        }
    }

    fn create(&mut self, key: FlowKey, p: &PacketMeta, src_is_lo: bool, out: &mut Vec<Record>) -> u32 {
        if self.index.len() >= self.cfg.max_flows {
            self.expire(self.now, out);
            if self.index.len() >= self.cfg.max_flows {
                self.evict_one(out);
            }
        }
        let (client_is_src, client_by, state) = orientation(p);
        let client_lo = client_is_src == src_is_lo;
        let flow = Flow {
            key,
            id: self.next_id,
            client_lo,
            client_by,
            state,
            first: p.ts,
            last: p.ts,
            dirs: [DirCounters::default(); 2],
            syn_seq: None,
            fin: [false; 2],
            isn: [None; 2],
            class: Class::Other,
            prev: NIL,
            next: NIL,
            app: AppInfo::default(),
            dissect: None,
            inspected: false,
            iface: 0,
        };
        self.next_id += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = flow;
                i
            }
            None => {
                self.slots.push(flow);
                (self.slots.len() - 1) as u32
            }
        };
        let class = class_of(&self.slots[idx as usize]);
        self.slots[idx as usize].class = class;
        self.push_tail(class, idx);
        self.index.insert(key, idx);
        self.counters.created += 1;
        self.counters.live += 1;
        self.counters.peak_live = self.counters.peak_live.max(self.counters.live);
        idx
    }

    fn evict_one(&mut self, out: &mut Vec<Record>) {
        let oldest = (0..CLASSES)
            .filter_map(|c| {
                let h = self.lists[c].head;
                (h != NIL).then(|| (self.slots[h as usize].last, h))
            })
            .min();
        if let Some((_, h)) = oldest {
            self.end(h, EndReason::Evicted, out);
        }
    }

    fn update(&mut self, idx: u32, p: &PacketMeta, dir: usize) {
        let f = &mut self.slots[idx as usize];
        if p.ts < f.first {
            f.first = p.ts;
        }
        if p.ts > f.last {
            f.last = p.ts;
        }
        let d = &mut f.dirs[dir];
        d.packets += u64::from(p.frames);
        d.bytes += p.frame_bytes;
        d.payload_bytes += p.payload_bytes;
        if let Some(t) = p.tcp {
            if t.flags & SYN != 0 && f.isn[dir].is_none() {
                f.isn[dir] = Some(t.seq);
            }
            let from_client = f.client_lo == (dir == 0);
            tcp_transition(f, t, dir, from_client);
        }
        let class = class_of(f);
        self.unlink(idx);
        self.slots[idx as usize].class = class;
        self.push_tail(class, idx);
    }

    fn end(&mut self, idx: u32, reason: EndReason, out: &mut Vec<Record>) {
        self.unlink(idx);
        let f = &mut self.slots[idx as usize];
        if let Some(d) = f.dissect.take() {
            d.finish(out);
        }
        let f = &mut self.slots[idx as usize];
        self.index.remove(&f.key);
        self.free.push(idx);
        self.counters.live -= 1;
        match reason {
            EndReason::IdleTimeout | EndReason::Reused => self.counters.expired += 1,
            EndReason::Evicted => self.counters.evicted += 1,
            EndReason::EndOfInput => self.counters.flushed += 1,
        }
        let (client, server, to_server, to_client) = if f.client_lo {
            (f.key.lo, f.key.hi, f.dirs[0], f.dirs[1])
        } else {
            (f.key.hi, f.key.lo, f.dirs[1], f.dirs[0])
        };
        out.push(Record::Flow(FlowRecord {
            id: f.id,
            start: f.first,
            end: f.last,
            proto: f.key.proto,
            client,
            server,
            vlan: f.key.vlan,
            client_by: f.client_by,
            state: f.state,
            to_server,
            to_client,
            ended_by: reason,
            app: std::mem::take(&mut f.app),
            process: None,
            device: None,
            iface: match f.iface {
                0 => None,
                i => self.iface_names.get(&i).cloned(),
            },
        }));
    }

    fn push_tail(&mut self, class: Class, idx: u32) {
        let l = &mut self.lists[class as usize];
        let old_tail = l.tail;
        l.tail = idx;
        if old_tail == NIL {
            l.head = idx;
        } else {
            self.slots[old_tail as usize].next = idx;
        }
        let f = &mut self.slots[idx as usize];
        f.prev = old_tail;
        f.next = NIL;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, class) = {
            let f = &self.slots[idx as usize];
            (f.prev, f.next, f.class as usize)
        };
        if prev == NIL {
            self.lists[class].head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[class].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let f = &mut self.slots[idx as usize];
        f.prev = NIL;
        f.next = NIL;
    }
}

/// Who is the client of a flow that starts with this packet, how we know, and the first state.
fn orientation(p: &PacketMeta) -> (bool, ClientBy, FlowState) {
    match p.tcp {
        Some(t) if t.flags & (SYN | ACK) == SYN => (true, ClientBy::Syn, FlowState::Handshake),
        Some(t) if t.flags & (SYN | ACK) == SYN | ACK => (false, ClientBy::SynAck, FlowState::Handshake),
        Some(t) => {
            let state = if t.flags & RST != 0 {
                FlowState::Closed
            } else if t.flags & FIN != 0 {
                FlowState::Closing
            } else {
                FlowState::Established
            };
            (
                port_says_client(p.src.port, p.dst.port),
                ClientBy::PortGuess,
                state,
            )
        }
        None if p.proto == 17 && is_service_port(p.src.port) && !is_service_port(p.dst.port) => {
            (false, ClientBy::PortGuess, FlowState::Active)
        }
        None => (true, ClientBy::FirstPacket, FlowState::Active),
    }
}

/// Port heuristic for a flow seen from the middle: is the sender (port `src`) the client?
pub fn port_says_client(src: u16, dst: u16) -> bool {
    match (is_service_port(src), is_service_port(dst)) {
        (false, true) => true,
        (true, false) => false,
        _ => src >= dst,
    }
}

/// Well-known ports, and registered ports that servers commonly listen on.
fn is_service_port(p: u16) -> bool {
    p < 1024
        || matches!(
            p,
            1080 | 1194
                | 1433
                | 1521
                | 1883
                | 1900
                | 2049
                | 3128
                | 3306
                | 3389
                | 3478
                | 4500
                | 5060
                | 5061
                | 5222
                | 5228
                | 5349
                | 5353
                | 5432
                | 5672
                | 5900
                | 6379
                | 6443
                | 6881
                | 8000
                | 8008
                | 8080
                | 8443
                | 8883
                | 8888
                | 9000
                | 9092
                | 9200
                | 11211
                | 19302
                | 27017
        )
}

fn tcp_transition(f: &mut Flow, t: TcpMeta, dir: usize, from_client: bool) {
    let syn = t.flags & SYN != 0;
    let ack = t.flags & ACK != 0;
    if syn && !ack {
        if f.syn_seq.is_none() {
            f.syn_seq = Some(t.seq);
        }
        // A flow picked up mid-stream whose client turns out to be the other side.
        if !from_client && f.client_by != ClientBy::Syn {
            f.client_lo = !f.client_lo;
        }
        f.client_by = ClientBy::Syn;
    }
    if t.flags & RST != 0 {
        f.state = FlowState::Closed;
        return;
    }
    if t.flags & FIN != 0 {
        f.fin[dir] = true;
    }
    f.state = match f.state {
        FlowState::Handshake if ack && !syn => FlowState::Established,
        FlowState::Handshake | FlowState::Established if f.fin[0] || f.fin[1] => FlowState::Closing,
        FlowState::Closing if f.fin[0] && f.fin[1] && ack && t.flags & FIN == 0 => FlowState::Closed,
        s => s,
    };
}

fn class_of(f: &Flow) -> Class {
    match (f.key.proto, f.state) {
        (6, FlowState::Handshake) => Class::TcpHandshake,
        (6, FlowState::Established) => Class::TcpEstablished,
        (6, FlowState::Closing) => Class::TcpClosing,
        (6, _) => Class::TcpClosed,
        (17, _) => Class::Udp,
        _ => Class::Other,
    }
}

/// Convenience for building endpoints.
pub fn ep(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint { ip, port }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const S: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn tcp(ts: i64, from_client: bool, flags: u8, seq: u32, len: u64) -> PacketMeta {
        let (src, dst) = if from_client {
            (ep(C, 50000), ep(S, 443))
        } else {
            (ep(S, 443), ep(C, 50000))
        };
        PacketMeta {
            ts: ts * SEC,
            proto: 6,
            vlan: [0, 0],
            src,
            dst,
            frames: 1,
            frame_bytes: 54 + len,
            payload_bytes: len,
            tcp: Some(TcpMeta { flags, seq }),
        }
    }

    fn udp(ts: i64, sport: u16, dport: u16) -> PacketMeta {
        PacketMeta {
            ts: ts * SEC,
            proto: 17,
            vlan: [0, 0],
            src: ep(C, sport),
            dst: ep(S, dport),
            frames: 1,
            frame_bytes: 100,
            payload_bytes: 58,
            tcp: None,
        }
    }

    fn flows(v: &[Record]) -> Vec<&FlowRecord> {
        v.iter()
            .filter_map(|r| match r {
                Record::Flow(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn reconcile(t: &FlowTable) {
        let c = t.counters();
        assert_eq!(c.created, c.expired + c.evicted + c.flushed + c.live, "{c:?}");
        assert_eq!(c.live as usize, t.index.len());
    }

    #[test]
    fn handshake_data_close_and_reuse() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for p in [
            tcp(0, true, SYN, 100, 0),
            tcp(0, false, SYN | ACK, 900, 0),
            tcp(0, true, ACK, 101, 0),
            tcp(1, true, ACK | 0x08, 101, 300),
            tcp(1, false, ACK, 901, 1000),
            tcp(2, true, FIN | ACK, 401, 0),
            tcp(2, false, FIN | ACK, 1901, 0),
            tcp(2, true, ACK, 402, 0),
        ] {
            t.packet(&p, &mut out);
        }
        assert!(out.is_empty());
        t.packet(&tcp(3, true, SYN, 5000, 0), &mut out); // reuse after close: a new flow
        assert_eq!(out.len(), 1);
        let fl = flows(&out);
        let r = fl[0];
        assert_eq!((r.client, r.server), (ep(C, 50000), ep(S, 443)));
        assert_eq!(
            (r.client_by, r.state, r.ended_by),
            (ClientBy::Syn, FlowState::Closed, EndReason::Reused)
        );
        assert_eq!((r.to_server.packets, r.to_server.payload_bytes), (5, 300));
        assert_eq!((r.to_client.packets, r.to_client.bytes), (3, 54 * 3 + 1000));
        t.flush(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(flows(&out)[1].state, FlowState::Handshake);
        reconcile(&t);
    }

    #[test]
    fn midstream_uses_ports_then_a_syn_settles_it() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        t.packet(&tcp(0, false, ACK, 1, 10), &mut out);
        t.flush(&mut out);
        assert_eq!(
            (flows(&out)[0].client, flows(&out)[0].client_by),
            (ep(C, 50000), ClientBy::PortGuess)
        );
        // SYN-ACK first: the receiver is the client
        let mut t = FlowTable::new(FlowConfig::default());
        out.clear();
        t.packet(&tcp(0, false, SYN | ACK, 1, 0), &mut out);
        t.flush(&mut out);
        assert_eq!(
            (flows(&out)[0].client, flows(&out)[0].client_by),
            (ep(C, 50000), ClientBy::SynAck)
        );
        // UDP from a service port to an ephemeral one: a response seen first
        let mut t = FlowTable::new(FlowConfig::default());
        out.clear();
        t.packet(&udp(0, 53, 40000), &mut out);
        t.packet(&udp(0, 40001, 40002), &mut out);
        t.flush(&mut out);
        assert_eq!(
            (flows(&out)[0].server.port, flows(&out)[0].client_by),
            (53, ClientBy::PortGuess)
        );
        assert_eq!(
            (flows(&out)[1].client.port, flows(&out)[1].client_by),
            (40001, ClientBy::FirstPacket)
        );
    }

    #[test]
    fn idle_timeouts_per_class() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        t.packet(&udp(0, 40000, 53), &mut out);
        t.packet(&tcp(0, true, SYN, 1, 0), &mut out);
        t.packet(&udp(61, 40003, 53), &mut out); // handshake timeout (60 s) passed
        assert_eq!(out.len(), 1);
        assert_eq!(
            (flows(&out)[0].proto, flows(&out)[0].ended_by),
            (6, EndReason::IdleTimeout)
        );
        t.packet(&udp(121, 40003, 53), &mut out); // first UDP flow idle 121 s > 120 s
        assert_eq!(out.len(), 2);
        assert_eq!(flows(&out)[1].client.port, 40000);
        reconcile(&t);
    }

    #[test]
    fn cap_evicts_the_longest_idle_and_counters_reconcile() {
        let cfg = FlowConfig {
            max_flows: 100,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut out = Vec::new();
        for i in 0..1000u16 {
            t.packet(&udp(0, 1024 + i, 53), &mut out);
            if i % 10 == 0 {
                t.packet(&udp(0, 1024, 53), &mut out); // keep the first flow busy
            }
        }
        let c = t.counters();
        assert_eq!((c.created, c.live, c.evicted), (1000, 100, 900));
        assert!(
            flows(&out).iter().all(|r| r.client.port != 1024),
            "the busy flow is never the longest idle"
        );
        reconcile(&t);
        t.flush(&mut out);
        assert_eq!(out.len(), 1000);
        reconcile(&t);
    }
}
