//! The Windows fallback parsers (`netstat -ano`, `tasklist`, `netstat -s`) and the Windows
//! snapshot, on outputs written to match the tools' documented formats (see
//! `fixtures/tools/README.md`: none was captured on Windows).

use engine::sockets::{ProcessInfo, SockProto, TcpState};
use os::tools::assemble::windows_snapshot;
use os::tools::iphlp::{mib_v4, mib_v6, tcp_row, udp_row};
use os::tools::netstat::{parse_netstat_windows, parse_tcp_stats};
use os::tools::ps::parse_tasklist_csv;
use std::net::SocketAddr;
use std::path::Path;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tools")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn netstat_ano_english() {
    let p = parse_netstat_windows(&fixture("netstat_ano_windows_en.txt"));
    assert_eq!(
        p.skipped, 2,
        "a foreign address without a port, a pid that is not a number"
    );
    assert_eq!(p.entries.len(), 13);
    let r = |i: usize| &p.entries[i];
    assert_eq!((r(0).entry.local, r(0).pid), (sa("0.0.0.0:135"), Some(1052)));
    assert_eq!(r(0).entry.state, Some(TcpState::Listen));
    assert!(r(0).entry.is_listening());
    assert_eq!(r(1).pid, Some(4));
    assert_eq!((r(3).entry.state, r(3).pid), (Some(TcpState::TimeWait), Some(0)));
    assert_eq!(r(7).entry.local, sa("[::]:135"));
    assert_eq!(r(7).entry.remote, sa("[::]:0"));
    let ll = &r(8).entry;
    assert_eq!(ll.local, sa("[fe80::1c2d:3e4f:5a6b:7c8d%4]:49664"));
    assert_eq!(ll.remote.to_string(), "[fe80::aa:bbff:fecc:ddee%4]:445");
    assert_eq!(r(9).entry.state, Some(TcpState::SynSent));
    let udp = &r(10).entry;
    assert_eq!(
        (udp.proto, udp.state, udp.remote),
        (SockProto::Udp, None, sa("0.0.0.0:0"))
    );
    assert!(udp.is_listening());
    assert_eq!(r(11).entry.remote, sa("[::]:0"), "*:* takes the local family");
    assert_eq!(r(12).entry.local, sa("[fe80::1c2d:3e4f:5a6b:7c8d%4]:1900"));
    assert!(p.entries.iter().all(|r| !r.state_guessed));
}

#[test]
fn netstat_ano_in_another_language() {
    let p = parse_netstat_windows(&fixture("netstat_ano_windows_de.txt"));
    assert_eq!((p.entries.len(), p.skipped), (5, 0));
    let states: Vec<_> = p
        .entries
        .iter()
        .map(|r| (r.entry.state, r.state_guessed))
        .collect();
    assert_eq!(
        states,
        [
            (Some(TcpState::Listen), true),
            (Some(TcpState::Established), true),
            // WARTEND (TIME_WAIT) cannot be told from ESTABLISHED without the word: pid 0
            // keeps it ownerless all the same.
            (Some(TcpState::Established), true),
            (Some(TcpState::Listen), true),
            (None, false),
        ]
    );
    assert_eq!(p.entries[4].pid, Some(2280));
}

#[test]
fn tasklist_csv() {
    let p = parse_tasklist_csv(&fixture("tasklist_windows.csv"));
    assert_eq!(p.skipped, 1, "pid 12x");
    assert_eq!(p.entries.len(), 8);
    assert_eq!(p.entries[2].image, "svchost.exe");
    assert_eq!(p.entries[4].image, r#"My "Quoted", App.exe"#);
    assert_eq!(p.entries[4].pid, 3344);
    let with_header = format!(
        "\"Image Name\",\"PID\",\"Session Name\",\"Session#\",\"Mem Usage\"\n{}",
        fixture("tasklist_windows.csv")
    );
    assert_eq!(parse_tasklist_csv(&with_header), p, "a header row is not data");
}

#[test]
fn tcp_counters_windows_sections_add_up() {
    let c = parse_tcp_stats(&fixture("netstat_s_windows.txt"));
    assert_eq!(c.connection_requests, Some(12_445));
    assert_eq!(c.connection_accepts, Some(700));
    assert_eq!(c.failed_connections, Some(100));
    assert_eq!(c.established_resets, Some(130));
    assert_eq!(c.segments_received, Some(1_235_567));
    assert_eq!(
        c.segments_sent,
        Some(2_347_678),
        "the UDP section's line is not counted"
    );
    assert_eq!(c.retransmitted, Some(3500));
}

fn processes() -> Vec<ProcessInfo> {
    parse_tasklist_csv(&fixture("tasklist_windows.csv"))
        .entries
        .into_iter()
        .map(|t| ProcessInfo {
            pid: t.pid,
            name: t.image,
            ..ProcessInfo::default()
        })
        .collect()
}

#[test]
fn windows_snapshot_from_netstat_fallback() {
    let rows = parse_netstat_windows(&fixture("netstat_ano_windows_en.txt")).entries;
    let snap = windows_snapshot(5, &rows, &processes());
    assert_eq!(snap.sockets.len(), 13);
    assert_eq!(snap.owners.len(), 12, "every row but the pid-0 TIME_WAIT one");
    let tw = snap
        .sockets
        .iter()
        .find(|s| s.state == Some(TcpState::TimeWait))
        .unwrap();
    assert_eq!(tw.inode, 0);
    let owner = |local: &str, remote: &str| {
        let s = snap
            .sockets
            .iter()
            .find(|s| s.local == sa(local) && s.remote == sa(remote))
            .unwrap();
        snap.owners.iter().find(|(i, _)| *i == s.inode).map(|(_, p)| *p)
    };
    assert_eq!(owner("127.0.0.1:5000", "127.0.0.1:60000"), Some(8120));
    assert_eq!(owner("127.0.0.1:60000", "127.0.0.1:5000"), Some(9000));
    assert_eq!(owner("0.0.0.0:445", "0.0.0.0:0"), Some(4));
    let names: Vec<&str> = snap.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "System",
            "svchost.exe",
            "mDNSResponder.exe",
            r#"My "Quoted", App.exe"#,
            "Teams.exe",
            "node.exe",
            "curl.exe"
        ]
    );
    // Keys are stable: the same table read twice gives the same inodes.
    assert_eq!(windows_snapshot(6, &rows, &processes()).owners, snap.owners);
}

#[test]
fn windows_snapshot_from_ip_helper_rows() {
    // What GetExtendedTcpTable/GetExtendedUdpTable rows hold, byte for byte (little-endian
    // DWORDs holding network-order bytes), as `crate::windows` hands them over.
    let port = |p: u16| u32::from_ne_bytes([(p >> 8) as u8, p as u8, 0, 0]);
    let addr = |a: [u8; 4]| u32::from_ne_bytes(a);
    let rows = vec![
        tcp_row(mib_v4(addr([0, 0, 0, 0]), port(135)), mib_v4(0, port(0)), 2, 1052),
        tcp_row(
            mib_v4(addr([192, 168, 1, 30]), port(49712)),
            mib_v4(addr([52, 113, 194, 132]), port(443)),
            5,
            7304,
        ),
        tcp_row(
            mib_v4(addr([192, 168, 1, 30]), port(49720)),
            mib_v4(addr([20, 42, 65, 92]), port(443)),
            11,
            0,
        ),
        udp_row(mib_v6([0; 16], 0, port(5353)), 2280),
    ];
    let snap = windows_snapshot(9, &rows, &processes());
    assert_eq!(snap.sockets[1].local, sa("192.168.1.30:49712"));
    assert_eq!(snap.sockets[1].remote, sa("52.113.194.132:443"));
    assert_eq!(snap.sockets[1].state, Some(TcpState::Established));
    assert_eq!(snap.sockets[3].local, sa("[::]:5353"));
    assert!(snap.sockets[3].is_listening());
    assert_eq!(snap.owners.len(), 3);
    assert_eq!(snap.sockets[2].inode, 0, "TIME_WAIT, pid 0");
    // The same sockets from netstat -ano get the same keys as from the API.
    let text = "  TCP    192.168.1.30:49712     52.113.194.132:443     ESTABLISHED     7304\n";
    let from_netstat = windows_snapshot(9, &parse_netstat_windows(text).entries, &[]);
    assert_eq!(from_netstat.sockets[0].inode, snap.sockets[1].inode);
}
