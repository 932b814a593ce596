//! Gateway mode in network namespaces this test creates: two client namespaces on a Linux
//! bridge (`br0`) in a "router" namespace that forwards to a server namespace. `netvigil run
//! --gateway --interface br0` runs in the router. Each client sends a DHCP request with a
//! hostname, an mDNS announcement of its name, a TCP exchange and a UDP exchange with the
//! server. The flows must come out per device (MAC, hostname, mDNS name, vendor), in the JSON
//! lines and in the store. Client 1's MAC has an Apple prefix; client 2's is locally
//! administered (a randomised "private" address: no vendor).
//!
//! Needs root (namespaces, capture) and Python 3. Traffic stays between the namespaces.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::*;
use common::*;

/// A DHCPREQUEST (broadcast, options 12 and 60), an mDNS announcement (A record of its .local
/// name), a TCP exchange and a UDP exchange with the server, a UDP datagram to ff02::1 (from its
/// IPv6 link-local address). Args: MAC, hostname, mDNS name,
/// own address, server address, device.
const CLIENT: &str = r#"
import socket, struct, sys, time
mac, host, mdns, ip, server, dev = sys.argv[1:7]
m = bytes.fromhex(mac.replace(':', ''))
p = bytearray(236)
p[0], p[1], p[2] = 1, 1, 6
p[4:8] = b'\x12\x34\x56\x78'
p[28:34] = m
vc = b'netvigil-test'
p += b'\x63\x82\x53\x63' + bytes([53, 1, 3, 12, len(host)]) + host.encode() + bytes([60, len(vc)]) + vc + bytes([255])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.bind(('0.0.0.0', 68))
s.sendto(bytes(p), ('255.255.255.255', 67))
def name(n):
    return b''.join(bytes([len(l)]) + l.encode() for l in n.split('.')) + b'\0'
msg = struct.pack('>HHHHHH', 0, 0x8400, 0, 1, 0, 0) + name(mdns) + struct.pack('>HHIH', 1, 0x8001, 120, 4) + socket.inet_aton(ip)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
u.bind((ip, 5353))
u.sendto(msg, ('224.0.0.251', 5353))
c = socket.create_connection((server, 8080), timeout=5)
c.sendall(b'hello from ' + host.encode())
assert c.recv(100) == b'ok'
c.close()
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.settimeout(5)
d.sendto(b'ping', (server, 9999))
assert d.recvfrom(100)[0] == b'pong'
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(30):
    try:
        v6.sendto(b'x', ('ff02::1', 9, 0, socket.if_nametoindex(dev)))
        break
    except OSError:
        time.sleep(0.1)  # the link-local address is not ready yet
print('done', flush=True)
"#;

/// TCP 8080 answers "ok", UDP 9999 answers "pong"; at most 60 s.
const SERVER: &str = r#"
import socket, sys, threading
addr = sys.argv[1]
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, 8080))
t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((addr, 9999))
def tcp():
    while True:
        c, _ = t.accept()
        c.recv(100)
        c.sendall(b'ok')
        c.close()
def udp():
    while True:
        d, a = u.recvfrom(100)
        u.sendto(b'pong', a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print('ready', flush=True)
threading.Event().wait(60)
"#;

/// Namespaces created here beyond the two of `Netns`; removed on drop.
struct Extra(Vec<String>);
impl Drop for Extra {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Client {
    ns: String,
    dev: String,
    mac: &'static str,
    ip: &'static str,
    host: &'static str,
    mdns: &'static str,
}

/// The last `device` record of a MAC address.
fn last_device<'a>(text: &'a str, mac: &str) -> &'a str {
    let pat = format!("\"mac\":\"{mac}\"");
    text.lines()
        .rfind(|l| l.starts_with("{\"type\":\"device\"") && l.contains(&pat))
        .unwrap_or_else(|| panic!("no device record for {mac} in:\n{text}"))
}

#[test]
fn gateway_reports_flows_per_lan_device() {
    if !need_root() {
        return;
    }
    // Router (a) and server (b) joined by a veth pair of 10.231.<id>.0/24.
    let n = Netns::new("gw");
    let id = std::process::id() % 200 + 20;
    let (router, server) = (n.a.clone(), n.b.clone());
    let server_ip = n.addr_b.clone();
    let clients = [
        Client {
            ns: format!("nvgwc1{id}"),
            dev: format!("gwc1{id}"),
            // 3c:22:fb is registered to Apple, Inc.
            mac: "3c:22:fb:00:77:10",
            ip: "192.168.77.10",
            host: "alices-iphone",
            mdns: "Alices-iPhone.local",
        },
        Client {
            ns: format!("nvgwc2{id}"),
            dev: format!("gwc2{id}"),
            // 0x5a: the locally administered bit is set (a randomised address).
            mac: "5a:11:22:33:77:20",
            ip: "192.168.77.20",
            host: "living-room-tv",
            mdns: "Living-Room-TV.local",
        },
    ];
    let _extra = Extra(clients.iter().map(|c| c.ns.clone()).collect());
    sh(&["ip", "-n", &router, "link", "add", "br0", "type", "bridge"]);
    sh(&[
        "ip",
        "-n",
        &router,
        "addr",
        "add",
        "192.168.77.1/24",
        "dev",
        "br0",
    ]);
    sh(&["ip", "-n", &router, "link", "set", "br0", "up"]);
    for (i, c) in clients.iter().enumerate() {
        let _ = Command::new("ip")
            .args(["netns", "del", &c.ns])
            .stderr(std::process::Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &c.ns]);
        let port = format!("gwr{}{id}", i + 1);
        sh(&[
            "ip", "link", "add", &c.dev, "netns", &c.ns, "type", "veth", "peer", "name", &port, "netns",
            &router,
        ]);
        sh(&["ip", "-n", &c.ns, "link", "set", &c.dev, "address", c.mac]);
        sh(&[
            "ip",
            "-n",
            &c.ns,
            "addr",
            "add",
            &format!("{}/24", c.ip),
            "dev",
            &c.dev,
        ]);
        // No duplicate address detection: the link-local address is usable at once.
        let dad = format!("net.ipv6.conf.{}.accept_dad=0", c.dev);
        sh(&["ip", "netns", "exec", &c.ns, "sysctl", "-qw", &dad]);
        sh(&["ip", "-n", &c.ns, "link", "set", &c.dev, "up"]);
        sh(&["ip", "-n", &c.ns, "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "-n",
            &c.ns,
            "route",
            "add",
            "default",
            "via",
            "192.168.77.1",
        ]);
        sh(&["ip", "-n", &router, "link", "set", &port, "master", "br0"]);
        sh(&["ip", "-n", &router, "link", "set", &port, "up"]);
    }
    sh(&[
        "ip",
        "netns",
        "exec",
        &router,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    sh(&[
        "ip",
        "-n",
        &server,
        "route",
        "add",
        "192.168.77.0/24",
        "via",
        &n.addr_a,
    ]);

    let _srv = spawn_until(
        n.exec(&server, &[python(), "-c", SERVER, &server_ip]),
        false,
        "ready",
    );
    let data = temp_dir("gateway-data");
    let (nv, out) = start_netvigil(
        &n,
        &router,
        6.0,
        &[
            "--gateway",
            "--interface",
            "br0",
            "--lan",
            "192.168.77.0/24",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    // The capture is open once it said so; give the ring a moment, then the clients talk.
    std::thread::sleep(Duration::from_millis(300));
    for c in &clients {
        let o = n
            .exec(
                &c.ns,
                &[
                    python(),
                    "-c",
                    CLIENT,
                    c.mac,
                    c.host,
                    c.mdns,
                    c.ip,
                    &server_ip,
                    &c.dev,
                ],
            )
            .output()
            .expect("run the client script");
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("done"),
            "client {}: {}",
            c.host,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = out.join().expect("netvigil's output");
    drop(nv);

    // One device per client, named by DHCP, mDNS and the vendor registry.
    let d1 = last_device(&text, clients[0].mac);
    assert!(d1.contains("\"hostname\":\"alices-iphone\""), "{d1}");
    assert!(d1.contains("\"vendor_class\":\"netvigil-test\""), "{d1}");
    assert!(d1.contains("\"mdns_names\":[\"Alices-iPhone.local\"]"), "{d1}");
    assert!(d1.contains("\"vendor\":\"Apple, Inc.\""), "{d1}");
    assert!(d1.contains("\"mac_private\":false"), "{d1}");
    assert!(d1.contains("\"ipv4\":[\"192.168.77.10\"]"), "{d1}");
    let d2 = last_device(&text, clients[1].mac);
    assert!(d2.contains("\"hostname\":\"living-room-tv\""), "{d2}");
    assert!(d2.contains("\"mdns_names\":[\"Living-Room-TV.local\"]"), "{d2}");
    assert!(d2.contains("\"mac_private\":true,\"vendor\":null"), "{d2}");
    // The router forwards the server's packets: its MAC never becomes a device holding the
    // server's address.
    assert!(
        !records(&text, "device")
            .iter()
            .any(|l| l.contains(&format!("\"{server_ip}\""))),
        "{text}"
    );

    // IPv6 link-local traffic is the device's too, though --lan named only an IPv4 prefix.
    for c in &clients {
        let f = to_server(&text, "flow", "udp", "ff02::1", 9);
        let mine: Vec<&String> = f
            .iter()
            .filter(|f| f.contains(&format!("\"mac\":\"{}\"", c.mac)))
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{} link-local flows of {}:\n{text}",
            mine.len(),
            c.host
        );
        assert!(mine[0].contains("\"client\":{\"ip\":\"fe80::"), "{}", mine[0]);
    }

    // Each client's TCP and UDP flows carry its device.
    for c in &clients {
        let vendor = if c.mac.starts_with("3c:22:fb") {
            "\"vendor\":\"Apple, Inc.\""
        } else {
            "\"vendor\":null"
        };
        for (l4, port) in [("tcp", 8080), ("udp", 9999)] {
            let flows: Vec<String> = to_server(&text, "flow", l4, &server_ip, port)
                .into_iter()
                .filter(|f| f.contains(&format!("\"client\":{{\"ip\":\"{}\"", c.ip)))
                .collect();
            assert_eq!(
                flows.len(),
                1,
                "{} {l4} flows of {}:\n{text}",
                flows.len(),
                c.host
            );
            let f = &flows[0];
            let dev = &f[f.find("\"device\":{").unwrap_or_else(|| panic!("no device: {f}"))..];
            assert!(
                dev.contains(&format!("\"mac\":\"{}\",\"side\":\"client\"", c.mac)),
                "{f}"
            );
            assert!(dev.contains(&format!("\"hostname\":\"{}\"", c.host)), "{f}");
            assert!(dev.contains(&format!("\"mdns_name\":\"{}\"", c.mdns)), "{f}");
            assert!(dev.contains(vendor), "{f}");
        }
    }

    // The store keeps the device records and names each flow's owner by its device.
    let db = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "db" || x == "sqlite"))
        .unwrap_or_else(|| panic!("no database in {}", data.display()));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let devices: Vec<String> = conn
        .prepare("SELECT json FROM events WHERE kind = 8 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        devices
            .iter()
            .any(|j| j.contains("\"hostname\":\"alices-iphone\"")),
        "{devices:?}"
    );
    assert!(
        devices
            .iter()
            .any(|j| j.contains("\"hostname\":\"living-room-tv\"")),
        "{devices:?}"
    );
    let owners: Vec<String> = conn
        .prepare(
            "SELECT DISTINCT s.s FROM flows f JOIN strings s ON s.id = f.app_id WHERE f.server_port IN (8080, 9999)",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut owners = owners;
    owners.sort();
    assert_eq!(owners, ["alices-iphone", "living-room-tv"]);
}

/// A switch's mirror port: the client (a) and the server (b) talk over their own veth pair;
/// `tc mirred` copies every frame of the client's link, both directions, to a third namespace
/// where netvigil captures on the receiving interface, addressed to no one there.
#[test]
fn gateway_on_a_mirror_port() {
    if !need_root() {
        return;
    }
    let n = Netns::new("gm");
    let id = std::process::id() % 200 + 20;
    let (client_ns, server) = (n.a.clone(), n.b.clone());
    let mon = format!("nvgmm{id}");
    let _extra = Extra(vec![mon.clone()]);
    let _ = Command::new("ip")
        .args(["netns", "del", &mon])
        .stderr(std::process::Stdio::null())
        .status();
    sh(&["ip", "netns", "add", &mon]);
    let (tap, span) = (format!("gmt{id}"), format!("gms{id}"));
    sh(&[
        "ip", "link", "add", &tap, "netns", &client_ns, "type", "veth", "peer", "name", &span, "netns", &mon,
    ]);
    sh(&["ip", "-n", &client_ns, "link", "set", &tap, "up"]);
    sh(&["ip", "-n", &mon, "link", "set", &span, "up"]);
    // The client's MAC (an Apple prefix) is set before the mirror starts.
    let mac = "3c:22:fb:00:99:01";
    sh(&["ip", "-n", &client_ns, "link", "set", &n.veth_a, "address", mac]);
    sh(&[
        "ip",
        "-n",
        &client_ns,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        &n.veth_a,
    ]);
    sh(&["tc", "-n", &client_ns, "qdisc", "add", "dev", &n.veth_a, "clsact"]);
    // u32 matching everything (cls_u32 is in every kernel; matchall is a module not all have).
    for dir in ["ingress", "egress"] {
        sh(&[
            "tc", "-n", &client_ns, "filter", "add", "dev", &n.veth_a, dir, "protocol", "all", "u32",
            "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", &tap,
        ]);
    }
    let _srv = spawn_until(
        n.exec(&server, &[python(), "-c", SERVER, &n.addr_b]),
        false,
        "ready",
    );
    let (nv, out) = start_netvigil(&n, &mon, 5.0, &["--gateway", "--interface", &span]);
    std::thread::sleep(Duration::from_millis(300));
    let o = n
        .exec(
            &client_ns,
            &[
                python(),
                "-c",
                CLIENT,
                mac,
                "kitchen-speaker",
                "Kitchen.local",
                &n.addr_a,
                &n.addr_b,
                &n.veth_a,
            ],
        )
        .output()
        .expect("run the client script");
    assert!(
        o.status.success(),
        "client: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = out.join().expect("netvigil's output");
    drop(nv);

    let d = last_device(&text, mac);
    assert!(d.contains("\"hostname\":\"kitchen-speaker\""), "{d}");
    assert!(d.contains("\"mdns_names\":[\"Kitchen.local\"]"), "{d}");
    assert!(d.contains("\"vendor\":\"Apple, Inc.\""), "{d}");
    for (l4, port) in [("tcp", 8080), ("udp", 9999)] {
        let flows = to_server(&text, "flow", l4, &n.addr_b, port);
        assert_eq!(flows.len(), 1, "{l4}:\n{text}");
        let f = &flows[0];
        assert!(
            f.contains(&format!("\"device\":{{\"mac\":\"{mac}\",\"side\":\"client\"")),
            "{f}"
        );
        assert!(f.contains("\"hostname\":\"kitchen-speaker\""), "{f}");
        // Both directions were mirrored: the answers are counted too.
        assert!(dir_counts(f, "to_client").0 >= 1, "{f}");
    }
}
