//! LAN devices seen from a gateway (a router, a bridge or a switch's mirror port): who is on the
//! local network, by MAC address, and what each device calls itself.
//!
//! [`LanTracker`] reads captured Ethernet frames (after the engine's layer walk, which it reuses
//! for the IP part) and learns, per source MAC address:
//! - its IPv4 and IPv6 addresses: from the IP source address of frames it sent when that address
//!   is on the LAN ([`LanConfig::prefixes`]), from ARP (sender) and from NDP (a neighbour
//!   advertisement's target with its link-layer option, a solicitation's source with its
//!   link-layer option), which name on-link addresses whatever their prefix;
//! - its DHCP hostname (option 12, else the Client FQDN of option 81) and vendor class
//!   (option 60), from the client's requests (keyed by `chaddr`);
//! - its mDNS names: `.local` A/AAAA answers (and reverse PTR answers) for one of its addresses,
//!   and the service instance names it announces (`Living Room._airplay._tcp.local`);
//! - its vendor, from the IEEE OUI registry through [`MacVendors`], unless the address is locally
//!   administered (randomised "private" addresses of phones): then no vendor is given.
//!
//! It emits a [`DeviceRecord`] when a device is first seen and when something about it changes,
//! and it names the device at the LAN end of a flow ([`FlowDevice`]). Memory is bounded
//! ([`LanConfig::max_devices`], and per device a few addresses and names). No clock, no I/O:
//! the vendor table is looked up through a trait.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use wire::apps::parse_dhcp;
use wire::dns::{self, RData, Section};
use wire::layers::{EtherType, Ethernet, IpProto, Ipv6, Vlan};

use crate::decode::{L4, Net};
use crate::json::Obj;
use crate::record::{Endpoint, SCHEMA_VERSION};

/// A MAC address.
pub type Mac = [u8; 6];

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Is this a locally administered address (bit 1 of the first octet)? Phones and laptops use
/// such random "private" addresses per network; their first three bytes name no vendor.
pub fn is_private_mac(m: &Mac) -> bool {
    m[0] & 0x02 != 0
}

/// A unicast address a device can have (not group, not all zeros).
fn is_device_mac(m: &Mac) -> bool {
    m[0] & 0x01 == 0 && *m != [0; 6]
}

/// The vendor registered for a MAC address prefix (the IEEE OUI registry).
pub trait MacVendors: Send + Sync {
    /// The organisation that registered the prefix of `mac`, `None` when none did (or the
    /// table does not know). Not asked for locally administered addresses.
    fn vendor(&self, mac: &Mac) -> Option<String>;
}

/// An IP prefix (`192.168.1.0/24`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// A prefix that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixError(pub String);

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// Parses `address/length` (a bare address is a host prefix).
    pub fn parse(s: &str) -> Result<Self, PrefixError> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| {
            PrefixError(format!(
                "{s:?} is not an address prefix: write e.g. 192.168.1.0/24 or fd00::/8"
            ))
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(PrefixError(format!(
                        "{s:?}: the prefix length must be a number from 0 to {max}"
                    )));
                }
            },
        };
        Ok(Prefix { addr, len })
    }

    /// Does the prefix hold `ip`?
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0);
                u128::from(p) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }

    /// The private and link-local ranges: 10/8, 172.16/12, 192.168/16, 169.254/16, fc00::/7,
    /// fe80::/10.
    pub fn private_ranges() -> Vec<Prefix> {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "fc00::/7",
            "fe80::/10",
        ]
        .iter()
        .filter_map(|p| Prefix::parse(p).ok())
        .collect()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// How LAN devices are tracked.
#[derive(Clone)]
pub struct LanConfig {
    /// Source addresses that are on the LAN: frames from them teach the sender's MAC. Link-local
    /// addresses always do; ARP and NDP teach on-link addresses whatever these say.
    pub prefixes: Vec<Prefix>,
    /// At most this many devices; the one seen least recently is forgotten first.
    pub max_devices: usize,
    /// The OUI registry; `None`: no vendor names.
    pub vendors: Option<Arc<dyn MacVendors>>,
}

impl Default for LanConfig {
    fn default() -> Self {
        Self {
            prefixes: Prefix::private_ranges(),
            max_devices: 4096,
            vendors: None,
        }
    }
}

impl fmt::Debug for LanConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanConfig")
            .field("prefixes", &self.prefixes)
            .field("max_devices", &self.max_devices)
            .field("vendors", &self.vendors.is_some())
            .finish()
    }
}

const MAX_V4: usize = 8;
const MAX_V6: usize = 16;
const MAX_MDNS_NAMES: usize = 4;
const MAX_INSTANCES: usize = 8;
const MAX_NAME_LEN: usize = 255;

/// What is known about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanDevice {
    pub mac: Mac,
    /// Locally administered (randomised) address: no vendor.
    pub private_mac: bool,
    /// The vendor of the MAC prefix (OUI registry); `None` for private or unregistered ones.
    pub vendor: Option<String>,
    /// DHCP option 12 (or the Client FQDN's name).
    pub hostname: Option<String>,
    /// DHCP option 60 (`android-dhcp-13`, `MSFT 5.0`, `udhcp 1.36.1`).
    pub vendor_class: Option<String>,
    /// mDNS host names (`Alices-iPhone.local`), first learnt first.
    pub mdns_names: Vec<String>,
    /// mDNS service instances it announced (`Living Room._airplay._tcp.local`).
    pub mdns_instances: Vec<String>,
    /// Most recently learnt last.
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl LanDevice {
    fn new(mac: Mac, ts: i64, vendors: Option<&Arc<dyn MacVendors>>) -> Self {
        let private_mac = is_private_mac(&mac);
        let vendor = if private_mac {
            None
        } else {
            vendors.and_then(|v| v.vendor(&mac))
        };
        Self {
            mac,
            private_mac,
            vendor,
            hostname: None,
            vendor_class: None,
            mdns_names: Vec::new(),
            mdns_instances: Vec::new(),
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            first_seen: ts,
            last_seen: ts,
        }
    }

    /// The best name to show: the DHCP hostname, else the first mDNS name without `.local`,
    /// else the first service instance name, else `None`.
    pub fn name(&self) -> Option<&str> {
        self.hostname
            .as_deref()
            .or_else(|| {
                self.mdns_names
                    .first()
                    .map(|n| n.strip_suffix(".local").unwrap_or(n))
            })
            .or_else(|| {
                self.mdns_instances
                    .first()
                    .map(|n| n.split("._").next().unwrap_or(n))
            })
    }

    /// The vendor for people: the registry's name, "private address" for a locally
    /// administered MAC, `None` when unknown.
    pub fn vendor_text(&self) -> Option<&str> {
        if self.private_mac {
            Some("private address")
        } else {
            self.vendor.as_deref()
        }
    }

    fn add_ip(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => push_recent(&mut self.ipv4, a, MAX_V4),
            IpAddr::V6(a) => push_recent(&mut self.ipv6, a, MAX_V6),
        }
    }

    fn has_ip(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.ipv4.contains(a),
            IpAddr::V6(a) => self.ipv6.contains(a),
        }
    }
}

/// Adds `v` as the most recent entry; `true` when it was new. The oldest goes past `max`.
fn push_recent<T: PartialEq>(list: &mut Vec<T>, v: T, max: usize) -> bool {
    if let Some(i) = list.iter().position(|x| *x == v) {
        if i + 1 != list.len() {
            let x = list.remove(i);
            list.push(x);
        }
        return false;
    }
    if list.len() >= max {
        list.remove(0);
    }
    list.push(v);
    true
}

/// Adds a name once; `true` when it was new (names past `max` are not kept).
fn push_name(list: &mut Vec<String>, v: &str, max: usize) -> bool {
    if v.is_empty()
        || v.len() > MAX_NAME_LEN
        || list.len() >= max
        || list.iter().any(|x| x.eq_ignore_ascii_case(v))
    {
        return false;
    }
    list.push(v.to_string());
    true
}

/// `seen` (first time) or `changed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceEvent {
    Seen,
    Changed,
}

impl DeviceEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceEvent::Seen => "seen",
            DeviceEvent::Changed => "changed",
        }
    }
}

/// A device was first seen or something about it changed (record type `device`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The frame that taught it (ns).
    pub ts: i64,
    pub event: DeviceEvent,
    /// What changed (`ipv4`, `ipv6`, `hostname`, `vendor_class`, `mdns_name`, `mdns_instance`);
    /// empty for `seen`.
    pub changed: Vec<&'static str>,
    /// The device as now known.
    pub device: LanDevice,
}

impl DeviceRecord {
    /// One JSON object, no trailing newline.
    pub fn write_json(&self, out: &mut String) {
        let d = &self.device;
        let mut o = Obj::new(out);
        o.str("type", "device")
            .num("v", SCHEMA_VERSION)
            .time("ts", self.ts)
            .str("event", self.event.as_str())
            .str("mac", &mac_text(&d.mac))
            .bool("mac_private", d.private_mac)
            .opt_str("vendor", d.vendor.as_deref())
            .opt_str("name", d.name())
            .opt_str("hostname", d.hostname.as_deref())
            .opt_str("vendor_class", d.vendor_class.as_deref())
            .strs("mdns_names", &d.mdns_names)
            .strs("mdns_instances", &d.mdns_instances)
            .strs("ipv4", d.ipv4.iter().map(|a| a.to_string()))
            .strs("ipv6", d.ipv6.iter().map(|a| a.to_string()))
            .time("first_seen", d.first_seen)
            .strs("changed", &self.changed);
        o.end();
    }
}

/// The LAN device at one end of a flow, as known when the flow ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowDevice {
    pub mac: Mac,
    /// The device is the flow's client (else its server).
    pub client_side: bool,
    pub private_mac: bool,
    pub vendor: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// The first mDNS host name.
    pub mdns_name: Option<String>,
    /// Who owns the flow, for the judgement, stores and summaries that key traffic by app: the
    /// device's name when known, else its MAC address.
    pub label: String,
}

impl FlowDevice {
    /// The JSON object (the flow record's `device` member).
    pub fn json(&self) -> String {
        let mut s = String::new();
        let mut o = Obj::new(&mut s);
        o.str("mac", &mac_text(&self.mac))
            .str("side", if self.client_side { "client" } else { "server" })
            .bool("mac_private", self.private_mac)
            .opt_str("vendor", self.vendor.as_deref())
            .opt_str("name", self.name.as_deref())
            .opt_str("hostname", self.hostname.as_deref())
            .opt_str("mdns_name", self.mdns_name.as_deref());
        o.end();
        s
    }
}

/// The MAC addresses and IP addresses of the frame being ingested.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameAddrs {
    src_mac: Mac,
    dst_mac: Mac,
    src_ip: IpAddr,
    dst_ip: IpAddr,
}

/// Counters of the tracker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LanStats {
    pub devices: u64,
    /// Devices forgotten because the table was full.
    pub evicted: u64,
    pub dhcp_messages: u64,
    pub mdns_messages: u64,
    /// DHCP or mDNS payloads that did not parse.
    pub malformed: u64,
}

/// Devices by MAC, and which device holds which address.
pub struct LanTracker {
    cfg: LanConfig,
    devices: HashMap<Mac, LanDevice, foldhash::fast::RandomState>,
    by_ip: HashMap<IpAddr, Mac, foldhash::fast::RandomState>,
    stats: LanStats,
}

impl fmt::Debug for LanTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanTracker")
            .field("cfg", &self.cfg)
            .field("devices", &self.devices.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Changes found while reading one frame, per device.
#[derive(Default)]
struct Changes {
    items: Vec<(Mac, DeviceEvent, Vec<&'static str>)>,
}

impl Changes {
    fn note(&mut self, mac: Mac, ev: Option<DeviceEvent>, what: Option<&'static str>) {
        let i = match self.items.iter().position(|(m, _, _)| *m == mac) {
            Some(i) => i,
            None => {
                self.items.push((mac, DeviceEvent::Changed, Vec::new()));
                self.items.len() - 1
            }
        };
        let it = &mut self.items[i];
        if ev == Some(DeviceEvent::Seen) {
            it.1 = DeviceEvent::Seen;
        }
        if let Some(w) = what
            && !it.2.contains(&w)
        {
            it.2.push(w);
        }
    }
}

impl LanTracker {
    pub fn new(cfg: LanConfig) -> Self {
        Self {
            cfg,
            devices: HashMap::default(),
            by_ip: HashMap::default(),
            stats: LanStats::default(),
        }
    }

    pub fn stats(&self) -> LanStats {
        LanStats {
            devices: self.devices.len() as u64,
            ..self.stats
        }
    }

    /// The device with this MAC address.
    pub fn device(&self, mac: &Mac) -> Option<&LanDevice> {
        self.devices.get(mac)
    }

    /// Every device, in no particular order.
    pub fn devices(&self) -> impl Iterator<Item = &LanDevice> {
        self.devices.values()
    }

    /// The device that holds `ip`, if one is known to.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<&LanDevice> {
        self.by_ip.get(ip).and_then(|m| self.devices.get(m))
    }

    fn on_lan(&self, ip: &IpAddr) -> bool {
        self.by_ip.contains_key(ip) || self.in_prefixes(ip)
    }

    /// In the configured prefixes, or link-local (169.254/16, fe80::/10: always on the link).
    fn in_prefixes(&self, ip: &IpAddr) -> bool {
        let link_local = match ip {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        };
        link_local || self.cfg.prefixes.iter().any(|p| p.contains(ip))
    }

    /// Reads one Ethernet frame (`net`: the engine's decode of it, when it reached an IP header
    /// without passing a tunnel). Device records go to `out`; returns the frame's addresses for
    /// naming the device of a new flow.
    pub(crate) fn observe(
        &mut self,
        ts: i64,
        frame: &[u8],
        net: Option<&Net<'_>>,
        out: &mut Vec<crate::Record>,
    ) -> Option<FrameAddrs> {
        let Ok(eth) = Ethernet::new_checked(frame) else {
            return None;
        };
        let (src_mac, dst_mac) = (eth.src(), eth.dst());
        let mut changes = Changes::default();
        let (ethertype, payload) = skip_vlans(eth.ethertype(), eth.payload());
        let mut addrs = None;
        if ethertype == EtherType::ARP {
            if let Some((mac, ip)) = arp_sender(payload) {
                self.learn_ip(ts, mac, IpAddr::V4(ip), &mut changes);
            }
        } else if let Some(net) = net {
            addrs = Some(FrameAddrs {
                src_mac,
                dst_mac,
                src_ip: net.src,
                dst_ip: net.dst,
            });
            if is_device_mac(&src_mac) && is_unicast_source(&net.src) && self.in_prefixes(&net.src) {
                self.learn_ip(ts, src_mac, net.src, &mut changes);
            }
            self.message(ts, src_mac, net, ethertype, payload, &mut changes);
        }
        if is_device_mac(&src_mac)
            && let Some(d) = self.devices.get_mut(&src_mac)
        {
            d.last_seen = ts;
        }
        for (mac, ev, what) in changes.items {
            if let Some(d) = self.devices.get(&mac) {
                out.push(crate::Record::Device(Box::new(DeviceRecord {
                    ts,
                    event: ev,
                    changed: if ev == DeviceEvent::Seen { Vec::new() } else { what },
                    device: d.clone(),
                })));
            }
        }
        addrs
    }

    /// DHCP, mDNS and NDP messages in the frame.
    fn message(
        &mut self,
        ts: i64,
        src_mac: Mac,
        net: &Net<'_>,
        ethertype: EtherType,
        ip: &[u8],
        ch: &mut Changes,
    ) {
        match net.l4 {
            L4::Udp {
                sport: 68,
                dport: 67,
                payload,
                ..
            } => {
                self.stats.dhcp_messages += 1;
                match parse_dhcp(payload) {
                    Ok(d) if d.op == 1 && is_device_mac(&d.client_mac) => {
                        let mac = d.client_mac;
                        let host = d.hostname.or(d.client_fqdn);
                        if host.is_none() && d.vendor_class.is_none() {
                            return;
                        }
                        self.ensure(ts, mac, ch);
                        let Some(dev) = self.devices.get_mut(&mac) else {
                            return;
                        };
                        if let Some(h) = host.map(|h| clean(&h))
                            && !h.is_empty()
                            && dev.hostname.as_deref() != Some(h.as_str())
                        {
                            dev.hostname = Some(h);
                            ch.note(mac, None, Some("hostname"));
                        }
                        if let Some(v) = d.vendor_class.map(|v| clean(&v))
                            && !v.is_empty()
                            && dev.vendor_class.as_deref() != Some(v.as_str())
                        {
                            dev.vendor_class = Some(v);
                            ch.note(mac, None, Some("vendor_class"));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => self.stats.malformed += 1,
                }
            }
            L4::Udp {
                sport: 5353, payload, ..
            } if is_device_mac(&src_mac) => {
                self.stats.mdns_messages += 1;
                match dns::parse(payload) {
                    Ok(m) if m.response => self.mdns(ts, src_mac, net.src, &m, ch),
                    Ok(_) => {}
                    Err(_) => self.stats.malformed += 1,
                }
            }
            L4::Icmp {
                v6: true,
                icmp_type: 135 | 136,
                ..
            } if ethertype == EtherType::IPV6 => {
                if let Some((mac, ip)) = ndp(ip, src_mac) {
                    self.learn_ip(ts, mac, IpAddr::V6(ip), ch);
                }
            }
            _ => {}
        }
    }

    /// mDNS answers: host names for the addresses they give, instance names of services the
    /// sender announces.
    fn mdns(&mut self, ts: i64, src_mac: Mac, src_ip: IpAddr, m: &dns::Message, ch: &mut Changes) {
        for rr in m.records.iter().filter(|r| r.section != Section::Authority) {
            if rr.ttl == 0 {
                continue; // a goodbye
            }
            let (owner_ip, name) = match &rr.data {
                RData::A(a) => (IpAddr::V4(*a), rr.name.as_str()),
                RData::Aaaa(a) => (IpAddr::V6(*a), rr.name.as_str()),
                RData::Name(target) if rr.rtype == dns::RrType(12) => match reverse_name(&rr.name) {
                    Some(ip) => (ip, target.as_str()),
                    None => {
                        // A service PTR: `_airplay._tcp.local -> Living Room._airplay._tcp.local`,
                        // sent by the device offering it.
                        if rr.name.starts_with('_')
                            && target.ends_with(".local")
                            && !target.starts_with('_')
                            && self.devices.contains_key(&src_mac)
                        {
                            let t = clean(&unescape_dns(target));
                            if let Some(d) = self.devices.get_mut(&src_mac)
                                && push_name(&mut d.mdns_instances, &t, MAX_INSTANCES)
                            {
                                ch.note(src_mac, None, Some("mdns_instance"));
                            }
                        }
                        continue;
                    }
                },
                _ => continue,
            };
            if !name.to_ascii_lowercase().ends_with(".local") {
                continue;
            }
            // The device holding the address; the sender itself when it is its own address.
            let mac = if owner_ip == src_ip {
                src_mac
            } else {
                match self.by_ip.get(&owner_ip) {
                    Some(m) => *m,
                    None => continue,
                }
            };
            if owner_ip == src_ip && !self.on_lan(&src_ip) {
                continue;
            }
            self.ensure(ts, mac, ch);
            let n = clean(&unescape_dns(name));
            if let Some(d) = self.devices.get_mut(&mac)
                && push_name(&mut d.mdns_names, &n, MAX_MDNS_NAMES)
            {
                ch.note(mac, None, Some("mdns_name"));
            }
        }
    }

    /// Makes sure the device exists (evicting the least recently seen one when full).
    fn ensure(&mut self, ts: i64, mac: Mac, ch: &mut Changes) {
        if self.devices.contains_key(&mac) {
            return;
        }
        if self.devices.len() >= self.cfg.max_devices.max(1) {
            let oldest = self
                .devices
                .values()
                .min_by_key(|d| (d.last_seen, d.mac))
                .map(|d| d.mac);
            if let Some(old) = oldest
                && let Some(d) = self.devices.remove(&old)
            {
                for ip in d
                    .ipv4
                    .iter()
                    .map(|a| IpAddr::V4(*a))
                    .chain(d.ipv6.iter().map(|a| IpAddr::V6(*a)))
                {
                    if self.by_ip.get(&ip) == Some(&old) {
                        self.by_ip.remove(&ip);
                    }
                }
                self.stats.evicted += 1;
            }
        }
        self.devices
            .insert(mac, LanDevice::new(mac, ts, self.cfg.vendors.as_ref()));
        ch.note(mac, Some(DeviceEvent::Seen), None);
    }

    /// `mac` holds `ip` (moving it from another device that had it).
    fn learn_ip(&mut self, ts: i64, mac: Mac, ip: IpAddr, ch: &mut Changes) {
        if !is_device_mac(&mac) || !is_unicast_source(&ip) {
            return;
        }
        self.ensure(ts, mac, ch);
        if self.devices.get(&mac).is_some_and(|d| d.has_ip(&ip)) && self.by_ip.get(&ip) == Some(&mac) {
            return;
        }
        if let Some(prev) = self.by_ip.insert(ip, mac)
            && prev != mac
            && let Some(p) = self.devices.get_mut(&prev)
        {
            p.ipv4.retain(|a| IpAddr::V4(*a) != ip);
            p.ipv6.retain(|a| IpAddr::V6(*a) != ip);
        }
        if let Some(d) = self.devices.get_mut(&mac) {
            // The oldest address pushed out no longer points here.
            let before: Vec<IpAddr> = d
                .ipv4
                .iter()
                .map(|a| IpAddr::V4(*a))
                .chain(d.ipv6.iter().map(|a| IpAddr::V6(*a)))
                .collect();
            if d.add_ip(ip) {
                ch.note(mac, None, Some(if ip.is_ipv4() { "ipv4" } else { "ipv6" }));
                for old in before {
                    if !d.has_ip(&old) && self.by_ip.get(&old) == Some(&mac) {
                        self.by_ip.remove(&old);
                    }
                }
            }
        }
    }

    /// The LAN device at one end of a new flow: the client when it is on the LAN and its MAC is
    /// in the frame, else the server likewise.
    pub(crate) fn flow_end(
        &self,
        a: &FrameAddrs,
        client: &Endpoint,
        server: &Endpoint,
    ) -> Option<(Mac, bool)> {
        for (ep, client_side) in [(client, true), (server, false)] {
            let mac = if ep.ip == a.src_ip {
                a.src_mac
            } else if ep.ip == a.dst_ip {
                a.dst_mac
            } else {
                continue;
            };
            if is_device_mac(&mac) && self.on_lan(&ep.ip) && self.devices.contains_key(&mac) {
                return Some((mac, client_side));
            }
        }
        None
    }

    /// The flow's `device` member for `mac`.
    pub fn flow_device(&self, mac: &Mac, client_side: bool) -> FlowDevice {
        match self.devices.get(mac) {
            Some(d) => FlowDevice {
                mac: *mac,
                client_side,
                private_mac: d.private_mac,
                vendor: d.vendor.clone(),
                name: d.name().map(str::to_string),
                hostname: d.hostname.clone(),
                mdns_name: d.mdns_names.first().cloned(),
                label: d.name().map_or_else(|| mac_text(mac), str::to_string),
            },
            None => FlowDevice {
                mac: *mac,
                client_side,
                private_mac: is_private_mac(mac),
                vendor: None,
                name: None,
                hostname: None,
                mdns_name: None,
                label: mac_text(mac),
            },
        }
    }
}

/// A source address a device can hold (not unspecified, multicast, broadcast or loopback).
fn is_unicast_source(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
    }
}

/// A DNS name in presentation form (`Alice's\\032iPhone`) as text (`Alice's iPhone`): `\\DDD`
/// and `\\X` escapes undone, bytes read as UTF-8.
fn unescape_dns(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let digits = b.get(i + 1..i + 4).filter(|d| d.iter().all(u8::is_ascii_digit));
            if let Some(d) = digits {
                let n = d.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(n) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
            if let Some(&c) = b.get(i + 1) {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Names as shown: printable, no control characters, at most 255 bytes.
fn clean(s: &str) -> String {
    let t: String = s.chars().filter(|c| !c.is_control()).collect();
    let t = t.trim();
    let mut end = t.len().min(MAX_NAME_LEN);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t[..end].to_string()
}

/// Skips 802.1Q/802.1ad tags (at most two).
fn skip_vlans(mut t: EtherType, mut p: &[u8]) -> (EtherType, &[u8]) {
    for _ in 0..2 {
        if !t.is_vlan() {
            break;
        }
        match Vlan::new_checked(p) {
            Ok(v) => {
                t = v.ethertype();
                p = v.payload();
            }
            Err(_) => return (EtherType(0), &[]),
        }
    }
    (t, p)
}

/// The sender of an Ethernet/IPv4 ARP packet: (sender MAC, sender IP), unless it is 0.0.0.0
/// (a probe).
fn arp_sender(p: &[u8]) -> Option<(Mac, Ipv4Addr)> {
    // htype 1, ptype 0x0800, hlen 6, plen 4, op, sha(6), spa(4), tha(6), tpa(4)
    if p.len() < 28 || p[0..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let mac: Mac = p[8..14].try_into().ok()?;
    let ip = Ipv4Addr::new(p[14], p[15], p[16], p[17]);
    (!ip.is_unspecified()).then_some((mac, ip))
}

/// An NDP neighbour solicitation (135) or advertisement (136) with hop limit 255: the address
/// its sender holds and the MAC it gives. NA: the target address with the target link-layer
/// option (else the frame's source MAC, when the NA came from the target itself); NS: the
/// source address with the source link-layer option.
fn ndp(ipv6: &[u8], src_mac: Mac) -> Option<(Mac, Ipv6Addr)> {
    let ip = Ipv6::new_checked(ipv6).ok()?;
    if ip.hop_limit() != 255 || ip.next_header() != IpProto(58) {
        return None;
    }
    let p = ip.payload();
    let ty = *p.first()?;
    let (addr, want_opt) = match ty {
        136 => (Ipv6Addr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?), 2),
        135 => (ip.src(), 1),
        _ => return None,
    };
    if addr.is_unspecified() {
        return None;
    }
    let mut opts = p.get(24..)?;
    let mut mac = None;
    while opts.len() >= 8 {
        let (t, l) = (opts[0], usize::from(opts[1]) * 8);
        if l == 0 || l > opts.len() {
            break;
        }
        if t == want_opt && l >= 8 {
            mac = <[u8; 6]>::try_from(&opts[2..8]).ok();
        }
        opts = &opts[l..];
    }
    match (ty, mac) {
        (_, Some(m)) => Some((m, addr)),
        (136, None) if ip.src() == addr => Some((src_mac, addr)),
        _ => None,
    }
}

/// The address of a reverse-lookup name (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`).
fn reverse_name(name: &str) -> Option<IpAddr> {
    let lower = name.to_ascii_lowercase();
    if let Some(v4) = lower.strip_suffix(".in-addr.arpa") {
        let parts: Vec<u8> = v4.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if parts.len() != 4 {
            return None;
        }
        return Some(IpAddr::V4(Ipv4Addr::new(parts[3], parts[2], parts[1], parts[0])));
    }
    let v6 = lower.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|p| {
            if p.len() == 1 {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        v = v << 4 | u128::from(*n);
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p = Prefix::parse("192.168.1.0/24").unwrap();
        assert!(p.contains(&"192.168.1.77".parse().unwrap()));
        assert!(!p.contains(&"192.168.2.1".parse().unwrap()));
        assert!(!p.contains(&"::1".parse().unwrap()));
        let all = Prefix::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(&"8.8.8.8".parse().unwrap()));
        let v6 = Prefix::parse("fd00::/8").unwrap();
        assert!(v6.contains(&"fd12::1".parse().unwrap()));
        assert!(!v6.contains(&"fe80::1".parse().unwrap()));
        assert!(
            Prefix::parse("10.0.0.1")
                .unwrap()
                .contains(&"10.0.0.1".parse().unwrap())
        );
        let e = Prefix::parse("10.0.0.0/33").unwrap_err();
        assert!(e.0.contains("0 to 32"), "{e}");
        assert!(Prefix::parse("lan").unwrap_err().0.contains("192.168.1.0/24"));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("5.1.168.192.in-addr.arpa"),
            Some("192.168.1.5".parse().unwrap())
        );
        let v6: Ipv6Addr = "fe80::1c2b:3a4d:5e6f:7081".parse().unwrap();
        let nib: Vec<String> = format!("{:032x}", u128::from(v6))
            .chars()
            .rev()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            reverse_name(&format!("{}.ip6.arpa", nib.join("."))),
            Some(IpAddr::V6(v6))
        );
        assert_eq!(reverse_name("1.2.3.in-addr.arpa"), None);
        assert_eq!(reverse_name("_airplay._tcp.local"), None);
    }

    #[test]
    fn dns_escapes() {
        assert_eq!(
            unescape_dns("Alice's\\032iPhone._x._tcp.local"),
            "Alice's iPhone._x._tcp.local"
        );
        assert_eq!(unescape_dns("a\\.b\\\\c"), "a.b\\c");
        assert_eq!(unescape_dns("caf\\195\\169"), "café");
        assert_eq!(unescape_dns("x\\"), "x\\");
        assert_eq!(unescape_dns("\\999"), "999");
    }

    #[test]
    fn private_macs() {
        assert!(is_private_mac(&[0x02, 0, 0, 0, 0, 1]));
        assert!(is_private_mac(&[0xda, 0xa1, 0x19, 0, 0, 1]));
        assert!(!is_private_mac(&[0x3c, 0x22, 0xfb, 0, 0, 1]));
        assert_eq!(
            mac_text(&[0x3c, 0x22, 0xfb, 0x0a, 0xb1, 0xff]),
            "3c:22:fb:0a:b1:ff"
        );
    }

    #[test]
    fn recent_lists_are_bounded() {
        let mut v = Vec::new();
        for i in 0..20u8 {
            push_recent(&mut v, i, 4);
        }
        assert_eq!(v, [16, 17, 18, 19]);
        assert!(!push_recent(&mut v, 17, 4));
        assert_eq!(v, [16, 18, 19, 17]);
    }
}
