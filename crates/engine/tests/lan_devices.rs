//! Gateway mode: LAN devices learnt from frames (IP headers, ARP, NDP, DHCP, mDNS), `device`
//! records, and flows named by the device at their LAN end. Frames are built with `wire::synth`
//! as a router's LAN interface sees them: devices talk to the router's MAC, answers come from it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use engine::lan::{DeviceEvent, LanConfig, Mac, MacVendors, Prefix};
use engine::{Engine, EngineConfig, Frame, Record};
use proptest::prelude::*;
use wire::capture::LinkType;
use wire::synth::{self, TcpFlags};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

/// An Apple OUI (3c:22:fb is registered to Apple, Inc.).
const PHONE: Mac = [0x3c, 0x22, 0xfb, 0x11, 0x22, 0x33];
/// Locally administered: a randomised address; its first bytes are also an "Apple" prefix in
/// the fake table below, which must not be used for it.
const PRIVATE: Mac = [0xda, 0xa1, 0x19, 0x44, 0x55, 0x66];
const ROUTER: Mac = [0x00, 0x11, 0x32, 0x00, 0x00, 0x01];
const BCAST: Mac = [0xff; 6];

const PHONE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
const PRIV_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 20);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// A fake registry: every non-private prefix starting 3c or da is "Apple, Inc.".
struct Table;
impl MacVendors for Table {
    fn vendor(&self, mac: &Mac) -> Option<String> {
        matches!(mac[0], 0x3c | 0xda).then(|| "Apple, Inc.".to_string())
    }
}

fn engine(max_devices: usize) -> Engine {
    Engine::new(EngineConfig {
        lan: Some(LanConfig {
            max_devices,
            vendors: Some(Arc::new(Table)),
            ..LanConfig::default()
        }),
        ..EngineConfig::default()
    })
}

fn feed(e: &mut Engine, ts: i64, frame: &[u8], out: &mut Vec<Record>) {
    e.ingest(
        &Frame {
            ts,
            link: LinkType::ETHERNET,
            orig_len: frame.len() as u32,
            data: frame,
        },
        out,
    );
}

fn v4(dst: Mac, src: Mac, (sip, dip): (Ipv4Addr, Ipv4Addr), proto: u8, l4: &[u8]) -> Vec<u8> {
    synth::ethernet(
        dst,
        src,
        synth::ETHERTYPE_IPV4,
        &synth::ipv4(sip, dip, proto, 1, l4),
    )
}

fn udp4(dst: Mac, src: Mac, sip: Ipv4Addr, dip: Ipv4Addr, sport: u16, dport: u16, p: &[u8]) -> Vec<u8> {
    v4(
        dst,
        src,
        (sip, dip),
        synth::PROTO_UDP,
        &synth::udp(sip.into(), dip.into(), sport, dport, p),
    )
}

fn tcp4(dst: Mac, src: Mac, sip: Ipv4Addr, dip: Ipv4Addr, ports: (u16, u16), flags: u8) -> Vec<u8> {
    let seg = synth::tcp(sip.into(), dip.into(), ports.0, ports.1, 1, 1, flags, b"");
    v4(dst, src, (sip, dip), synth::PROTO_TCP, &seg)
}

/// A DHCPREQUEST from `mac` with options 12 (hostname) and 60 (vendor class).
pub fn dhcp_request(mac: Mac, hostname: &str, vendor_class: &str) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 3]);
    p.extend_from_slice(&[12, hostname.len() as u8]);
    p.extend_from_slice(hostname.as_bytes());
    p.extend_from_slice(&[60, vendor_class.len() as u8]);
    p.extend_from_slice(vendor_class.as_bytes());
    p.push(255);
    p
}

fn dns_name(out: &mut Vec<u8>, name: &str) {
    for l in name.split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

/// An mDNS announcement: `host` A `ip`, and `service` PTR `instance`.
pub fn mdns_announce(host: &str, ip: Ipv4Addr, service: &str, instance: &str) -> Vec<u8> {
    let mut m = vec![0, 0, 0x84, 0, 0, 0, 0, 2, 0, 0, 0, 0];
    dns_name(&mut m, host);
    m.extend_from_slice(&[0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4]);
    m.extend_from_slice(&ip.octets());
    dns_name(&mut m, service);
    let mut rdata = Vec::new();
    dns_name(&mut rdata, instance);
    m.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0x11, 0x94, 0, rdata.len() as u8]);
    m.extend_from_slice(&rdata);
    m
}

/// A neighbour advertisement from `mac` for `target` with the target link-layer option.
fn ndp_na(mac: Mac, target: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut ip = synth::ipv6(target, all_nodes, synth::PROTO_ICMPV6, &icmp);
    ip[7] = 255; // hop limit: NDP must come from the link itself
    synth::ethernet([0x33, 0x33, 0, 0, 0, 1], mac, synth::ETHERTYPE_IPV6, &ip)
}

fn arp_reply(mac: Mac, ip: Ipv4Addr, to: Mac, to_ip: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 2];
    a.extend_from_slice(&mac);
    a.extend_from_slice(&ip.octets());
    a.extend_from_slice(&to);
    a.extend_from_slice(&to_ip.octets());
    synth::ethernet(to, mac, 0x0806, &a)
}

fn devices(records: &[Record]) -> Vec<&engine::lan::DeviceRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Device(d) => Some(&**d),
            _ => None,
        })
        .collect()
}

fn flows(records: &[Record]) -> Vec<&engine::FlowRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// Two devices as a router's LAN side sees them.
fn lan_capture() -> Vec<Record> {
    let mut e = engine(64);
    let mut out = Vec::new();
    let mut t = T0;
    let mut next = |e: &mut Engine, f: Vec<u8>, out: &mut Vec<Record>| {
        t += SEC / 10;
        feed(e, t, &f, out);
    };
    // The phone: DHCP (from 0.0.0.0, broadcast), then mDNS, then a TCP connection out.
    let any = Ipv4Addr::UNSPECIFIED;
    let dhcp = dhcp_request(PHONE, "alices-iphone", "iOS-17");
    next(
        &mut e,
        udp4(BCAST, PHONE, any, Ipv4Addr::BROADCAST, 68, 67, &dhcp),
        &mut out,
    );
    let mdns = mdns_announce(
        "Alices-iPhone.local",
        PHONE_IP,
        "_companion-link._tcp.local",
        "Alice's iPhone._companion-link._tcp.local",
    );
    let group = Ipv4Addr::new(224, 0, 0, 251);
    next(
        &mut e,
        udp4(
            [1, 0, 0x5e, 0, 0, 0xfb],
            PHONE,
            PHONE_IP,
            group,
            5353,
            5353,
            &mdns,
        ),
        &mut out,
    );
    next(
        &mut e,
        tcp4(ROUTER, PHONE, PHONE_IP, SERVER, (50000, 443), TcpFlags::SYN),
        &mut out,
    );
    next(
        &mut e,
        tcp4(
            PHONE,
            ROUTER,
            SERVER,
            PHONE_IP,
            (443, 50000),
            TcpFlags::SYN | TcpFlags::ACK,
        ),
        &mut out,
    );
    // The private-address laptop: ARP, NDP, then UDP out; the first packet of a second flow
    // comes from the server (inbound), so the device is that flow's server.
    next(
        &mut e,
        arp_reply(PRIVATE, PRIV_IP, ROUTER, Ipv4Addr::new(192, 168, 50, 1)),
        &mut out,
    );
    next(&mut e, ndp_na(PRIVATE, "2001:db8::20".parse().unwrap()), &mut out);
    next(
        &mut e,
        udp4(ROUTER, PRIVATE, PRIV_IP, SERVER, 40000, 9999, b"hello"),
        &mut out,
    );
    next(
        &mut e,
        udp4(PRIVATE, ROUTER, SERVER, PRIV_IP, 7000, 8000, b"in"),
        &mut out,
    );
    // Routed traffic between two outside hosts: no device.
    next(
        &mut e,
        udp4(ROUTER, ROUTER, Ipv4Addr::new(203, 0, 113, 1), SERVER, 1, 2, b"x"),
        &mut out,
    );
    e.finish(&mut out);
    out
}

#[test]
fn devices_are_named_by_dhcp_mdns_and_vendor() {
    let out = lan_capture();
    let recs = devices(&out);
    let phone: Vec<_> = recs.iter().filter(|d| d.device.mac == PHONE).collect();
    assert_eq!(phone[0].event, DeviceEvent::Seen, "{phone:#?}");
    let last = &phone.last().unwrap().device;
    assert_eq!(last.hostname.as_deref(), Some("alices-iphone"));
    assert_eq!(last.vendor_class.as_deref(), Some("iOS-17"));
    assert_eq!(last.mdns_names, ["Alices-iPhone.local"]);
    assert_eq!(last.mdns_instances, ["Alice's iPhone._companion-link._tcp.local"]);
    assert_eq!(last.vendor.as_deref(), Some("Apple, Inc."));
    assert!(!last.private_mac);
    assert_eq!(last.ipv4, [PHONE_IP]);
    assert!(
        phone.iter().any(|d| d.changed.contains(&"mdns_name")),
        "{phone:#?}"
    );

    let lap = &recs.iter().rfind(|d| d.device.mac == PRIVATE).unwrap().device;
    assert!(lap.private_mac);
    assert_eq!(lap.vendor, None, "a private address names no vendor");
    assert_eq!(lap.vendor_text(), Some("private address"));
    assert_eq!(lap.ipv4, [PRIV_IP]);
    assert_eq!(lap.ipv6, ["2001:db8::20".parse::<Ipv6Addr>().unwrap()]);

    // The router's MAC is never given the outside addresses it forwards.
    assert!(recs.iter().all(|d| d.device.mac != ROUTER), "{recs:#?}");

    let mut json = String::new();
    out.iter()
        .find(|r| matches!(r, Record::Device(_)))
        .unwrap()
        .write_json(&mut json);
    assert!(json.starts_with("{\"type\":\"device\",\"v\":1,"), "{json}");
    assert!(json.contains("\"mac\":\"3c:22:fb:11:22:33\""), "{json}");
}

#[test]
fn flows_carry_the_lan_device() {
    let out = lan_capture();
    let fl = flows(&out);
    let tcp = fl.iter().find(|f| f.proto == 6).unwrap();
    let d = tcp.device.as_ref().expect("the phone's flow names it");
    assert_eq!(d.mac, PHONE);
    assert!(d.client_side);
    assert_eq!(d.hostname.as_deref(), Some("alices-iphone"));
    assert_eq!(d.mdns_name.as_deref(), Some("Alices-iPhone.local"));
    assert_eq!(d.vendor.as_deref(), Some("Apple, Inc."));
    let mut json = String::new();
    Record::Flow((*tcp).clone()).write_json(&mut json);
    assert!(
        json.contains("\"device\":{\"mac\":\"3c:22:fb:11:22:33\",\"side\":\"client\",\"mac_private\":false,\"vendor\":\"Apple, Inc.\",\"name\":\"alices-iphone\""),
        "{json}"
    );

    let out_udp = fl.iter().find(|f| f.server.port == 9999).unwrap();
    let d = out_udp.device.as_ref().unwrap();
    assert_eq!((d.mac, d.client_side, d.private_mac), (PRIVATE, true, true));
    assert_eq!(d.vendor, None);
    let inbound = fl.iter().find(|f| f.server.port == 8000).unwrap();
    assert_eq!(inbound.client.ip, IpAddr::V4(SERVER));
    let d = inbound.device.as_ref().unwrap();
    assert_eq!((d.mac, d.client_side), (PRIVATE, false));

    let outside = fl
        .iter()
        .find(|f| f.client.ip == IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)))
        .unwrap();
    assert_eq!(outside.device, None);
}

#[test]
fn off_by_default() {
    let mut e = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    feed(
        &mut e,
        T0,
        &tcp4(ROUTER, PHONE, PHONE_IP, SERVER, (1, 443), TcpFlags::SYN),
        &mut out,
    );
    e.finish(&mut out);
    assert!(devices(&out).is_empty());
    assert!(flows(&out).iter().all(|f| f.device.is_none()));
    assert!(e.lan().is_none());
}

#[test]
fn device_table_is_bounded_and_forgets_the_least_recent() {
    let mut e = engine(2);
    let mut out = Vec::new();
    for i in 0..5u8 {
        let mac = [0x00, 0x11, 0x32, 0, 0, 0x10 + i];
        let ip = Ipv4Addr::new(192, 168, 50, 100 + i);
        feed(
            &mut e,
            T0 + i64::from(i) * SEC,
            &udp4(ROUTER, mac, ip, SERVER, 1000, 53, b"q"),
            &mut out,
        );
    }
    let lan = e.lan().unwrap();
    assert_eq!(lan.stats().devices, 2);
    assert_eq!(lan.stats().evicted, 3);
    let mut macs: Vec<u8> = lan.devices().map(|d| d.mac[5]).collect();
    macs.sort();
    assert_eq!(macs, [0x13, 0x14]);
    // The forgotten device's address no longer points to it.
    assert!(
        lan.owner_of(&IpAddr::V4(Ipv4Addr::new(192, 168, 50, 100)))
            .is_none()
    );
    assert_eq!(
        lan.owner_of(&IpAddr::V4(Ipv4Addr::new(192, 168, 50, 104)))
            .unwrap()
            .mac[5],
        0x14
    );
}

#[test]
fn an_address_moves_to_its_new_holder() {
    let mut e = engine(16);
    let mut out = Vec::new();
    let a: Mac = [0x00, 0x11, 0x32, 0, 0, 0xa];
    let b: Mac = [0x00, 0x11, 0x32, 0, 0, 0xb];
    feed(
        &mut e,
        T0,
        &udp4(ROUTER, a, PHONE_IP, SERVER, 1, 2, b""),
        &mut out,
    );
    feed(
        &mut e,
        T0 + SEC,
        &udp4(ROUTER, b, PHONE_IP, SERVER, 3, 4, b""),
        &mut out,
    );
    let lan = e.lan().unwrap();
    assert_eq!(lan.owner_of(&IpAddr::V4(PHONE_IP)).unwrap().mac, b);
    assert!(lan.device(&a).unwrap().ipv4.is_empty());
}

#[test]
fn lan_prefixes_decide_which_sources_teach() {
    let mut e = Engine::new(EngineConfig {
        lan: Some(LanConfig {
            prefixes: vec![Prefix::parse("192.168.50.0/24").unwrap()],
            ..LanConfig::default()
        }),
        ..EngineConfig::default()
    });
    let mut out = Vec::new();
    // 10.0.0.7 is private but not in the configured LAN.
    feed(
        &mut e,
        T0,
        &udp4(ROUTER, PHONE, Ipv4Addr::new(10, 0, 0, 7), SERVER, 1, 2, b""),
        &mut out,
    );
    assert_eq!(e.lan().unwrap().stats().devices, 0);
    feed(
        &mut e,
        T0,
        &udp4(ROUTER, PHONE, PHONE_IP, SERVER, 1, 2, b""),
        &mut out,
    );
    assert_eq!(e.lan().unwrap().stats().devices, 1);
}

fn gateway_frames() -> Vec<Vec<u8>> {
    let any = Ipv4Addr::UNSPECIFIED;
    vec![
        udp4(
            BCAST,
            PHONE,
            any,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &dhcp_request(PHONE, "h", "v"),
        ),
        udp4(
            [1, 0, 0x5e, 0, 0, 0xfb],
            PHONE,
            PHONE_IP,
            Ipv4Addr::new(224, 0, 0, 251),
            5353,
            5353,
            &mdns_announce("a.local", PHONE_IP, "_x._tcp.local", "i._x._tcp.local"),
        ),
        ndp_na(PRIVATE, "fe80::1".parse().unwrap()),
        arp_reply(PRIVATE, PRIV_IP, ROUTER, PHONE_IP),
        tcp4(ROUTER, PHONE, PHONE_IP, SERVER, (1, 443), TcpFlags::SYN),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Damaged DHCP, mDNS, NDP and ARP frames never panic the tracker, and its tables stay
    /// within their bounds.
    #[test]
    fn damaged_gateway_frames_never_panic(
        edits in proptest::collection::vec((0usize..5, any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..24)
    ) {
        let base = gateway_frames();
        let mut e = engine(3);
        let mut out = Vec::new();
        for (n, (which, at, byte, cut)) in edits.into_iter().enumerate() {
            let mut f = base[which].clone();
            let i = at.index(f.len());
            if cut { f.truncate(i) } else { f[i] = byte }
            feed(&mut e, T0 + n as i64 * SEC, &f, &mut out);
        }
        e.finish(&mut out);
        let lan = e.lan().unwrap();
        prop_assert!(lan.stats().devices <= 3);
        for d in lan.devices() {
            prop_assert!(d.ipv4.len() <= 8 && d.ipv6.len() <= 16 && d.mdns_names.len() <= 4);
        }
    }
}

#[test]
fn the_judgement_names_the_device_as_the_app() {
    let out = lan_capture();
    let fl = flows(&out);
    let cfg = engine::judge::Config::default();
    let tcp = fl.iter().find(|f| f.proto == 6).unwrap();
    let s = engine::judge::Subject::from_flow(tcp, &cfg);
    assert_eq!(s.app(), Some("alices-iphone"));
    assert_eq!(s.local.ip(), IpAddr::V4(PHONE_IP));
    // The device is the server of the inbound flow: its end is the local one.
    let inbound = fl.iter().find(|f| f.server.port == 8000).unwrap();
    let s = engine::judge::Subject::from_flow(inbound, &cfg);
    assert_eq!(s.direction, engine::connections::Direction::Inbound);
    assert_eq!(s.local.ip(), IpAddr::V4(PRIV_IP));
    // No name known: the MAC address.
    assert_eq!(s.app(), Some("da:a1:19:44:55:66"));
}
