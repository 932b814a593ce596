//! `netvigil read` behaviour on captures the tests make themselves: a golden record file, bad
//! input, truncated files, and a port-scan flood under a flow cap.

mod common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use wire::capture::{LinkType, PcapNgWriter, PcapWriter};
use wire::synth::{self, TcpFlags};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

/// A small capture with one example of each thing the flow table must get right. Fixture:
/// generated here (not from a public capture), so its expected records are ours to review.
fn synthetic_capture(path: &Path) {
    let c = Ipv4Addr::new(192, 168, 1, 10);
    let s = Ipv4Addr::new(198, 51, 100, 7);
    let (c6, s6): (Ipv6Addr, Ipv6Addr) = ("2001:db8::10".parse().unwrap(), "2001:db8:1::7".parse().unwrap());
    let mut w = PcapNgWriter::new(BufWriter::new(File::create(path).unwrap())).unwrap();
    let eth = w.add_interface(LinkType::ETHERNET, 65535, Some("eth0")).unwrap();
    let raw = w.add_interface(LinkType::RAW, 65535, Some("tun0")).unwrap();
    let mut t = T0;
    let mut put = |w: &mut PcapNgWriter<_>, iface: u32, frame: Vec<u8>, dt: i64| {
        t += dt;
        w.write_packet(iface, t, frame.len() as u32, &frame, None)
            .unwrap();
    };
    let tcp = |from_c: bool, flags: u8, seq: u32, payload: &[u8]| {
        if from_c {
            synth::tcp_ipv4_frame(c, s, 50000, 443, seq, 0, flags, payload)
        } else {
            synth::tcp_ipv4_frame(s, c, 443, 50000, seq, 0, flags, payload)
        }
    };
    // 1. a full TCP connection: handshake, data both ways, FIN/FIN/ACK
    put(&mut w, eth, tcp(true, TcpFlags::SYN, 100, b""), 0);
    put(
        &mut w,
        eth,
        tcp(false, TcpFlags::SYN | TcpFlags::ACK, 500, b""),
        SEC / 100,
    );
    put(&mut w, eth, tcp(true, TcpFlags::ACK, 101, b""), SEC / 100);
    put(
        &mut w,
        eth,
        tcp(true, TcpFlags::ACK | TcpFlags::PSH, 101, &[b'a'; 300]),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        tcp(false, TcpFlags::ACK | TcpFlags::PSH, 501, &[b'b'; 1200]),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        tcp(true, TcpFlags::FIN | TcpFlags::ACK, 401, b""),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        tcp(false, TcpFlags::FIN | TcpFlags::ACK, 1701, b""),
        SEC / 100,
    );
    put(&mut w, eth, tcp(true, TcpFlags::ACK, 402, b""), SEC / 100);
    // 2. the same 4-tuple reused after the close: a new flow (SYN, RST)
    put(&mut w, eth, tcp(true, TcpFlags::SYN, 9000, b""), SEC);
    put(
        &mut w,
        eth,
        tcp(false, TcpFlags::RST | TcpFlags::ACK, 0, b""),
        SEC / 100,
    );
    // 3. a DNS query and answer over UDP inside VLAN 42
    let q = synth::udp(c.into(), s.into(), 40000, 53, &[7; 30]);
    let a = synth::udp(s.into(), c.into(), 53, 40000, &[8; 90]);
    for (src, dst, seg) in [(c, s, q), (s, c, a)] {
        let ip = synth::ipv4(src, dst, 17, 1, &seg);
        put(
            &mut w,
            eth,
            synth::ethernet(
                synth::MAC_B,
                synth::MAC_A,
                0x8100,
                &synth::vlan(0x8100, 42, 0x0800, &ip),
            ),
            SEC / 10,
        );
    }
    // 4. a UDP datagram of 3000 bytes in three IPv4 fragments, delivered out of order
    let big = synth::udp(c.into(), s.into(), 41000, 9999, &[1; 3000]);
    let frags = synth::ipv4_fragments(c, s, 17, 777, &big, 1480);
    for i in [1, 0, 2] {
        put(&mut w, raw, frags[i].clone(), SEC / 100);
    }
    // 5. a ping over IPv6 (echo request and reply) and an ICMP error quoting the TCP flow
    let echo = |src: Ipv6Addr, dst: Ipv6Addr, req: bool| {
        synth::ethernet(
            synth::MAC_B,
            synth::MAC_A,
            0x86dd,
            &synth::ipv6(src, dst, 58, &synth::icmpv6_echo(src, dst, 0x77, 1, req, b"ping")),
        )
    };
    put(&mut w, eth, echo(c6, s6, true), SEC);
    put(&mut w, eth, echo(s6, c6, false), SEC / 100);
    let quoted = synth::ipv4(
        c,
        s,
        6,
        3,
        &synth::tcp(IpAddr::V4(c), IpAddr::V4(s), 50000, 443, 1, 0, TcpFlags::ACK, b""),
    );
    let router = Ipv4Addr::new(192, 168, 1, 1);
    put(
        &mut w,
        eth,
        synth::ethernet(
            synth::MAC_B,
            synth::MAC_A,
            0x0800,
            &synth::ipv4(router, c, 1, 4, &synth::icmpv4_error(3, 3, &quoted[..28])),
        ),
        SEC / 100,
    );
    // 6. a TCP flow picked up in the middle (no SYN): the direction is a port guess
    put(
        &mut w,
        eth,
        synth::tcp_ipv6_frame(s6, c6, 22, 51515, 1, 1, TcpFlags::ACK, &[0; 100]),
        SEC,
    );
    put(
        &mut w,
        eth,
        synth::tcp_ipv6_frame(c6, s6, 51515, 22, 1, 1, TcpFlags::ACK, b""),
        SEC / 100,
    );
    // 7. a UDP flow that idles out (> 120 s) and comes back: two flows
    put(&mut w, eth, synth::udp_ipv4_frame(c, s, 42000, 5000, b"one"), SEC);
    put(
        &mut w,
        eth,
        synth::udp_ipv4_frame(c, s, 42000, 5000, b"two"),
        200 * SEC,
    );
    // 8. naming: a DNS answer, then TLS and HTTP to the answered address, then a UDP flow that
    //    only the DNS answer names
    let resolver = Ipv4Addr::new(192, 0, 2, 53);
    let web = Ipv4Addr::new(198, 51, 100, 80);
    let q = dns_message(0x1234, false, "www.example.org", None);
    let a = dns_message(0x1234, true, "www.example.org", Some(web));
    put(
        &mut w,
        eth,
        synth::udp_ipv4_frame(c, resolver, 40100, 53, &q),
        SEC,
    );
    put(
        &mut w,
        eth,
        synth::udp_ipv4_frame(resolver, c, 53, 40100, &a),
        SEC / 100,
    );
    let to_web = |sport: u16, dport: u16, out: bool, flags: u8, seq: u32, p: &[u8]| {
        if out {
            synth::tcp_ipv4_frame(c, web, sport, dport, seq, 0, flags, p)
        } else {
            synth::tcp_ipv4_frame(web, c, dport, sport, seq, 0, flags, p)
        }
    };
    let hello = client_hello("www.example.org");
    put(
        &mut w,
        eth,
        to_web(50443, 443, true, TcpFlags::SYN, 1000, b""),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        to_web(50443, 443, false, TcpFlags::SYN | TcpFlags::ACK, 7000, b""),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        to_web(50443, 443, true, TcpFlags::ACK, 1001, b""),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        to_web(50443, 443, true, TcpFlags::ACK | TcpFlags::PSH, 1001, &hello),
        SEC / 100,
    );
    let get = b"GET /index.html HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8.5.0\r\n\r\n";
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";
    put(
        &mut w,
        eth,
        to_web(50080, 80, true, TcpFlags::SYN, 2000, b""),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        to_web(50080, 80, false, TcpFlags::SYN | TcpFlags::ACK, 9000, b""),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        to_web(50080, 80, true, TcpFlags::ACK | TcpFlags::PSH, 2001, get),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        to_web(50080, 80, false, TcpFlags::ACK | TcpFlags::PSH, 9001, ok),
        SEC / 100,
    );
    put(
        &mut w,
        eth,
        synth::udp_ipv4_frame(c, web, 43000, 5000, b"x"),
        SEC / 100,
    );
    w.finish().unwrap().flush().unwrap();
}

/// A DNS query for `name` (type A), or its answer with one A record (TTL 300).
fn dns_message(id: u16, response: bool, name: &str, answer: Option<Ipv4Addr>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(a) = answer {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
        m.extend_from_slice(&a.octets());
    }
    m
}

/// A TLS record with a ClientHello: SNI, ALPN h2 and http/1.1, TLS 1.3 and 1.2 offered.
fn client_hello(sni: &str) -> Vec<u8> {
    fn ext(t: u16, body: &[u8]) -> Vec<u8> {
        let mut e = t.to_be_bytes().to_vec();
        e.extend_from_slice(&(body.len() as u16).to_be_bytes());
        e.extend_from_slice(body);
        e
    }
    let mut sni_list = vec![0];
    sni_list.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sni_list.extend_from_slice(sni.as_bytes());
    let mut sni_body = (sni_list.len() as u16).to_be_bytes().to_vec();
    sni_body.extend_from_slice(&sni_list);
    let alpn_list = b"\x02h2\x08http/1.1";
    let mut alpn = (alpn_list.len() as u16).to_be_bytes().to_vec();
    alpn.extend_from_slice(alpn_list);
    let mut exts = ext(0x0000, &sni_body);
    exts.extend(ext(0x0010, &alpn));
    exts.extend(ext(0x002b, &[4, 3, 4, 3, 3]));
    exts.extend(ext(0x000d, &[0, 2, 4, 3]));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

#[test]
fn golden_records_of_a_synthetic_capture() {
    let dir = temp_dir("golden");
    let cap = dir.join("synthetic.pcapng");
    synthetic_capture(&cap);
    let out = run(&["read", "--format", "jsonl", "--alerts", cap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = stdout(&out);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/synthetic.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("tests/golden/synthetic.jsonl (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        got,
        want,
        "records differ from {}; review and rerun with UPDATE_GOLDEN=1 if intended",
        golden.display()
    );
    // The same capture as CSV: a header and one row per flow.
    let csv = run(&["read", "--format", "csv", cap.to_str().unwrap()]);
    let csv = stdout(&csv);
    assert!(csv.starts_with("type,id,start,end,l4,client_ip"));
    let flows = got
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"flow\""))
        .count();
    assert_eq!(csv.lines().count(), flows + 1);
    // The names reach the flows: from the ClientHello, the Host header and the DNS answer.
    for (needle, source) in [
        ("\"server\":{\"ip\":\"198.51.100.80\",\"port\":443}", "tls_sni"),
        ("\"ip\":\"198.51.100.80\",\"port\":80}", "http_host"),
        ("\"ip\":\"198.51.100.80\",\"port\":5000}", "dns"),
    ] {
        let line = got
            .lines()
            .find(|l| l.starts_with("{\"type\":\"flow\"") && l.contains(needle))
            .expect(needle);
        assert!(
            line.contains(&format!(
                "\"domain\":\"www.example.org\",\"domain_source\":\"{source}\""
            )),
            "{line}"
        );
    }
    // And the table names the hosts and protocols.
    let table = stdout(&run(&["read", cap.to_str().unwrap()]));
    for needle in [
        "tcp",
        "udp",
        "icmpv6",
        "198.51.100.7",
        "2001:db8:1::7",
        "(direction guessed)",
    ] {
        assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
    }
}

#[test]
fn bad_files_are_reported_and_the_others_still_read() {
    let dir = temp_dir("bad");
    let good = dir.join("good.cap");
    synthetic_capture(&good);
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a capture\n").unwrap();
    let missing = dir.join("missing.pcap");
    let out = run(&[
        "read",
        "--format",
        "jsonl",
        missing.to_str().unwrap(),
        text.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("missing.pcap") && err.contains("no such file"),
        "{err}"
    );
    assert!(
        err.contains("notes.txt") && err.contains("not a capture"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "one line per bad file:\n{err}");
    assert!(
        stdout(&out).lines().count() >= 8,
        "the good file after the bad ones was still read"
    );
}

#[test]
fn a_truncated_last_record_is_a_warning() {
    let dir = temp_dir("trunc");
    let cap = dir.join("cut.pcap");
    {
        let mut w = PcapWriter::new(File::create(&cap).unwrap(), LinkType::ETHERNET, 65535, false).unwrap();
        for i in 0..10u32 {
            let f = synth::udp_ipv4_frame(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                40000,
                5000,
                &[0; 100],
            );
            w.write_packet(T0 + i64::from(i) * SEC, f.len() as u32, &f)
                .unwrap();
        }
        w.finish().unwrap();
    }
    let len = std::fs::metadata(&cap).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cap)
        .unwrap()
        .set_len(len - 40)
        .unwrap();
    let out = run(&["read", "--format", "jsonl", cap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("WARN") && err.contains("cut short") && err.contains("9 packets"),
        "{err}"
    );
    assert_eq!(json_u64(&stdout(&out), "packets"), Some(9));
}

/// Writes `n` SYNs from one scanner to distinct (address, port) targets: a port scan.
fn syn_flood(path: &PathBuf, n: u32) {
    let mut w = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, File::create(path).unwrap()),
        LinkType::ETHERNET,
        96,
        false,
    )
    .unwrap();
    let scanner = Ipv4Addr::new(203, 0, 113, 66);
    for i in 0..n {
        let target = Ipv4Addr::from(0x0a00_0000 | (i >> 10));
        let port = 1 + (i & 0x3ff) as u16;
        let f = synth::tcp_ipv4_frame(scanner, target, 40000, port, i, 0, TcpFlags::SYN, b"");
        w.write_packet(T0 + i64::from(i) * 1000, f.len() as u32, &f)
            .unwrap();
    }
    w.finish().unwrap().flush().unwrap();
}

#[test]
fn a_million_syn_scan_stays_under_256_mib_and_counters_reconcile() {
    const N: u32 = 1_000_000;
    let dir = temp_dir("flood");
    let cap = dir.join("synscan.pcap");
    syn_flood(&cap, N);
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "GNU time (/usr/bin/time) is needed to measure peak memory: apt-get install time"
    );
    let out = Command::new(time)
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_netvigil"))
        .args([
            "read",
            "--format",
            "jsonl",
            "--max-flows",
            "100000",
            "--stats",
            cap.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let rss_kib: u64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's peak RSS line");
    eprintln!(
        "peak RSS {} MiB for {N} SYNs with --max-flows 100000",
        rss_kib / 1024
    );
    assert!(
        rss_kib < 256 * 1024,
        "peak RSS {rss_kib} KiB is not under 256 MiB"
    );
    let stats = err
        .lines()
        .find(|l| l.starts_with("{\"type\":\"read_stats\""))
        .expect("stats line");
    let get = |k: &str| json_u64(stats, k).unwrap();
    assert_eq!(get("created"), u64::from(N));
    assert_eq!(
        get("created"),
        get("expired") + get("evicted") + get("flushed") + get("live"),
        "{stats}"
    );
    assert_eq!(get("live"), 0);
    assert_eq!(get("peak_live"), 100_000, "the cap holds");
    assert!(get("evicted") >= 800_000, "{stats}");
    let text = stdout(&out);
    let flows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"flow\""))
        .collect();
    assert_eq!(flows.len(), N as usize, "one record per flow");
    // A scan from one host raises a handful of alerts, not one per flow.
    assert!(text.lines().count() - flows.len() < 10, "alerts stay few");
    let packets: u64 = flows.iter().map(|l| json_u64(l, "packets").unwrap()).sum();
    assert_eq!(packets, u64::from(N), "every SYN counted once");
    let _ = std::fs::remove_dir_all(&dir);
}
