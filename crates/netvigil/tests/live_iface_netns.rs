//! `netvigil run` on all interfaces of a network namespace this test creates: each flow
//! carries the interface it was captured on (`iface`): the veth for traffic to the peer
//! namespace, `lo` for loopback, and a veth pair added after the capture opened (the name of
//! its sending end looked up when its first frame arrives). Traffic stays inside the test's namespaces.
//!
//! Needs root (namespaces, capture). Without root: a note, or a failure when CI=true.

mod common;

use common::netns::*;

/// Sends two UDP datagrams to each address given (port 9), 100 ms apart.
const SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(2):
    for a in sys.argv[1:]:
        s.sendto(b"netvigil-iface", (a, 9))
    time.sleep(0.1)
"#;

#[test]
fn live_flows_carry_the_interface_they_were_captured_on() {
    if !need_root() {
        return;
    }
    let n = Netns::new("if");
    let (nv, out) = start_netvigil(&n, &n.b, 3.0, &[]);
    // Interfaces that did not exist when the capture opened: a veth pair inside the namespace
    // (its far end answers nothing; a static neighbour entry spares the ARP exchange). The
    // datagram is seen leaving on `late` first, then arriving on its peer: the flow is `late`'s.
    let (late, peer) = ("nviflate0", "nviflate1");
    sh(&[
        "ip", "-n", &n.b, "link", "add", late, "type", "veth", "peer", "name", peer,
    ]);
    sh(&["ip", "-n", &n.b, "addr", "add", "10.232.77.1/24", "dev", late]);
    sh(&["ip", "-n", &n.b, "link", "set", peer, "up"]);
    sh(&["ip", "-n", &n.b, "link", "set", late, "up"]);
    sh(&[
        "ip",
        "-n",
        &n.b,
        "neigh",
        "add",
        "10.232.77.2",
        "lladdr",
        "02:00:0a:e8:4d:02",
        "dev",
        late,
    ]);
    let st = n
        .exec(
            &n.b,
            &[python(), "-c", SEND, &n.addr_a, "127.0.0.1", "10.232.77.2"],
        )
        .status()
        .expect("python3");
    assert!(st.success(), "the sender failed: {st}");
    let text = out.join().expect("netvigil output");
    drop(nv);

    let flows = records(&text, "flow");
    let udp_to = |ip: &str| -> String {
        let server = format!("\"server\":{{\"ip\":\"{ip}\",\"port\":9}}");
        let found: Vec<&String> = flows
            .iter()
            .filter(|l| l.contains("\"l4\":\"udp\"") && l.contains(&server))
            .collect();
        assert_eq!(found.len(), 1, "one UDP flow to {ip}:9 in\n{text}");
        found[0].clone()
    };
    for (ip, iface) in [
        (n.addr_a.as_str(), n.veth_b.as_str()),
        ("127.0.0.1", "lo"),
        ("10.232.77.2", late),
    ] {
        let f = udp_to(ip);
        assert_eq!(json_str(&f, "iface"), Some(iface), "flow to {ip}: {f}");
        // The record reads back with its interface.
        match engine::Record::from_json(&f).expect("flow reads back") {
            engine::Record::Flow(r) => assert_eq!(r.iface.as_deref(), Some(iface)),
            other => panic!("not a flow: {other:?}"),
        }
    }
    // Every flow of a live capture has its interface.
    for f in &flows {
        assert!(
            f.contains("\"iface\":\""),
            "a live flow without its interface: {f}"
        );
    }
}
