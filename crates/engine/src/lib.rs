//! # engine: frames in, flows and records out
//!
//! Contract:
//! - Pure and deterministic: no OS calls, no clock (`now` is always a parameter; `clippy.toml`
//!   bans reading the clock and sleeping), no `unsafe`, no I/O. The same frames in the same order
//!   give the same records in the same order.
//! - Owns the layer walk ([`decode`]), IP fragment reassembly ([`defrag`]), the flow table
//!   ([`flow`]) and the record schema ([`record`]). Defines the traits it consumes; the `os`,
//!   `store` and `netvigil` crates implement them.
//! - Malformed input becomes a named, counted anomaly ([`Anomalies`]), never a panic.
#![forbid(unsafe_code)]

pub mod app_record;
pub mod connections;
pub mod decode;
pub mod defrag;
pub mod dissect;
pub mod enrich;
pub mod flow;
mod json;
pub mod json_read;
pub mod judge;
pub mod lan;
pub mod record;
pub mod sockets;

use std::collections::HashMap;
use std::net::IpAddr;

use app_record::{DhcpRecord, DnsRecord, HttpRecord, QuicRecord, StunRecord, TlsRecord};
use decode::{Anomaly, L4, Net, decode, decode_ip_payload};
use defrag::{DefragConfig, Defragmenter, FragKey, FragOutcome, Fragment};
use dissect::{DissectStats, Dissector, Segment};
use flow::{FlowConfig, FlowCounters, FlowTable, PacketMeta, TcpMeta};
use record::DomainSource;
pub use record::Endpoint;
pub use record::{FlowRecord, SCHEMA_VERSION};
use wire::capture::LinkType;
use wire::layers::IpProto;

/// One captured frame, as a capture file or a live source hands it over.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    pub link: LinkType,
    /// Length on the wire (may exceed `data.len()` when the capture was cut by a snap length).
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Every record the engine emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Flow(FlowRecord),
    Dns(Box<DnsRecord>),
    Tls(Box<TlsRecord>),
    Quic(Box<QuicRecord>),
    Http(Box<HttpRecord>),
    Stun(Box<StunRecord>),
    Dhcp(Box<DhcpRecord>),
    Connection(Box<connections::ConnectionRecord>),
    /// A LAN device first seen or changed (gateway mode).
    Device(Box<lan::DeviceRecord>),
}

impl Record {
    pub fn write_json(&self, out: &mut String) {
        match self {
            Record::Flow(f) => f.write_json(out),
            Record::Dns(r) => r.write_json(out),
            Record::Tls(r) => r.write_json(out),
            Record::Quic(r) => r.write_json(out),
            Record::Http(r) => r.write_json(out),
            Record::Stun(r) => r.write_json(out),
            Record::Dhcp(r) => r.write_json(out),
            Record::Connection(r) => r.write_json(out),
            Record::Device(r) => r.write_json(out),
        }
    }

    /// The record type, as in the JSON `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Flow(_) => "flow",
            Record::Dns(_) => "dns",
            Record::Tls(_) => "tls",
            Record::Quic(_) => "quic",
            Record::Http(_) => "http",
            Record::Stun(_) => "stun",
            Record::Dhcp(_) => "dhcp",
            Record::Connection(_) => "connection",
            Record::Device(_) => "device",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    pub flows: FlowConfig,
    pub defrag: DefragConfig,
    /// Keep a list of flows as they start ([`Engine::take_new_flows`]), so that a live
    /// pipeline can look up their owner while the socket still exists.
    pub report_new_flows: bool,
    /// Keep the first this many payload bytes of each direction of every flow, for the user
    /// who opted in to payload samples ([`Engine::take_samples`]); 0 (the default) keeps none.
    pub sample_bytes: usize,
    /// Gateway mode: track the LAN's devices from Ethernet frames ([`lan`]), emit `device`
    /// records and name the device at the LAN end of each flow. `None` (the default): off.
    pub lan: Option<lan::LanConfig>,
}

/// The first payload bytes of each direction of one flow, in arrival order (a retransmitted
/// TCP segment appears twice; nothing is reassembled).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FlowSamples {
    /// Client to server, then server to client.
    pub bytes: [Vec<u8>; 2],
    /// Time of each direction's first payload (ns).
    pub first_ts: [Option<i64>; 2],
}

impl std::fmt::Debug for FlowSamples {
    // Never print payload bytes: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowSamples")
            .field("to_server_len", &self.bytes[0].len())
            .field("to_client_len", &self.bytes[1].len())
            .finish()
    }
}

/// A flow that just started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewFlow {
    pub id: u64,
    pub ts: i64,
    pub proto: u8,
    pub client: Endpoint,
    pub server: Endpoint,
}

/// Named anomaly counters (Zeek calls them "weirds").
#[derive(Clone, Debug, Default)]
pub struct Anomalies {
    counts: HashMap<Anomaly, u64>,
    named: HashMap<&'static str, u64>,
}

impl Anomalies {
    pub fn add(&mut self, a: Anomaly) {
        *self.counts.entry(a).or_insert(0) += 1;
    }
    pub fn add_named(&mut self, name: &'static str, n: u64) {
        if n > 0 {
            *self.named.entry(name).or_insert(0) += n;
        }
    }
    /// (name, count), most frequent first, then by name.
    pub fn sorted(&self) -> Vec<(String, u64)> {
        let mut m: HashMap<String, u64> = HashMap::new();
        for (a, n) in &self.counts {
            *m.entry(a.name()).or_insert(0) += n;
        }
        for (a, n) in &self.named {
            *m.entry((*a).to_string()).or_insert(0) += n;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.named.values().sum::<u64>()
    }
}

/// Frame-level counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub frames: u64,
    pub frame_bytes: u64,
    /// Frames without an IP header (ARP, LLDP, STP ...).
    pub non_ip_frames: u64,
    /// Frames that could not be decoded to an IP header at all.
    pub undecodable_frames: u64,
    /// IP fragments buffered for reassembly.
    pub fragments: u64,
    /// Datagrams reassembled from fragments.
    pub reassembled: u64,
}

/// The engine: one owner, no locks. Feed frames in time order; take records out.
#[derive(Debug)]
pub struct Engine {
    flows: FlowTable,
    defrag: Defragmenter,
    anomalies: Anomalies,
    stats: EngineStats,
    dissector: Dissector,
    buf: Vec<Record>,
    report_new_flows: bool,
    new_flows: Vec<NewFlow>,
    sample_bytes: usize,
    /// Samples of live flows by flow id, taken when the flow's record is handled.
    samples: HashMap<u64, FlowSamples>,
    /// Gateway mode: the LAN devices.
    lan: Option<lan::LanTracker>,
    /// The addresses of the frame being ingested (gateway mode, untunnelled Ethernet frames).
    frame_addrs: Option<lan::FrameAddrs>,
    /// The LAN device of each live flow that has one: (MAC, device is the client).
    flow_devices: HashMap<u64, (lan::Mac, bool)>,
    /// The interface index of the frame being ingested ([`Engine::ingest_on`]); 0 = unknown.
    frame_iface: u32,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            flows: FlowTable::new(cfg.flows),
            defrag: Defragmenter::new(cfg.defrag),
            anomalies: Anomalies::default(),
            stats: EngineStats::default(),
            dissector: Dissector::default(),
            buf: Vec::new(),
            report_new_flows: cfg.report_new_flows,
            new_flows: Vec::new(),
            sample_bytes: cfg.sample_bytes,
            samples: HashMap::new(),
            lan: cfg.lan.map(lan::LanTracker::new),
            frame_addrs: None,
            flow_devices: HashMap::new(),
            frame_iface: 0,
        }
    }

    /// The LAN device tracker (gateway mode only).
    pub fn lan(&self) -> Option<&lan::LanTracker> {
        self.lan.as_ref()
    }

    /// The payload samples of flow `id` (see [`EngineConfig::sample_bytes`]), removed from the
    /// engine: call it for each flow record when samples are on, or they stay in memory until
    /// [`Engine::clear_samples`].
    pub fn take_samples(&mut self, id: u64) -> Option<FlowSamples> {
        self.samples.remove(&id)
    }

    /// Forgets every sample not taken yet.
    pub fn clear_samples(&mut self) {
        self.samples.clear();
    }

    /// Names network interface `index` (a Linux ifindex, or any number but 0 the caller
    /// chooses): flows first seen on frames given to [`Engine::ingest_on`] with that index carry
    /// `name` as their `iface`. Naming an index again replaces the name for flows that end
    /// afterwards.
    pub fn set_iface_name(&mut self, index: u32, name: &str) {
        self.flows.set_iface_name(index, name);
    }

    /// The name given to interface `index` with [`Engine::set_iface_name`].
    pub fn iface_name(&self, index: u32) -> Option<&str> {
        self.flows.iface_name(index).map(|n| &**n)
    }

    /// [`Engine::ingest`] for a frame captured on interface `iface` (an index named with
    /// [`Engine::set_iface_name`]; 0 = unknown): a flow this frame creates records it. The
    /// interface of a flow is the one it was first seen on; later frames do not change it.
    pub fn ingest_on(&mut self, f: &Frame<'_>, iface: u32, out: &mut Vec<Record>) {
        self.frame_iface = iface;
        self.ingest(f, out);
        self.frame_iface = 0;
    }

    /// Accounts one frame; records of flows that ended go to `out`.
    pub fn ingest(&mut self, f: &Frame<'_>, out: &mut Vec<Record>) {
        self.stats.frames += 1;
        self.stats.frame_bytes += u64::from(f.orig_len);
        let d = decode(f.link, f.data);
        if let Some(a) = d.anomaly {
            self.anomalies.add(a);
        }
        if let Some(lan) = &mut self.lan
            && f.link == LinkType::ETHERNET
        {
            let net = if d.tunnels == 0 { d.net.as_ref() } else { None };
            self.frame_addrs = lan.observe(f.ts, f.data, net, &mut self.buf);
        }
        match d.net {
            None if d.anomaly.is_some() => self.stats.undecodable_frames += 1,
            None => self.stats.non_ip_frames += 1,
            Some(net) => self.net(f.ts, d.vlan, net, 1, u64::from(f.orig_len)),
        }
        self.frame_addrs = None;
        self.drain(out);
    }

    /// Ends idle flows at `now` (a live source calls this when no frames arrive).
    pub fn tick(&mut self, now: i64, out: &mut Vec<Record>) {
        self.flows.expire(now, &mut self.buf);
        self.defrag.expire(now);
        self.drain(out);
    }

    /// End of input: every live flow is written out.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.flows.flush(&mut self.buf);
        let s = *self.defrag.stats();
        self.anomalies.add_named(
            "ip_fragments_never_completed",
            s.fragments_expired + s.fragments_in_flight(),
        );
        self.drain(out);
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }
    pub fn flow_counters(&self) -> FlowCounters {
        self.flows.counters()
    }
    pub fn anomalies(&self) -> &Anomalies {
        &self.anomalies
    }
    pub fn defrag_stats(&self) -> defrag::DefragStats {
        *self.defrag.stats()
    }

    /// Flows started since the last call (only with `report_new_flows`).
    pub fn take_new_flows(&mut self) -> Vec<NewFlow> {
        std::mem::take(&mut self.new_flows)
    }

    pub fn dissect_stats(&self) -> DissectStats {
        self.dissector.stats
    }

    fn drain(&mut self, out: &mut Vec<Record>) {
        if let Some(lan) = &self.lan
            && !self.flow_devices.is_empty()
        {
            for r in &mut self.buf {
                if let Record::Flow(f) = r
                    && let Some((mac, client_side)) = self.flow_devices.remove(&f.id)
                {
                    f.device = Some(Box::new(lan.flow_device(&mac, client_side)));
                }
            }
        }
        out.append(&mut self.buf);
    }

    fn net(&mut self, ts: i64, vlan: [u16; 2], net: Net<'_>, frames: u32, frame_bytes: u64) {
        let mut payload: &[u8] = &[];
        let (sport, dport, payload_bytes, tcp) = match net.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                seq,
                payload_len,
                payload: p,
                ..
            } => {
                payload = p;
                (sport, dport, u64::from(payload_len), Some(TcpMeta { flags, seq }))
            }
            L4::Udp {
                sport,
                dport,
                payload_len,
                payload: p,
            } => {
                payload = p;
                (sport, dport, u64::from(payload_len), None)
            }
            L4::Sctp { sport, dport } => (sport, dport, 0, None),
            L4::Icmp { echo_id, .. } => {
                let id = echo_id.unwrap_or(0);
                (id, id, 0, None)
            }
            L4::Other { payload_len } => (0, 0, u64::from(payload_len), None),
            L4::Fragment {
                offset,
                more,
                ident,
                payload,
                payload_len,
            } => {
                return self.fragment(
                    ts,
                    vlan,
                    net,
                    (offset, more, ident, payload, payload_len),
                    frame_bytes,
                );
            }
        };
        let meta = PacketMeta {
            ts,
            proto: net.proto.0,
            vlan,
            src: Endpoint {
                ip: net.src,
                port: sport,
            },
            dst: Endpoint {
                ip: net.dst,
                port: dport,
            },
            frames,
            frame_bytes,
            payload_bytes,
            tcp,
        };
        let touched = self.flows.packet(&meta, &mut self.buf);
        let flow = self.flows.flow_mut(touched.idx);
        if touched.created {
            flow.set_iface(self.frame_iface);
            if let Some(name) = self.dissector.cache.lookup(&flow.server().ip, ts) {
                flow.app.set_domain(name, DomainSource::Dns);
            }
            if let (Some(lan), Some(a)) = (&self.lan, &self.frame_addrs)
                && let Some(end) = lan.flow_end(a, &flow.client(), &flow.server())
            {
                self.flow_devices.insert(flow.id(), end);
            }
            if self.report_new_flows {
                self.new_flows.push(NewFlow {
                    id: flow.id(),
                    ts,
                    proto: flow.proto(),
                    client: flow.client(),
                    server: flow.server(),
                });
            }
        }
        if self.sample_bytes > 0 && !payload.is_empty() {
            let dir = usize::from(!touched.from_client);
            let s = self.samples.entry(flow.id()).or_default();
            let room = self.sample_bytes.saturating_sub(s.bytes[dir].len());
            if room > 0 {
                s.first_ts[dir].get_or_insert(ts);
                s.bytes[dir].extend_from_slice(&payload[..payload.len().min(room)]);
            }
        }
        if !payload.is_empty() && !flow.inspected {
            let seg = Segment {
                ts,
                from_client: touched.from_client,
                seq: tcp.map(|t| t.seq),
                payload,
                sport,
                dport,
            };
            self.dissector.payload(flow, &seg, &mut self.buf);
        }
    }

    fn fragment(
        &mut self,
        ts: i64,
        vlan: [u16; 2],
        net: Net<'_>,
        (offset, more, ident, payload, payload_len): (usize, bool, u32, &[u8], usize),
        frame_bytes: u64,
    ) {
        self.stats.fragments += 1;
        if payload.len() < payload_len {
            // Cut short by the capture: this datagram can never be reassembled. A first
            // fragment still shows its transport header, and its flow gets this one frame (as
            // tshark counts it); later fragments are counted as an anomaly.
            if offset == 0 {
                self.anomalies.add_named("ip_first_fragment_truncated", 1);
                let inner = decode_ip_payload(net.src, net.dst, net.proto, payload);
                let n = match inner.net {
                    Some(
                        n @ Net {
                            l4: L4::Tcp { .. } | L4::Udp { .. } | L4::Sctp { .. } | L4::Icmp { .. },
                            ..
                        },
                    ) => n,
                    _ => Net {
                        l4: L4::Other {
                            payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
                        },
                        ..net
                    },
                };
                return self.net(ts, vlan, n, 1, frame_bytes);
            }
            self.anomalies.add_named("ip_fragment_truncated", 1);
            return;
        }
        let v6 = net.src.is_ipv6();
        let key = FragKey {
            src: net.src,
            dst: net.dst,
            ident,
            proto: if v6 { 0 } else { net.proto.0 },
            vlan: vlan[0],
        };
        let frag = Fragment {
            offset,
            more,
            next_header: net.proto.0,
            payload,
            claimed_len: payload_len,
            frame_len: u32::try_from(frame_bytes).unwrap_or(u32::MAX),
            ts_nanos: ts,
        };
        match self.defrag.push(key, frag) {
            FragOutcome::Pending => {}
            FragOutcome::Dropped(r) => self.anomalies.add_named(r.name(), 1),
            FragOutcome::Complete(r) => {
                self.stats.reassembled += 1;
                let inner = decode_ip_payload(net.src, net.dst, IpProto(r.next_header), &r.payload);
                if let Some(a) = inner.anomaly {
                    self.anomalies.add(a);
                }
                let inner_net = match inner.net {
                    // A fragment inside a reassembled datagram: counted where it completes.
                    Some(Net {
                        l4: L4::Fragment { .. },
                        ..
                    }) => {
                        self.anomalies.add_named("nested_ip_fragment", 1);
                        None
                    }
                    other => other,
                };
                let n = inner_net.unwrap_or(Net {
                    src: net.src,
                    dst: net.dst,
                    proto: IpProto(r.next_header),
                    l4: L4::Other {
                        payload_len: u32::try_from(r.payload.len()).unwrap_or(u32::MAX),
                    },
                });
                self.net(ts, vlan, n, r.fragments, r.frame_bytes);
            }
        }
    }
}

/// The address family of a flow endpoint, for summaries.
pub fn is_v6(ip: &IpAddr) -> bool {
    ip.is_ipv6()
}
