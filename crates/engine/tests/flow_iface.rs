//! The capture interface of live flows: a flow records the interface it was first seen on
//! ([`Engine::ingest_on`] with a name from [`Engine::set_iface_name`]), writes it as `iface`
//! only when known, and reads it back.

use std::net::Ipv4Addr;

use engine::{Engine, EngineConfig, FlowRecord, Frame, Record};
use wire::capture::LinkType;
use wire::synth::{self, TcpFlags};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;
const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 9);

fn frame(data: &[u8], ts: i64) -> Frame<'_> {
    Frame {
        ts,
        link: LinkType::ETHERNET,
        orig_len: data.len() as u32,
        data,
    }
}

fn flows(out: &[Record]) -> Vec<&FlowRecord> {
    let mut v: Vec<&FlowRecord> = out
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    v.sort_by_key(|f| f.id);
    v
}

#[test]
fn flows_carry_the_interface_they_were_first_seen_on() {
    let mut e = Engine::new(EngineConfig::default());
    e.set_iface_name(2, "eth0");
    e.set_iface_name(7, "wlan0");
    assert_eq!(e.iface_name(7), Some("wlan0"));
    assert_eq!(e.iface_name(3), None);
    let mut out = Vec::new();
    // Flow 1: a TCP connection first seen on eth0; its answer arrives on wlan0 (asymmetric
    // routing): the flow stays on eth0.
    let syn = synth::tcp_ipv4_frame(A, B, 40000, 443, 1, 0, TcpFlags::SYN, &[]);
    let syn_ack = synth::tcp_ipv4_frame(B, A, 443, 40000, 9, 2, TcpFlags::SYN | TcpFlags::ACK, &[]);
    e.ingest_on(&frame(&syn, T0), 2, &mut out);
    e.ingest_on(&frame(&syn_ack, T0 + 1000), 7, &mut out);
    // Flow 2: UDP on wlan0.
    let dns = synth::udp_ipv4_frame(C, B, 5353, 53, b"x");
    e.ingest_on(&frame(&dns, T0 + 2000), 7, &mut out);
    // Flow 3: plain `ingest` (a capture file): no interface.
    let other = synth::udp_ipv4_frame(C, A, 6000, 6001, b"y");
    e.ingest(&frame(&other, T0 + 3000), &mut out);
    // Flow 4: an index nobody named: no interface.
    let unnamed = synth::udp_ipv4_frame(A, C, 7000, 7001, b"z");
    e.ingest_on(&frame(&unnamed, T0 + 4000), 3, &mut out);
    // A frame given to `ingest_on` does not leak its interface into the next `ingest`.
    let after = synth::udp_ipv4_frame(B, C, 8000, 8001, b"w");
    e.ingest(&frame(&after, T0 + 5000), &mut out);
    e.finish(&mut out);
    let f = flows(&out);
    let got: Vec<(u64, Option<&str>)> = f.iter().map(|f| (f.id, f.iface.as_deref())).collect();
    assert_eq!(
        got,
        vec![
            (1, Some("eth0")),
            (2, Some("wlan0")),
            (3, None),
            (4, None),
            (5, None)
        ]
    );
    // Flow 1 counted both packets, whichever interface they came on.
    assert_eq!(f[0].to_server.packets + f[0].to_client.packets, 2);

    // JSON: `"iface"` only when known, and read back the same.
    for &r in &f {
        let mut line = String::new();
        r.write_json(&mut line);
        assert_eq!(line.contains("\"iface\""), r.iface.is_some(), "{line}");
        let back = match Record::from_json(&line).unwrap() {
            Record::Flow(b) => b,
            other => panic!("not a flow: {other:?}"),
        };
        assert_eq!(&back, r);
    }
    let mut line = String::new();
    f[1].write_json(&mut line);
    assert!(line.contains(",\"iface\":\"wlan0\""), "{line}");
}

#[test]
fn a_new_connection_on_the_same_tuple_takes_the_interface_of_its_first_frame() {
    let mut e = Engine::new(EngineConfig::default());
    e.set_iface_name(4, "br0");
    e.set_iface_name(5, "veth1");
    let mut out = Vec::new();
    let syn = synth::tcp_ipv4_frame(A, B, 40001, 80, 100, 0, TcpFlags::SYN, &[]);
    let rst = synth::tcp_ipv4_frame(B, A, 80, 40001, 0, 101, TcpFlags::RST | TcpFlags::ACK, &[]);
    e.ingest_on(&frame(&syn, T0), 4, &mut out);
    e.ingest_on(&frame(&rst, T0 + 1000), 4, &mut out);
    // The same 4-tuple again, well after the reset, with a new initial sequence number.
    let syn2 = synth::tcp_ipv4_frame(A, B, 40001, 80, 90_000, 0, TcpFlags::SYN, &[]);
    e.ingest_on(&frame(&syn2, T0 + 20 * SEC), 5, &mut out);
    e.finish(&mut out);
    let got: Vec<Option<&str>> = flows(&out).iter().map(|f| f.iface.as_deref()).collect();
    assert_eq!(got, vec![Some("br0"), Some("veth1")]);
}

#[test]
fn renaming_an_index_applies_to_flows_that_end_afterwards() {
    let mut e = Engine::new(EngineConfig::default());
    e.set_iface_name(9, "old0");
    let mut out = Vec::new();
    let d = synth::udp_ipv4_frame(A, B, 1234, 5678, b"q");
    e.ingest_on(&frame(&d, T0), 9, &mut out);
    e.set_iface_name(9, "new0");
    e.finish(&mut out);
    assert_eq!(flows(&out)[0].iface.as_deref(), Some("new0"));
    // Index 0 means "unknown" and cannot be named.
    e.set_iface_name(0, "nothing");
    assert_eq!(e.iface_name(0), None);
}

#[test]
fn bad_iface_values_are_refused_with_the_field_named() {
    let base = "{\"type\":\"flow\",\"v\":1,\"id\":1,\"start\":\"2021-05-13T10:41:47.870345Z\",\"end\":\"2021-05-13T10:41:48.608100Z\",\"l4\":\"udp\",\"client\":{\"ip\":\"10.0.0.1\",\"port\":1},\"server\":{\"ip\":\"10.0.0.2\",\"port\":2},\"vlan\":null,\"client_by\":\"first_packet\",\"state\":\"active\",\"to_server\":{\"packets\":1,\"bytes\":60,\"payload_bytes\":1},\"to_client\":{\"packets\":0,\"bytes\":0,\"payload_bytes\":0},\"ended_by\":\"end_of_input\",\"app_proto\":null,\"domain\":null,\"domain_source\":null";
    let ok = format!("{base},\"iface\":\"eth0\"}}");
    match Record::from_json(&ok).unwrap() {
        Record::Flow(f) => assert_eq!(f.iface.as_deref(), Some("eth0")),
        other => panic!("{other:?}"),
    }
    let absent = format!("{base}}}");
    match Record::from_json(&absent).unwrap() {
        Record::Flow(f) => assert_eq!(f.iface, None),
        other => panic!("{other:?}"),
    }
    let long = "x".repeat(engine::json_read::MAX_IFACE_LEN + 1);
    for bad in ["\"\"", "3", "[\"eth0\"]", &format!("\"{long}\"")] {
        let line = format!("{base},\"iface\":{bad}}}");
        let e = Record::from_json(&line).unwrap_err().to_string();
        assert!(e.contains("iface"), "{bad}: {e}");
    }
}
