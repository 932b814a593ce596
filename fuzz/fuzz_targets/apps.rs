//! Arbitrary bytes as the first payload of a UDP or TCP direction: the first 4 bytes are the
//! source and destination ports (big-endian), the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::apps::{App, identify_tcp, identify_udp, parse_dhcp, ssh_banner};

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b, c, d], p)) = data.split_first_chunk::<4>() else {
        return;
    };
    let (sport, dport) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    let udp = identify_udp(p, sport, dport);
    assert_eq!(udp, identify_udp(p, dport, sport), "ports are not symmetric");
    if udp == Some(App::Dhcp) {
        assert!(parse_dhcp(p).is_ok());
    }
    let tcp = identify_tcp(p, sport, dport);
    if let Some(banner) = ssh_banner(p) {
        assert!(p.starts_with(banner.as_bytes()) && banner.len() < p.len());
        assert!(banner.starts_with("SSH-"));
        assert_eq!(tcp, Some(App::Ssh));
    }
    let _ = parse_dhcp(p);
});
