//! `netvigil read --gateway`: a capture taken on a router's LAN side (a DHCP request with a
//! hostname, an mDNS announcement, a TCP connection through the router) gives `device` records
//! and flows named by their device; without `--gateway`, neither.

mod common;

use std::net::Ipv4Addr;

use common::*;
use wire::capture::{LinkType, PcapWriter};
use wire::synth::{self, TcpFlags};

const PHONE: [u8; 6] = [0x3c, 0x22, 0xfb, 0x11, 0x22, 0x33];
const ROUTER: [u8; 6] = [0x00, 0x11, 0x32, 0x00, 0x00, 0x01];

fn udp(dst: [u8; 6], src: Ipv4Addr, to: Ipv4Addr, ports: (u16, u16), p: &[u8]) -> Vec<u8> {
    let seg = synth::udp(src.into(), to.into(), ports.0, ports.1, p);
    let ip = synth::ipv4(src, to, synth::PROTO_UDP, 1, &seg);
    synth::ethernet(dst, PHONE, synth::ETHERTYPE_IPV4, &ip)
}

fn tcp(dst: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, to: Ipv4Addr, ports: (u16, u16), flags: u8) -> Vec<u8> {
    let seg = synth::tcp(src.into(), to.into(), ports.0, ports.1, 1, 1, flags, b"");
    synth::ethernet(
        dst,
        src_mac,
        synth::ETHERTYPE_IPV4,
        &synth::ipv4(src, to, synth::PROTO_TCP, 1, &seg),
    )
}

fn capture(path: &std::path::Path) {
    let phone = Ipv4Addr::new(192, 168, 1, 10);
    let server = Ipv4Addr::new(198, 51, 100, 2);
    let mut dhcp = vec![0u8; 236];
    dhcp[..3].copy_from_slice(&[1, 1, 6]);
    dhcp[28..34].copy_from_slice(&PHONE);
    dhcp.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 3, 12, 5]);
    dhcp.extend_from_slice(b"phone");
    dhcp.push(255);
    let mut mdns = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 5];
    mdns.extend_from_slice(b"Phone\x05local\x00");
    mdns.extend_from_slice(&[0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 192, 168, 1, 10]);
    let frames = [
        udp(
            [0xff; 6],
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (68, 67),
            &dhcp,
        ),
        udp(
            [1, 0, 0x5e, 0, 0, 0xfb],
            phone,
            Ipv4Addr::new(224, 0, 0, 251),
            (5353, 5353),
            &mdns,
        ),
        tcp(ROUTER, PHONE, phone, server, (50000, 443), TcpFlags::SYN),
        tcp(
            PHONE,
            ROUTER,
            server,
            phone,
            (443, 50000),
            TcpFlags::SYN | TcpFlags::ACK,
        ),
    ];
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f, LinkType::ETHERNET, 0, false).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        w.write_packet(
            1_700_000_000_000_000_000 + i as i64 * 1_000_000,
            fr.len() as u32,
            fr,
        )
        .unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn read_gateway_names_devices() {
    let dir = temp_dir("gateway-read");
    let pcap = dir.join("lan.pcap");
    capture(&pcap);
    let p = pcap.to_str().unwrap();
    let o = run(&[
        "read",
        "--format",
        "jsonl",
        "--gateway",
        "--lan",
        "192.168.1.0/24",
        p,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gateway mode: LAN devices on 192.168.1.0/24"),
        "{err}"
    );
    let dev = text
        .lines()
        .rfind(|l| l.starts_with("{\"type\":\"device\""))
        .unwrap_or_else(|| panic!("no device record:\n{text}"));
    assert!(dev.contains("\"mac\":\"3c:22:fb:11:22:33\""), "{dev}");
    assert!(dev.contains("\"hostname\":\"phone\""), "{dev}");
    assert!(dev.contains("\"mdns_names\":[\"Phone.local\"]"), "{dev}");
    // The vendor comes from ieee-data or the built-in table: both know Apple's 3c:22:fb.
    assert!(dev.contains("\"vendor\":\"Apple, Inc.\""), "{dev}");
    let flow = text
        .lines()
        .find(|l| l.starts_with("{\"type\":\"flow\"") && l.contains("\"port\":443"))
        .unwrap_or_else(|| panic!("no flow:\n{text}"));
    assert!(
        flow.contains("\"device\":{\"mac\":\"3c:22:fb:11:22:33\",\"side\":\"client\""),
        "{flow}"
    );
    assert!(flow.contains("\"explanation\":\"phone "), "{flow}");

    // Without --gateway: no device anywhere.
    let o = run(&["read", "--format", "jsonl", p]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && !text.contains("\"device\""), "{text}");

    // A bad prefix is refused with a sentence saying what to write.
    let o = run(&["read", "--gateway", "--lan", "192.168.1.0/99", p]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("0 to 32"), "{err}");
}
