//! Live AF_PACKET capture between two throw-away network namespaces joined by a veth pair.
//!
//! Needs root and `ip` (iproute2). Without them the tests print a note and pass, except when
//! `CI=true`, where they fail. Addresses are configured inside the two namespaces only, and
//! traffic only flows between them; the namespaces are deleted at the end, also on failure.
//!
//! The capture rate benchmark is ignored by default:
//! `cargo test -p os --test afpacket_netns -- --ignored --nocapture`.
#![cfg(target_os = "linux")]

mod common;

use common::{Lab, enter_netns};

use os::linux::afpacket::{AfPacket, CaptureStats, Interfaces, LiveFrame, RingConfig, compile_filter};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use wire::capture::LinkType;

/// Every test gives up after this long.
const OVERALL: Duration = Duration::from_secs(30);
const UDP_PORT: u16 = 47001;
const TCP_PORT: u16 = 47002;
const HOW: &str = "cargo test -p os --test afpacket_netns";

/// The parts of a captured IPv4 TCP/UDP frame the assertions look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
    /// Transport payload bytes, from `orig_len` and the headers.
    payload: usize,
    tcp_flags: u8,
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    flow: Option<Flow>,
    orig_len: u32,
    outgoing: bool,
    ifindex: u32,
    link: LinkType,
}

fn classify(f: &LiveFrame<'_>) -> Rec {
    let d = f.data;
    let flow = (|| {
        if f.link != LinkType::ETHERNET || d.get(12..14)? != [0x08, 0x00] {
            return None;
        }
        let ihl = usize::from(d.get(14)? & 0x0f) * 4;
        let proto = *d.get(23)?;
        let ip4 = |at: usize| -> Option<Ipv4Addr> {
            let b: [u8; 4] = d.get(at..at + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(b))
        };
        let l4 = 14 + ihl;
        let port = |at: usize| Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?));
        let (hdr, flags) = match proto {
            17 => (8, 0),
            6 => (usize::from(d.get(l4 + 12)? >> 4) * 4, *d.get(l4 + 13)?),
            _ => return None,
        };
        Some(Flow {
            proto,
            src: SocketAddr::from((ip4(26)?, port(l4)?)),
            dst: SocketAddr::from((ip4(30)?, port(l4 + 2)?)),
            payload: (f.orig_len as usize).checked_sub(l4 + hdr)?,
            tcp_flags: flags,
        })
    })();
    Rec {
        flow,
        orig_len: f.orig_len,
        outgoing: f.outgoing,
        ifindex: f.ifindex,
        link: f.link,
    }
}

/// Drains `caps` until `done` is signalled and then nothing arrives for a while (longer than
/// the block timeout), or until `deadline`.
fn drain_until_quiet(
    caps: &mut [&mut AfPacket],
    done: &mpsc::Receiver<()>,
    deadline: Instant,
) -> Vec<Vec<Rec>> {
    let mut recs = vec![Vec::new(); caps.len()];
    let mut done_at: Option<Instant> = None;
    let mut quiet_rounds = 0;
    while Instant::now() < deadline {
        let mut got = 0;
        for (cap, out) in caps.iter_mut().zip(&mut recs) {
            got += cap
                .next_batch(Duration::from_millis(30), |f| out.push(classify(f)))
                .expect("next_batch");
        }
        if done_at.is_none() && done.try_recv().is_ok() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some() {
            quiet_rounds = if got == 0 { quiet_rounds + 1 } else { 0 };
            // Several empty rounds of 30 ms per capture: well past the 50 ms block timeout.
            if quiet_rounds >= 5 {
                break;
            }
        }
    }
    recs
}

fn payload_size(i: usize) -> usize {
    10 + (i * 37) % 1400
}

#[test]
fn captures_exact_frames_between_namespaces() {
    if !common::can_run("captures_exact_frames_between_namespaces", HOW) {
        return;
    }
    const N: usize = 200;
    const TCP_BYTES: usize = 30_000;
    let deadline = Instant::now() + OVERALL;
    let lab = Lab::create("nv", 231, 'f', false);
    let (a, b) = (lab.a4, lab.b4);

    type Captured = (
        Vec<Vec<Rec>>,
        [CaptureStats; 3],
        Vec<(String, u32, LinkType)>,
        usize,
    );
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (ns_a, veth_a) = (lab.ns_a.clone(), lab.veth_a.clone());
    let capture = thread::spawn(move || -> Captured {
        enter_netns(&ns_a);
        let cfg = RingConfig::default();
        let mut all = AfPacket::open(&Interfaces::All, &cfg, None).expect("open all");
        let prog = compile_filter(&format!("udp port {UDP_PORT}")).expect("filter");
        let mut filtered = AfPacket::open(&Interfaces::All, &cfg, Some(&prog)).expect("open filtered");
        let mut named = AfPacket::open(&Interfaces::Named(vec![veth_a]), &cfg, None).expect("open named");
        let named_ifaces = named.interfaces();
        // Receivers, so that A answers neither with ICMP errors nor with RSTs.
        let _udp = UdpSocket::bind((a, UDP_PORT)).expect("bind udp in A");
        let listener = TcpListener::bind((a, TCP_PORT)).expect("listen in A");
        let server = thread::spawn(move || -> usize {
            listener.set_nonblocking(true).unwrap();
            let give_up = Instant::now() + Duration::from_secs(10);
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(_) if Instant::now() < give_up => thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("no connection from B within 10 s: {e}"),
                }
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = vec![0u8; 65536];
            let mut total = 0;
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                total += n;
            }
            total
        });
        ready_tx.send(()).unwrap();
        let recs = drain_until_quiet(&mut [&mut all, &mut filtered, &mut named], &done_rx, deadline);
        let stats = [&mut all, &mut filtered, &mut named].map(|c| c.stats().expect("stats"));
        (recs, stats, named_ifaces, server.join().expect("server"))
    });

    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("capture thread ready");
    let ns_b = lab.ns_b.clone();
    let sender = thread::spawn(move || -> (SocketAddr, SocketAddr) {
        enter_netns(&ns_b);
        // TCP first: it also resolves ARP, so no datagram waits in the neighbour queue.
        let mut conn = TcpStream::connect_timeout(&SocketAddr::from((a, TCP_PORT)), Duration::from_secs(5))
            .expect("connect from B to A");
        conn.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let data: Vec<u8> = (0..TCP_BYTES).map(|i| i as u8).collect();
        conn.write_all(&data).expect("send tcp data");
        conn.shutdown(Shutdown::Write).unwrap();
        let _ = conn.read(&mut [0u8; 16]); // wait for the server's FIN
        let tcp_local = conn.local_addr().unwrap();
        let udp = UdpSocket::bind((b, 0)).expect("bind udp in B");
        let payload = vec![0x5au8; 1500];
        for i in 0..N {
            udp.send_to(&payload[..payload_size(i)], (a, UDP_PORT))
                .expect("send datagram");
        }
        (tcp_local, udp.local_addr().unwrap())
    });
    let (tcp_b, udp_b) = sender.join().expect("sender");
    done_tx.send(()).unwrap();
    let (recs, stats, named_ifaces, server_got) = capture.join().expect("capture thread");

    let udp_a = SocketAddr::from((a, UDP_PORT));
    let tcp_a = SocketAddr::from((a, TCP_PORT));
    let want_udp_bytes: u64 = (0..N).map(|i| (14 + 20 + 8 + payload_size(i)) as u64).sum();
    let is_our_udp = |r: &&Rec| {
        r.flow
            .is_some_and(|f| f.proto == 17 && f.src == udp_b && f.dst == udp_a)
    };
    let udp_summary = |recs: &[Rec]| -> (usize, u64) {
        let m: Vec<&Rec> = recs.iter().filter(is_our_udp).collect();
        (m.len(), m.iter().map(|r| u64::from(r.orig_len)).sum())
    };
    let [all, filtered, named] = [&recs[0], &recs[1], &recs[2]];
    assert_eq!(server_got, TCP_BYTES, "the server in A got all TCP data");

    // All interfaces, no filter: exactly the datagrams and the TCP bytes.
    assert_eq!(udp_summary(all), (N, want_udp_bytes), "all: our datagrams");
    for r in all.iter().filter(is_our_udp) {
        assert!(!r.outgoing && r.link == LinkType::ETHERNET, "{r:?}");
    }
    let tcp_in: Vec<Flow> = all
        .iter()
        .filter_map(|r| {
            r.flow
                .filter(|f| f.proto == 6 && f.src == tcp_b && f.dst == tcp_a)
        })
        .collect();
    let tcp_out: Vec<&Rec> = all
        .iter()
        .filter(|r| {
            r.flow
                .is_some_and(|f| f.proto == 6 && f.src == tcp_a && f.dst == tcp_b)
        })
        .collect();
    assert_eq!(
        tcp_in.iter().map(|f| f.payload).sum::<usize>(),
        TCP_BYTES,
        "all: TCP payload B->A ({} segments)",
        tcp_in.len()
    );
    assert_eq!(
        tcp_in.iter().filter(|f| f.tcp_flags & 0x02 != 0).count(),
        1,
        "one SYN"
    );
    assert!(tcp_in.iter().any(|f| f.tcp_flags & 0x01 != 0), "B's FIN");
    assert!(
        !tcp_out.is_empty() && tcp_out.iter().all(|r| r.outgoing),
        "A's segments are outgoing"
    );
    assert!(
        tcp_out.iter().any(|r| r.flow.unwrap().tcp_flags & 0x01 != 0),
        "A's FIN"
    );
    assert!(
        stats[0].packets >= all.len() as u64 && stats[0].drops == 0,
        "all: {:?} for {} frames",
        stats[0],
        all.len()
    );
    assert_eq!(stats[0].total_packets, stats[0].packets);

    // The filter delivers only our datagrams, all of them.
    assert_eq!(
        udp_summary(filtered),
        (N, want_udp_bytes),
        "filtered: our datagrams"
    );
    assert_eq!(
        filtered.len(),
        N,
        "filtered: nothing else: {:?}",
        &filtered[..filtered.len().min(5)]
    );
    assert_eq!(stats[1].drops, 0);
    assert!(stats[1].packets >= N as u64);

    // The named interface sees them too, with its ifindex.
    assert_eq!(named_ifaces.len(), 1);
    let (name, ifindex, link) = &named_ifaces[0];
    assert_eq!((name, *link), (&lab.veth_a, LinkType::ETHERNET));
    assert_eq!(udp_summary(named), (N, want_udp_bytes), "named: our datagrams");
    assert!(named.iter().all(|r| r.ifindex == *ifindex), "named: only {name}");
    assert!(all.iter().filter(is_our_udp).all(|r| r.ifindex == *ifindex));
    assert!(stats[2].drops == 0 && stats[2].packets >= named.len() as u64);
    drop(lab);
}

#[test]
fn open_errors_name_the_interface() {
    if !common::can_run("open_errors_name_the_interface", HOW) {
        return;
    }
    let lab = Lab::create("nv", 231, 'e', false);
    let ns_a = lab.ns_a.clone();
    let msg = thread::spawn(move || {
        enter_netns(&ns_a);
        let err = AfPacket::open(
            &Interfaces::Named(vec!["nvnosuch0".into()]),
            &RingConfig::default(),
            None,
        )
        .expect_err("no such interface");
        err.to_string()
    })
    .join()
    .unwrap();
    assert!(msg.contains("nvnosuch0") && msg.contains(&lab.veth_a), "{msg}");
}

/// Capture rate from a bounded burst of small datagrams; prints the numbers.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn capture_rate_burst() {
    if !common::can_run("capture_rate_burst", HOW) {
        return;
    }
    const BURST: usize = 100_000;
    let deadline = Instant::now() + OVERALL;
    let lab = Lab::create("nv", 231, 'r', false);
    let (a, b) = (lab.a4, lab.b4);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let ns_a = lab.ns_a.clone();
    let capture = thread::spawn(move || {
        enter_netns(&ns_a);
        let prog = compile_filter(&format!("udp port {UDP_PORT}")).unwrap();
        let mut cap = AfPacket::open(&Interfaces::All, &RingConfig::default(), Some(&prog)).expect("open");
        let _udp = UdpSocket::bind((a, UDP_PORT)).unwrap();
        ready_tx.send(()).unwrap();
        let mut seen = 0usize;
        let mut first_last: Option<(i64, i64)> = None;
        let mut quiet = 0;
        let mut done = false;
        while Instant::now() < deadline {
            let n = cap
                .next_batch(Duration::from_millis(100), |f| {
                    seen += 1;
                    let fl = first_last.get_or_insert((f.ts_nanos, f.ts_nanos));
                    fl.1 = f.ts_nanos;
                })
                .expect("next_batch");
            done = done || done_rx.try_recv().is_ok();
            quiet = if n == 0 { quiet + 1 } else { 0 };
            if done && quiet >= 3 {
                break;
            }
        }
        (seen, first_last, cap.stats().unwrap())
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let ns_b = lab.ns_b.clone();
    let sender = thread::spawn(move || {
        enter_netns(&ns_b);
        let udp = UdpSocket::bind((b, 0)).unwrap();
        udp.send_to(b"warm-up", (a, UDP_PORT + 1)).unwrap(); // resolves ARP
        thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        let mut sent = 0;
        while sent < BURST && start.elapsed() < Duration::from_secs(15) {
            if udp.send_to(&[0u8; 18], (a, UDP_PORT)).is_ok() {
                sent += 1;
            }
        }
        (sent, start.elapsed())
    });
    let (sent, took) = sender.join().unwrap();
    done_tx.send(()).unwrap();
    let (seen, first_last, stats) = capture.join().unwrap();
    let span = first_last.map_or(0.0, |(f, l)| (l - f) as f64 / 1e9);
    println!(
        "burst: sent {sent} datagrams of 18 bytes in {:.3} s ({:.0}/s); captured {seen} \
         ({:.0}/s over the kernel timestamps' {span:.3} s); kernel stats {stats:?}",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64(),
        seen as f64 / span.max(1e-9),
    );
    assert!(seen > 0);
    assert!(seen as u64 <= stats.total_packets);
}
