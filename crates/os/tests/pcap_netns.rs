//! Live libpcap capture (feature `libpcap`) between two throw-away network namespaces joined
//! by a veth pair: every datagram sent is captured once, filters compiled by libpcap select
//! what they say, and kernel drops are counted.
//!
//! Needs root, `ip` (iproute2) and libpcap (Debian: libpcap-dev to build). Without root or
//! `ip` the tests print a note and pass, except when `CI=true`, where they fail. Addresses are
//! configured inside the two namespaces only; the namespaces are deleted at the end, also on
//! failure. Run with `cargo test -p os --features libpcap --test pcap_netns`.
#![cfg(all(target_os = "linux", feature = "libpcap"))]

mod common;

use common::{Lab, enter_netns};

use os::pcap_source::{PcapCapture, PcapConfig, PcapFrame, PcapInterfaces, PcapOpenError, PcapStats};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wire::capture::LinkType;

/// Every test gives up after this long.
const OVERALL: Duration = Duration::from_secs(40);
const P1: u16 = 47101;
const P2: u16 = 47102;
const P3: u16 = 47103;
const HOW: &str = "cargo test -p os --features libpcap --test pcap_netns";

fn wall_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// A captured UDP datagram: destination and payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Udp {
    dst: SocketAddr,
    payload: usize,
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    udp: Option<Udp>,
    link: LinkType,
    ts: i64,
    orig_len: u32,
    caplen: usize,
}

fn classify(f: &PcapFrame<'_>) -> Rec {
    let d = f.data;
    let udp = (|| {
        let (ethertype, l3) = match f.link {
            LinkType::ETHERNET => (u16::from_be_bytes(d.get(12..14)?.try_into().ok()?), 14),
            LinkType::LINUX_SLL => (u16::from_be_bytes(d.get(14..16)?.try_into().ok()?), 16),
            _ => return None,
        };
        let (dst_ip, l4): (IpAddr, usize) = match ethertype {
            0x0800 => {
                if *d.get(l3 + 9)? != 17 {
                    return None;
                }
                let ihl = usize::from(d.get(l3)? & 0x0f) * 4;
                let b: [u8; 4] = d.get(l3 + 16..l3 + 20)?.try_into().ok()?;
                (Ipv4Addr::from(b).into(), l3 + ihl)
            }
            0x86dd => {
                if *d.get(l3 + 6)? != 17 {
                    return None;
                }
                let b: [u8; 16] = d.get(l3 + 24..l3 + 40)?.try_into().ok()?;
                (Ipv6Addr::from(b).into(), l3 + 40)
            }
            _ => return None,
        };
        let port = u16::from_be_bytes(d.get(l4 + 2..l4 + 4)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(d.get(l4 + 4..l4 + 6)?.try_into().ok()?));
        Some(Udp {
            dst: SocketAddr::new(dst_ip, port),
            payload: len.checked_sub(8)?,
        })
    })();
    Rec {
        udp,
        link: f.link,
        ts: f.ts_nanos,
        orig_len: f.orig_len,
        caplen: f.data.len(),
    }
}

/// Reads every capture until `done` is signalled and then nothing arrives for several rounds,
/// or until `deadline`.
fn drain_until_quiet(
    caps: &mut [&mut PcapCapture],
    done: &mpsc::Receiver<()>,
    deadline: Instant,
) -> Vec<Vec<Rec>> {
    let mut recs = vec![Vec::new(); caps.len()];
    let mut done_seen = false;
    let mut quiet = 0;
    while Instant::now() < deadline {
        let mut got = 0;
        for (cap, out) in caps.iter_mut().zip(&mut recs) {
            got += cap
                .next_batch(Duration::from_millis(20), |f| out.push(classify(f)))
                .expect("next_batch");
        }
        if !done_seen && done.try_recv().is_ok() {
            done_seen = true;
        }
        if done_seen {
            quiet = if got == 0 { quiet + 1 } else { 0 };
            if quiet >= 8 {
                break;
            }
        }
    }
    recs
}

fn size(i: usize) -> usize {
    16 + (i * 53) % 1200
}

/// Sends `n` datagrams of [`size`] bytes from inside `ns` to `to`.
fn send_from(ns: String, to: SocketAddr, n: usize) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        enter_netns(&ns);
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(bind).expect("bind sender");
        let buf = vec![0xa5u8; 1500];
        let mut bytes = 0;
        for i in 0..n {
            s.send_to(&buf[..size(i)], to).expect("send datagram");
            bytes += size(i);
        }
        bytes
    })
}

#[test]
fn pcap_captures_every_datagram_and_filters() {
    if !common::can_run("pcap_captures_every_datagram_and_filters", HOW) {
        return;
    }
    const N1: usize = 150;
    const N2: usize = 100;
    const N6: usize = 60;
    let deadline = Instant::now() + OVERALL;
    let lab = Lab::create("nvp", 232, 'c', true);
    let (a4, a6) = (lab.a4, lab.a6);
    let started = wall_nanos();

    type Captured = (Vec<Vec<Rec>>, [PcapStats; 3], Vec<(String, LinkType)>);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (ns_a, veth_a) = (lab.ns_a.clone(), lab.veth_a.clone());
    let capture = thread::spawn(move || -> Captured {
        enter_netns(&ns_a);
        let cfg = PcapConfig::default();
        let named = PcapInterfaces::Named(vec![veth_a]);
        let mut all = PcapCapture::open(&named, &cfg, None).expect("open veth");
        let mut filtered =
            PcapCapture::open(&named, &cfg, Some(&format!("udp dst port {P1}"))).expect("open filtered");
        let mut any = PcapCapture::open(
            &PcapInterfaces::All,
            &cfg,
            Some(&format!("udp dst port {P1} or udp dst port {P2}")),
        )
        .expect("open any");
        let ifaces = any.interfaces();
        // Receivers, so that A sends no port-unreachable errors back.
        let _r1 = UdpSocket::bind((IpAddr::from(a4), P1)).unwrap();
        let _r2 = UdpSocket::bind((IpAddr::from(a4), P2)).unwrap();
        let _r6 = UdpSocket::bind((IpAddr::from(a6), P1)).unwrap();
        ready_tx.send(()).unwrap();
        let recs = drain_until_quiet(&mut [&mut all, &mut filtered, &mut any], &done_rx, deadline);
        let stats = [&mut all, &mut filtered, &mut any].map(|c| c.stats().expect("stats"));
        (recs, stats, ifaces)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("capture ready");
    let to1 = SocketAddr::new(a4.into(), P1);
    let to2 = SocketAddr::new(a4.into(), P2);
    let to6 = SocketAddr::new(a6.into(), P1);
    let sent1 = send_from(lab.ns_b.clone(), to1, N1).join().unwrap();
    let sent2 = send_from(lab.ns_b.clone(), to2, N2).join().unwrap();
    let sent6 = send_from(lab.ns_b.clone(), to6, N6).join().unwrap();
    done_tx.send(()).unwrap();
    let (recs, stats, any_ifaces) = capture.join().expect("capture thread");
    let ended = wall_nanos();

    let count =
        |recs: &[Rec], to: SocketAddr| recs.iter().filter(|r| r.udp.is_some_and(|u| u.dst == to)).count();
    let bytes = |recs: &[Rec], to: SocketAddr| -> usize {
        recs.iter()
            .filter_map(|r| r.udp.filter(|u| u.dst == to))
            .map(|u| u.payload)
            .sum()
    };
    let [all, filtered, any] = [&recs[0], &recs[1], &recs[2]];

    // The unfiltered capture: every datagram, exactly once, whole.
    assert_eq!(count(all, to1), N1);
    assert_eq!(count(all, to2), N2);
    assert_eq!(count(all, to6), N6, "IPv6");
    assert_eq!(
        (bytes(all, to1), bytes(all, to2), bytes(all, to6)),
        (sent1, sent2, sent6)
    );
    assert!(all.iter().all(|r| r.link == LinkType::ETHERNET));
    assert!(all.iter().all(|r| r.orig_len as usize == r.caplen));
    assert!(
        all.iter()
            .all(|r| r.ts >= started - 1_000_000_000 && r.ts <= ended + 1_000_000_000),
        "timestamps within the test"
    );
    assert!(all.windows(2).all(|w| w[0].ts <= w[1].ts), "timestamps in order");

    // `udp dst port P1`: both families to P1, nothing else at all.
    assert_eq!(filtered.len(), N1 + N6, "only what the filter selects");
    assert_eq!((count(filtered, to1), count(filtered, to6)), (N1, N6));

    // libpcap's `any` device: cooked frames, the filter applied.
    assert_eq!(any_ifaces, [("any".to_string(), LinkType::LINUX_SLL)]);
    assert_eq!(any.len(), N1 + N2 + N6, "{:?}", &any[..any.len().min(5)]);
    assert_eq!((count(any, to1), count(any, to2), count(any, to6)), (N1, N2, N6));

    // Counters: everything that passed each filter, nothing dropped.
    assert_eq!(stats[1].packets, (N1 + N6) as u64);
    assert_eq!(stats[2].packets, (N1 + N2 + N6) as u64);
    assert!(stats[0].packets >= (N1 + N2 + N6) as u64);
    for s in &stats {
        assert_eq!(s.drops, 0, "{s:?}");
        assert_eq!((s.total_packets, s.total_drops), (s.packets, s.drops));
    }
}

#[test]
fn pcap_reports_kernel_drops() {
    if !common::can_run("pcap_reports_kernel_drops", HOW) {
        return;
    }
    const N: usize = 3000;
    let deadline = Instant::now() + OVERALL;
    let lab = Lab::create("nvp", 232, 'd', true);
    let a4 = lab.a4;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (ns_a, veth_a) = (lab.ns_a.clone(), lab.veth_a.clone());
    let capture = thread::spawn(move || -> (usize, PcapStats, PcapStats) {
        enter_netns(&ns_a);
        // A tiny buffer, and nobody reading while the burst arrives: the kernel must drop.
        let cfg = PcapConfig {
            snaplen: 96,
            buffer_size: 16 * 1024,
            promiscuous: false,
        };
        let mut cap = PcapCapture::open(
            &PcapInterfaces::Named(vec![veth_a]),
            &cfg,
            Some(&format!("udp dst port {P3}")),
        )
        .expect("open");
        let _r = UdpSocket::bind((IpAddr::from(a4), P3)).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap(); // the burst was sent
        let recs = drain_until_quiet(&mut [&mut cap], &done_rx, deadline);
        let first = cap.stats().expect("stats");
        let second = cap.stats().expect("stats again");
        let captured = recs[0]
            .iter()
            .filter(|r| r.udp.is_some_and(|u| u.dst.port() == P3))
            .count();
        assert!(recs[0].iter().all(|r| r.caplen <= 96), "snaplen applied");
        (captured, first, second)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("capture ready");
    send_from(lab.ns_b.clone(), SocketAddr::new(a4.into(), P3), N)
        .join()
        .unwrap();
    go_tx.send(()).unwrap();
    done_tx.send(()).unwrap();
    let (captured, first, second) = capture.join().expect("capture thread");
    assert!(
        first.drops > 0,
        "a 16 KiB buffer cannot hold {N} datagrams: {first:?}"
    );
    assert!(captured > 0);
    assert_eq!(
        captured as u64 + first.drops,
        N as u64,
        "every datagram was either captured or counted as dropped: {first:?}"
    );
    assert_eq!(
        first.packets, N as u64,
        "the kernel counts dropped frames as received too"
    );
    assert_eq!(
        (second.packets, second.drops),
        (0, 0),
        "counts since the last call"
    );
    assert_eq!(
        (second.total_packets, second.total_drops),
        (first.total_packets, first.total_drops)
    );
}

#[test]
fn pcap_open_errors_name_the_problem() {
    if !common::can_run("pcap_open_errors_name_the_problem", HOW) {
        return;
    }
    let lab = Lab::create("nvp", 232, 'e', true);
    let (ns_a, veth_a) = (lab.ns_a.clone(), lab.veth_a.clone());
    thread::spawn(move || {
        enter_netns(&ns_a);
        let cfg = PcapConfig::default();
        let e = PcapCapture::open(
            &PcapInterfaces::Named(vec![veth_a.clone()]),
            &cfg,
            Some("udp port"),
        )
        .unwrap_err();
        assert!(matches!(e, PcapOpenError::BadFilter { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("`udp port` is not valid") && msg.contains("tcpdump -d"),
            "{msg}"
        );

        let e = PcapCapture::open(&PcapInterfaces::Named(vec!["nvnosuch0".into()]), &cfg, None).unwrap_err();
        assert!(matches!(e, PcapOpenError::NoSuchInterface { .. }), "{e:?}");
        assert!(e.to_string().contains("nvnosuch0"), "{e}");

        let twice = PcapInterfaces::Named(vec![veth_a.clone(), veth_a]);
        let e = PcapCapture::open(&twice, &cfg, None).unwrap_err();
        assert!(e.to_string().contains("named twice"), "{e}");
        let bad = PcapConfig {
            snaplen: 0,
            ..PcapConfig::default()
        };
        let e = PcapCapture::open(&PcapInterfaces::All, &bad, None).unwrap_err();
        assert!(e.to_string().contains("must be positive"), "{e}");
    })
    .join()
    .expect("error checks");
}
