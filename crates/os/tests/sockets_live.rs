//! The Linux socket table against sockets this test opens on loopback (127.0.0.1 and ::1
//! only). Needs no privilege.

#![cfg(target_os = "linux")]

use engine::sockets::{SockProto, SocketEntry, TcpState};
use os::linux::sockets::{LinuxSockets, SocketListing, Source};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The socket inode of one of our descriptors, from /proc/self/fd ("socket:[N]").
fn inode_of(fd: &impl AsRawFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let link = link.to_str().unwrap();
    link.strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not a socket: {link}"))
        .parse()
        .unwrap()
}

fn find(l: &SocketListing, inode: u64) -> &SocketEntry {
    l.sockets
        .iter()
        .find(|e| e.inode == inode)
        .unwrap_or_else(|| panic!("inode {inode} missing from the listing"))
}

/// The fields both sources must agree on.
fn key(
    e: &SocketEntry,
) -> (
    SockProto,
    SocketAddr,
    SocketAddr,
    Option<TcpState>,
    bool,
    u32,
    u64,
) {
    (e.proto, e.local, e.remote, e.state, e.connected, e.uid, e.inode)
}

#[test]
fn lists_our_loopback_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let laddr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(laddr).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let caddr = client.local_addr().unwrap();

    // Data both ways so that both ends have an RTT sample; each side reads all of it.
    const N: usize = 100_000;
    let payload = vec![0x5a; N];
    let writer = {
        let mut c = client.try_clone().unwrap();
        let p = payload.clone();
        std::thread::spawn(move || c.write_all(&p).unwrap())
    };
    let mut got = vec![0; N];
    server.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    server.write_all(&payload[..1000]).unwrap();
    client.read_exact(&mut got[..1000]).unwrap();

    let u_unconnected = UdpSocket::bind("[::1]:0").unwrap();
    let u_connected = UdpSocket::bind("[::1]:0").unwrap();
    u_connected.connect(u_unconnected.local_addr().unwrap()).unwrap();

    let (i_listener, i_client, i_server) = (inode_of(&listener), inode_of(&client), inode_of(&server));
    let (i_uu, i_uc) = (inode_of(&u_unconnected), inode_of(&u_connected));

    let mut table = LinuxSockets::new();
    // The ACK of the last bytes may trail the read by a moment: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    let l = loop {
        let l = table.list().unwrap();
        let acked = find(&l, i_client).tcp.is_some_and(|t| t.bytes_acked >= N as u64);
        if acked || l.source == Source::ProcNet || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("tables: {:?}\nfallbacks: {:?}", l.tables, l.fallbacks);

    let lis = find(&l, i_listener);
    assert_eq!(lis.proto, SockProto::Tcp);
    assert_eq!(lis.state, Some(TcpState::Listen));
    assert_eq!(lis.local, laddr);
    assert!(lis.is_listening());

    let c = find(&l, i_client);
    assert_eq!(
        (c.state, c.local, c.remote),
        (Some(TcpState::Established), caddr, laddr)
    );
    let s = find(&l, i_server);
    assert_eq!(
        (s.state, s.local, s.remote),
        (Some(TcpState::Established), laddr, caddr)
    );

    let uu = find(&l, i_uu);
    assert_eq!(uu.proto, SockProto::Udp);
    assert_eq!(uu.local, u_unconnected.local_addr().unwrap());
    assert!(!uu.connected);
    assert!(uu.is_listening());
    assert_eq!(uu.remote, "[::]:0".parse().unwrap());
    let uc = find(&l, i_uc);
    assert!(uc.connected);
    assert_eq!(uc.remote, u_unconnected.local_addr().unwrap());
    assert_eq!(uc.local, u_connected.local_addr().unwrap());

    // Our uid, from /proc (no libc call needed in a test).
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().next().map(|u| u.parse::<u32>().unwrap()))
        .unwrap();
    for i in [i_listener, i_client, i_server, i_uu, i_uc] {
        assert_eq!(find(&l, i).uid, uid);
    }

    if l.source == Source::SockDiag {
        assert!(
            l.tables.iter().take(4).all(|(_, s)| *s == Source::SockDiag),
            "{:?}",
            l.tables
        );
        let ct = c.tcp.expect("tcp_info for the client");
        let st = s.tcp.expect("tcp_info for the server");
        assert!(ct.rtt_us > 0 && st.rtt_us > 0, "{ct:?} {st:?}");
        assert!(ct.bytes_acked >= N as u64, "{ct:?}");
        assert!(st.bytes_received >= N as u64, "{st:?}");
        assert!(st.bytes_acked >= 1000, "{st:?}");
        assert!(
            ct.segs_out > 0 && st.segs_in > 0 && ct.snd_cwnd > 0,
            "{ct:?} {st:?}"
        );
        assert_eq!(uu.tcp, None);
    } else {
        eprintln!("netlink sock_diag not available here: tcp_info not checked");
    }

    // /proc/net says the same about the same sockets.
    let p = table.list_procnet().unwrap();
    assert_eq!(p.skipped_lines, 0);
    for i in [i_listener, i_client, i_server, i_uu, i_uc] {
        assert_eq!(key(find(&l, i)), key(find(&p, i)), "inode {i}");
        assert_eq!(find(&p, i).tcp, None);
    }
    assert!(p.tables.iter().all(|(_, s)| *s == Source::ProcNet));
}

/// Both sources list the same set of TCP/UDP sockets for this whole network namespace
/// (sockets of other programs may come and go between the two reads: only a sample of stable
/// ones, the listeners, is compared exactly).
#[test]
fn sources_agree_on_listeners() {
    let _keep = TcpListener::bind("[::1]:0").unwrap();
    let mut table = LinuxSockets::new();
    let a = table.list().unwrap();
    let b = table.list_procnet().unwrap();
    let listeners = |l: &SocketListing| {
        let mut v: Vec<_> = l
            .sockets
            .iter()
            .filter(|e| e.proto == SockProto::Tcp && e.state == Some(TcpState::Listen))
            .map(key)
            .collect();
        v.sort();
        v
    };
    let mine = key(a
        .sockets
        .iter()
        .find(|e| e.local == _keep.local_addr().unwrap())
        .expect("our listener in the sock_diag listing"));
    // Other programs (and the other tests of this binary, running in parallel) open and
    // close listeners between two reads: the two sources must agree on at least one of 20
    // back-to-back pairs of reads, and both must list ours.
    let (mut la, mut lb) = (listeners(&a), listeners(&b));
    for _ in 0..20 {
        if la == lb {
            break;
        }
        la = listeners(&table.list().unwrap());
        lb = listeners(&table.list_procnet().unwrap());
    }
    assert_eq!(la, lb);
    assert!(la.contains(&mine) && lb.contains(&mine), "{mine:?} in {la:?}");
}

/// Not a test: how long one `list()` takes on this machine. Run with
/// `cargo test -p os --release --test sockets_live -- --ignored --nocapture time_list`.
#[test]
#[ignore]
fn time_list() {
    let mut table = LinuxSockets::new();
    let runs = 20;
    for (name, procnet) in [("sock_diag", false), ("procnet", true)] {
        let mut best = Duration::MAX;
        let mut total = Duration::ZERO;
        let mut n = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let l = if procnet {
                table.list_procnet()
            } else {
                table.list()
            }
            .unwrap();
            let d = t.elapsed();
            best = best.min(d);
            total += d;
            n = l.sockets.len();
        }
        eprintln!(
            "{name}: {n} sockets, best {:?}, mean {:?} over {runs} runs",
            best,
            total / runs
        );
    }
}

#[test]
fn sock_diag_finds_one_socket_by_its_four_tuple() {
    use os::linux::sock_diag::SockDiag;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    let mut d = SockDiag::open().unwrap();
    let e = d
        .find(6, c.local_addr().unwrap(), c.peer_addr().unwrap())
        .unwrap()
        .expect("the client socket");
    assert_eq!(
        (e.local, e.remote),
        (c.local_addr().unwrap(), c.peer_addr().unwrap())
    );
    assert_ne!(e.inode, 0);
    let e2 = d
        .find(6, s.local_addr().unwrap(), s.peer_addr().unwrap())
        .unwrap()
        .expect("the accepted socket");
    assert_ne!(e2.inode, e.inode);
    let none = d
        .find(6, "127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap())
        .unwrap();
    assert!(none.is_none());
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.connect("127.0.0.1:9").unwrap();
    let eu = d
        .find(17, u.local_addr().unwrap(), "127.0.0.1:9".parse().unwrap())
        .unwrap()
        .expect("the udp socket");
    assert!(eu.connected);
}
